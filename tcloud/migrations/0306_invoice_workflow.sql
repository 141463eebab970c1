-- The workflow that made each invoice (a billing batch, an account's own invoice workflow or a closure's): what
-- the operators' console links to. An invoice handed over to dunning is then its account's own workflow's.
ALTER TABLE invoices ADD COLUMN workflow_id text;
