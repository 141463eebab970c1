-- Users and service accounts (Cloud Ops identities) with an account role and per-namespace access; every API key
-- is owned by one of them. Identity changes take effect in the transaction that records their async operation,
-- which is therefore fulfilled at once (`async_operations.fulfilled_at`; no workflow).

CREATE TABLE identities (
    id               text PRIMARY KEY,
    account_id       text NOT NULL REFERENCES accounts (id),
    kind             text NOT NULL CHECK (kind IN ('user', 'service_account')),
    -- a user's email, a service account's name
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 254),
    description      text NOT NULL DEFAULT '',
    account_role     text NOT NULL CHECK (account_role IN ('admin', 'developer', 'finance_admin', 'read')),
    -- {"<namespace>": "admin" | "write" | "read"}
    namespace_access jsonb NOT NULL DEFAULT '{}'::jsonb,
    resource_version bigint NOT NULL DEFAULT 1,
    async_operation_id text,
    state            text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'deleted')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz
);
CREATE INDEX identities_account ON identities (account_id, kind, created_at);
CREATE UNIQUE INDEX identities_user_email ON identities (account_id, lower(name))
    WHERE kind = 'user' AND state = 'active';

ALTER TABLE async_operations ADD COLUMN fulfilled_at timestamptz;
ALTER TABLE async_operations ALTER COLUMN workflow_id DROP NOT NULL;

ALTER TABLE api_keys ADD COLUMN owner_id text REFERENCES identities (id);
ALTER TABLE api_keys ADD COLUMN disabled boolean NOT NULL DEFAULT false;
ALTER TABLE api_keys ADD COLUMN resource_version bigint NOT NULL DEFAULT 1;
ALTER TABLE api_keys ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- The keys that existed belonged to the whole account with all of its rights: each account gets an admin service
-- account, "account-admin" (id sa-<account>), which owns them and keeps those rights.
INSERT INTO identities (id, account_id, kind, name, description, account_role)
SELECT 'sa-' || id, id, 'service_account', 'account-admin',
       'owns the API keys made before users and service accounts (all of the account''s rights)', 'admin'
  FROM accounts
    ON CONFLICT (id) DO NOTHING;
UPDATE api_keys SET owner_id = 'sa-' || account_id WHERE owner_id IS NULL;
ALTER TABLE api_keys ALTER COLUMN owner_id SET NOT NULL;
CREATE INDEX api_keys_owner ON api_keys (owner_id);

-- A key inserted without an owner (an account's first key) is owned by the account's admin service account.
CREATE FUNCTION api_key_default_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.owner_id IS NULL THEN
        INSERT INTO identities (id, account_id, kind, name, description, account_role)
        VALUES ('sa-' || NEW.account_id, NEW.account_id, 'service_account', 'account-admin',
                'owns the account''s first API key (all of the account''s rights)', 'admin')
            ON CONFLICT (id) DO NOTHING;
        NEW.owner_id := 'sa-' || NEW.account_id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER api_keys_default_owner BEFORE INSERT ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_key_default_owner();
