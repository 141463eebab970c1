-- Invoicing: one invoice per account and period, its lines (each pointing at the ledger rows it sums), every
-- Stripe object created (recorded before moving on, so a retry looks it up instead of creating it again),
-- spend alerts and the dunning log.

CREATE TABLE invoices (
    -- "in_<account>_<YYYYMM>": readable and deterministic, so the same account-month can never get two.
    id                 text PRIMARY KEY,
    account_id         text NOT NULL REFERENCES accounts (id),
    period             text NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    period_start       timestamptz NOT NULL,
    period_end         timestamptz NOT NULL,
    plan               text NOT NULL,
    price_book_version text NOT NULL,
    days_billed        integer NOT NULL CHECK (days_billed >= 0),
    days_in_period     integer NOT NULL CHECK (days_in_period BETWEEN 28 AND 31),
    currency           text NOT NULL,
    total_cents        bigint NOT NULL CHECK (total_cents >= 0),
    -- zero: recorded, never sent. open: sent to Stripe, not paid yet. past_due: a payment attempt failed.
    status             text NOT NULL CHECK (status IN ('draft', 'zero', 'open', 'paid', 'past_due', 'written_off')),
    stripe_invoice_id  text UNIQUE,
    hosted_invoice_url text,
    payment_attempts   integer NOT NULL DEFAULT 0,
    last_payment_error text,
    written_off_reason text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    sent_at            timestamptz,
    paid_at            timestamptz,
    UNIQUE (account_id, period)
);
CREATE INDEX invoices_status ON invoices (status, period);

CREATE TABLE invoice_lines (
    invoice_id             text NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    line_no                integer NOT NULL,
    kind                   text NOT NULL CHECK (kind IN ('actions', 'active_storage', 'retained_storage', 'minimum')),
    description            text NOT NULL,
    quantity               numeric NOT NULL,
    unit                   text NOT NULL,
    exact_amount           numeric NOT NULL,
    amount_cents           bigint NOT NULL CHECK (amount_cents >= 0),
    detail                 jsonb NOT NULL DEFAULT '{}',
    stripe_invoice_item_id text UNIQUE,
    PRIMARY KEY (invoice_id, line_no)
);

-- Which ledger rows a line sums: per namespace, the billable rows of `metric` for the account in
-- [hour_from, hour_to); `ledger_rows` and `quantity` let anyone re-sum and compare.
CREATE TABLE invoice_line_sources (
    invoice_id  text NOT NULL,
    line_no     integer NOT NULL,
    namespace   text NOT NULL,
    metric      text NOT NULL,
    hour_from   timestamptz NOT NULL,
    hour_to     timestamptz NOT NULL,
    ledger_rows integer NOT NULL,
    quantity    numeric NOT NULL,
    PRIMARY KEY (invoice_id, line_no, namespace),
    FOREIGN KEY (invoice_id, line_no) REFERENCES invoice_lines (invoice_id, line_no) ON DELETE CASCADE
);

-- Every Stripe object billing creates, keyed by what it is for (e.g. "item:<invoice>:<line>").
-- state 'creating' is written before the call: finding it on a retry means "look it up before creating".
CREATE TABLE stripe_objects (
    key        text PRIMARY KEY,
    kind       text NOT NULL,
    account_id text REFERENCES accounts (id),
    state      text NOT NULL CHECK (state IN ('creating', 'created')),
    stripe_id  text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (state = 'creating' OR stripe_id IS NOT NULL)
);

-- Spend alerts: notify once per threshold per period when the month-to-date estimate reaches it.
CREATE TABLE spend_alerts (
    account_id      text NOT NULL REFERENCES accounts (id),
    threshold_cents bigint NOT NULL CHECK (threshold_cents > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, threshold_cents)
);

CREATE TABLE spend_alert_notifications (
    account_id      text NOT NULL REFERENCES accounts (id),
    period          text NOT NULL,
    threshold_cents bigint NOT NULL,
    estimate_cents  bigint NOT NULL,
    notified_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, period, threshold_cents)
);

-- What happened to an invoice after it was made: payment attempts, webhooks, suspension, resumption.
CREATE TABLE billing_events (
    id         bigserial PRIMARY KEY,
    account_id text NOT NULL REFERENCES accounts (id),
    invoice_id text REFERENCES invoices (id),
    kind       text NOT NULL,
    detail     jsonb NOT NULL DEFAULT '{}',
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX billing_events_invoice ON billing_events (invoice_id, id);
