-- Each month's billing run as the platform last saw it, written by the run itself as it moves on: what the
-- operators' API answers without asking the workflow (fast, and while no worker is up).

CREATE TABLE billing_runs (
    period        text PRIMARY KEY CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    workflow_id   text NOT NULL,
    status        text NOT NULL CHECK (status IN ('running', 'completed', 'cancelled', 'failed')),
    phase         text NOT NULL,
    missing_hours integer NOT NULL DEFAULT -1,
    counts        jsonb NOT NULL DEFAULT '{}',
    started_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
