-- Tenants, their API keys and their namespaces on the shared Temporal cluster.

CREATE TABLE accounts (
    -- No hyphens: Temporal's metrics turn '-' and '.' of "<name>.<account>" into '_', and this keeps the
    -- account part recoverable from the sanitized label.
    id                 text PRIMARY KEY CHECK (id ~ '^[a-z][a-z0-9]{2,31}$'),
    name               text NOT NULL,
    email              text NOT NULL,
    plan               text NOT NULL DEFAULT 'essentials',
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'closed')),
    status_reason      text,
    stripe_customer_id text UNIQUE,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- The key itself is never stored: only a lookup prefix and the SHA-256 of the whole token.
CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    account_id   text NOT NULL REFERENCES accounts (id),
    display_name text NOT NULL DEFAULT '',
    prefix       text NOT NULL UNIQUE,
    secret_hash  bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    expires_at   timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_account ON api_keys (account_id);

-- `namespace` is the name on the Temporal server: "<name>.<account_id>", as Temporal Cloud spells it.
CREATE TABLE namespaces (
    namespace      text PRIMARY KEY,
    name           text NOT NULL,
    account_id     text NOT NULL REFERENCES accounts (id),
    state          text NOT NULL CHECK (state IN ('provisioning', 'active', 'updating', 'deleting', 'deleted', 'failed')),
    retention_days integer NOT NULL CHECK (retention_days BETWEEN 1 AND 90),
    failure_reason text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz
);
CREATE INDEX namespaces_account ON namespaces (account_id);

-- Who owned a namespace when: usage of an hour is billed to the owner of that hour.
CREATE TABLE namespace_ownership (
    namespace  text NOT NULL,
    account_id text NOT NULL REFERENCES accounts (id),
    valid_from timestamptz NOT NULL,
    valid_to   timestamptz,
    PRIMARY KEY (namespace, valid_from),
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);
