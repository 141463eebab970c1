-- Spend-alert delivery: where an account wants its alerts (a signed webhook, an email address), and one
-- delivery row per notification and channel. The delivery row is written in the same transaction as the
-- notification, so a notification is never recorded without the deliveries it owes.

CREATE TABLE spend_alert_channels (
    account_id     text PRIMARY KEY REFERENCES accounts (id),
    webhook_url    text,
    -- HMAC key for the Tcloud-Signature header; the customer reads it back to verify deliveries.
    webhook_secret text,
    email          text,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((webhook_url IS NULL) = (webhook_secret IS NULL))
);

CREATE TABLE spend_alert_deliveries (
    account_id      text NOT NULL,
    period          text NOT NULL,
    threshold_cents bigint NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('webhook', 'email')),
    -- The URL or address when the notification was recorded: a later change of channel does not redirect it.
    target          text NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- When a check last started its delivery workflow: a later check leaves it to that workflow.
    dispatched_at   timestamptz,
    delivered_at    timestamptz,
    PRIMARY KEY (account_id, period, threshold_cents, channel),
    FOREIGN KEY (account_id, period, threshold_cents)
        REFERENCES spend_alert_notifications (account_id, period, threshold_cents)
);
CREATE INDEX spend_alert_deliveries_pending ON spend_alert_deliveries (created_at) WHERE state = 'pending';
