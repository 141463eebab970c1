-- Billing reports (Cloud Ops CreateBillingReport / GetBillingReport): an account's usage of a time range per
-- namespace and period, generated from the ledger's rollups and kept as CSV; downloaded through a signed URL.
CREATE TABLE billing_reports (
    id                   text PRIMARY KEY,
    account_id           text NOT NULL REFERENCES accounts (id),
    start_time           timestamptz NOT NULL,
    end_time             timestamptz NOT NULL CHECK (end_time > start_time),
    granularity          text NOT NULL CHECK (granularity IN ('hourly', 'daily', 'monthly')),
    description          text NOT NULL DEFAULT '' CHECK (length(description) <= 1000),
    url_ttl_seconds      integer NOT NULL CHECK (url_ttl_seconds > 0),
    state                text NOT NULL CHECK (state IN ('in_progress', 'generated', 'failed')),
    content              text,
    async_operation_id   text NOT NULL,
    requested_at         timestamptz NOT NULL DEFAULT now(),
    generated_at         timestamptz
);
CREATE INDEX billing_reports_account ON billing_reports (account_id, requested_at);
