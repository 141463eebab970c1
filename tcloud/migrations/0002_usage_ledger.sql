-- The hourly usage ledger: one row per (namespace, hour, metric), written idempotently by the collectors.

CREATE TABLE usage_ledger (
    namespace    text NOT NULL,
    hour         timestamptz NOT NULL CHECK (date_trunc('hour', hour) = hour),
    metric       text NOT NULL CHECK (metric IN ('actions', 'active_storage', 'retained_storage')),
    -- actions: an integer count; storage: byte-hours.
    quantity     numeric NOT NULL CHECK (quantity >= 0),
    -- The namespace's owner in that hour; NULL for the control plane's own namespace (never billed).
    account_id   text REFERENCES accounts (id),
    billable     boolean NOT NULL,
    collected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, hour, metric)
);
CREATE INDEX usage_ledger_account_hour ON usage_ledger (account_id, hour);

-- An hour is complete for a collector ("actions", "storage") once its row is here; billing waits for these.
CREATE TABLE usage_collected_hours (
    collector    text NOT NULL,
    hour         timestamptz NOT NULL CHECK (date_trunc('hour', hour) = hour),
    collected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collector, hour)
);

-- Per collector: every hour before `collected_through` is complete.
CREATE TABLE usage_watermarks (
    collector         text PRIMARY KEY,
    collected_through timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
