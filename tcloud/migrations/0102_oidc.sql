-- Sign-in to the customers' Temporal UI (api/oidc.py, the platform as an OpenID Connect provider): authorization
-- codes and refresh tokens. Only the SHA-256 of a code or token is kept. A code is used once (used_at), within
-- its expiry; every refresh token descends from one code (family), so a replayed code or a refresh token presented
-- after it was rotated revokes the whole family. Both stop working when the API key that signed in is revoked.

CREATE TABLE oidc_codes (
    code_hash             bytea PRIMARY KEY,
    client_id             text NOT NULL,
    redirect_uri          text NOT NULL,
    scope                 text NOT NULL,
    nonce                 text,
    code_challenge        text,
    code_challenge_method text,
    account_id            text NOT NULL REFERENCES accounts (id),
    api_key_id            text NOT NULL REFERENCES api_keys (id),
    auth_time             timestamptz NOT NULL,
    expires_at            timestamptz NOT NULL,
    used_at               timestamptz
);
CREATE INDEX oidc_codes_nonce ON oidc_codes (client_id, nonce);
CREATE INDEX oidc_codes_expiry ON oidc_codes (expires_at);

CREATE TABLE oidc_refresh_tokens (
    token_hash  bytea PRIMARY KEY,
    family      bytea NOT NULL,
    client_id   text NOT NULL,
    scope       text NOT NULL,
    account_id  text NOT NULL REFERENCES accounts (id),
    api_key_id  text NOT NULL REFERENCES api_keys (id),
    auth_time   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX oidc_refresh_tokens_family ON oidc_refresh_tokens (family);
CREATE INDEX oidc_refresh_tokens_expiry ON oidc_refresh_tokens (expires_at);
