-- Provisioning: async operations (Cloud Ops `asyncOperation` ids mapped to the workflow that does the work),
-- optimistic concurrency for namespace updates, the Stripe customer's two-step record, API key descriptions.

CREATE TABLE async_operations (
    id             text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),
    account_id     text NOT NULL REFERENCES accounts (id),
    operation_type text NOT NULL,
    resource       text NOT NULL,
    workflow_id    text NOT NULL,
    run_id         text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX async_operations_account ON async_operations (account_id, created_at);

ALTER TABLE namespaces ADD COLUMN resource_version bigint NOT NULL DEFAULT 1;
ALTER TABLE namespaces ADD COLUMN async_operation_id text;

-- Set before the Stripe customer is created: a retry that finds it set looks the customer up before creating one.
ALTER TABLE accounts ADD COLUMN stripe_customer_requested_at timestamptz;

ALTER TABLE api_keys ADD COLUMN description text NOT NULL DEFAULT '';
