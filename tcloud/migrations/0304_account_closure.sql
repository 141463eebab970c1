-- Closing an account: 'closing' from the request until the grace ends (namespaces kept, reopen possible, nothing
-- new created), then 'closed' (namespaces deleted, final invoice made). Usage is billed up to `closed_at`.

ALTER TABLE accounts DROP CONSTRAINT accounts_status_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_status_check
    CHECK (status IN ('active', 'suspended', 'closing', 'closed'));
ALTER TABLE accounts ADD COLUMN closed_at timestamptz;
ALTER TABLE accounts ADD COLUMN closure_grace_until timestamptz;
-- What a reopened account goes back to (a suspension for non-payment survives closing and reopening).
ALTER TABLE accounts ADD COLUMN closure_prior_status text CHECK (closure_prior_status IN ('active', 'suspended'));
ALTER TABLE accounts ADD COLUMN closure_prior_reason text;
-- Accounts closed before this migration: closed when last changed.
UPDATE accounts SET closed_at = updated_at WHERE status = 'closed';
ALTER TABLE accounts ADD CONSTRAINT accounts_closed_at
    CHECK ((status IN ('closing', 'closed')) = (closed_at IS NOT NULL));
