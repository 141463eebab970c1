-- The card on file of each account: the Stripe payment method its invoices are charged to, and what the portal
-- shows of it (brand, last 4 digits, expiry). The card number itself never reaches the platform.

CREATE TABLE payment_methods (
    account_id               text PRIMARY KEY REFERENCES accounts (id),
    stripe_payment_method_id text NOT NULL,
    brand                    text NOT NULL,
    last4                    text NOT NULL,
    exp_month                integer NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
    exp_year                 integer NOT NULL,
    updated_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_methods_stripe_id ON payment_methods (stripe_payment_method_id);
