"""One settings object for every process, read from ``TCLOUD_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class OidcClient(BaseModel):
    """A client of the OpenID provider besides the customers' UI (``TCLOUD_OIDC_EXTRA_CLIENTS``)."""

    secret: SecretStr | None = None
    redirect_uris: list[str]


class Settings(BaseSettings):
    """Platform configuration. Secrets are ``SecretStr`` so they never print."""

    model_config = SettingsConfigDict(env_prefix="TCLOUD_", extra="ignore")

    state_dir: Path = Path(".state")

    # Temporal: where the platform's own workflows run. The control namespace is never billed to a tenant.
    # The platform's processes use the internal frontend (no tenant JWT; never reachable from outside), tenants
    # the public frontend, where every call needs a JWT from POST /cloud/namespaces/{ns}/token.
    temporal_address: str = "127.0.0.1:7236"
    temporal_public_address: str = "127.0.0.1:7233"
    temporal_ui_url: str = "http://127.0.0.1:8080"
    control_namespace: str = "tcloud-system"
    task_queue: str = "tcloud-control"

    # Postgres: any DSN; the local platform writes the embedded server's DSN here.
    postgres_dsn: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/tcloud")

    # Prometheus and the label that carries the namespace on the server's `action` counter
    # (`namespace` on a plain scrape, `exported_namespace` under the Prometheus operator).
    prometheus_url: str = "http://127.0.0.1:9090"
    prometheus_namespace_label: str = "namespace"
    # How far back metering looks for a series' last value before an hour (set to Prometheus' retention).
    usage_baseline_lookback: str = "15d"

    # Stripe: localstripe locally, real Stripe when a live/test key and the real base are configured.
    stripe_api_base: str = "http://127.0.0.1:8420"
    stripe_api_key: SecretStr = SecretStr("sk_test_localstripe")
    stripe_webhook_secret: SecretStr = SecretStr("whsec_localstripe")
    # What the portal's card form uses: the publishable key, and where Stripe.js is loaded from (None: localstripe's
    # stand-in at <stripe_api_base>/js.stripe.com/v3/ when the base is local, else https://js.stripe.com/v3/).
    stripe_publishable_key: str = "pk_test_localstripe"
    stripe_js_url: str | None = None

    # Backups.
    backup_store: Literal["filesystem", "oci"] = "filesystem"
    backup_dir: Path | None = None
    backup_retention_days: int = 7
    # More databases to dump beside the platform's, label -> DSN (production: Temporal's persistence and
    # visibility), e.g. TCLOUD_BACKUP_EXTRA_DSNS='{"temporal": "postgresql://..."}'.
    backup_extra_dsns: dict[str, SecretStr] = {}
    oci_auth: Literal["config_file", "instance_principal"] = "config_file"
    oci_config_file: Path = Path("~/.oci/config")
    oci_profile: str = "DEFAULT"
    oci_region: str | None = None
    oci_namespace: str | None = None
    oci_bucket: str = "tcloud-backups"
    oci_endpoint: str | None = None

    # API and portal.
    api_host: str = "127.0.0.1"
    api_port: int = 3000
    operator_token: SecretStr | None = None
    signup_enabled: bool = False
    jwt_private_key_file: Path | None = None
    jwt_ttl_seconds: int = 3600

    # The customers' Temporal UI: a second UI server with its OIDC login, this API as the OpenID provider
    # (api/oidc.py), on the public frontend through the UI gateway (api/ui_gateway.py); the operators' UI stays
    # temporal_ui_url, on the internal frontend. The issuer is this API's public URL (discovery at
    # <issuer>/.well-known/openid-configuration); the UI is its one client, with exactly the redirect URI
    # <customer_ui_url>/auth/sso/callback unless oidc_redirect_uris says otherwise.
    customer_ui_url: str = "http://127.0.0.1:8081"
    oidc_issuer: str = "http://127.0.0.1:3000"
    oidc_client_id: str = "temporal-ui"
    oidc_client_secret: SecretStr | None = None
    oidc_redirect_uris: list[str] = []
    # More registered clients, client id -> {"secret": ..., "redirect_uris": [...]}; no secret: a public client,
    # which must use PKCE (S256).
    oidc_extra_clients: dict[str, OidcClient] = {}
    # An authorization code is single-use and lives this long; access and ID tokens live oidc_token_ttl_seconds,
    # then the UI refreshes them with its refresh token (rotated at each use) until oidc_session_seconds after
    # the sign-in, when the customer signs in again.
    oidc_code_ttl_seconds: int = Field(default=60, gt=0, le=600)
    oidc_token_ttl_seconds: int = Field(default=600, gt=0)
    oidc_session_seconds: int = Field(default=8 * 3600, gt=0)
    # The gateway between the customers' UI server and the public frontend (api/ui_gateway.py): where it listens,
    # where it forwards (None: temporal_public_address) and where it reads the keys (None: the issuer's JWKS).
    ui_gateway_host: str = "127.0.0.1"
    ui_gateway_port: int = 7237
    ui_gateway_upstream: str | None = None
    ui_gateway_jwks_url: str | None = None
    # Slow-down of repeated authentication failures, per client address (api/throttle.py): after this many
    # failures within the window, authentication answers 429. Behind N proxies, set the hops so the client is
    # read from X-Forwarded-For.
    auth_failure_limit: int = 100
    auth_failure_window_seconds: float = 60.0
    api_trusted_proxy_hops: int = 0
    # The Cloud Ops API over gRPC (temporal.api.cloud.cloudservice.v1.CloudService, what Temporal's
    # CloudOperationsClient and Cloud SDKs speak), served by the API process on api_host at this port: None turns it
    # off, 0 takes any free port. Plaintext: where TLS is needed the ingress terminates it. On SIGTERM it stops
    # taking calls and lets running ones finish for up to the grace period.
    cloud_api_port: int | None = 3001
    cloud_api_grace_seconds: float = 10.0
    # This platform's one region, as the Cloud Ops API names it (GetRegions, a namespace's spec.regions).
    cloud_region: str = "local"

    # The local platform's Temporal (deploy.sh local): the official server built from its Go module, on the
    # embedded PostgreSQL with JWT authorization ("server"), or the CLI's dev server for a quick look without
    # authorization ("dev"; one door, SQLite). Shards are fixed when Temporal's database is first created.
    local_temporal_engine: Literal["server", "dev"] = "server"
    local_temporal_history_shards: int = 4
    local_temporal_http_port: int = 7243
    local_temporal_metrics_port: int = 9235
    # The server's other ports (history, matching, worker and the five membership ports): Temporal's usual numbers
    # (7234, 7235, 7239, 6933-6939), or eight consecutive ports from this one (below 32768: membership ports are
    # stored as a smallint).
    local_temporal_ports_from: int | None = None
    # How often the local server re-reads the API's JWKS (production: 1m, charts/temporal-values.yaml).
    local_temporal_jwks_refresh: str = "10s"

    # Schedules (hourly usage, monthly billing, daily backups); tests turn them off or give them a prefix.
    schedules_enabled: bool = True
    schedule_prefix: str = ""

    # Billing: hours to wait after a month ends for late usage, invoice workflows at once, dunning.
    billing_grace_hours: int = 6
    billing_max_concurrent: int = 50
    billing_retry_after_hours: list[int] = [72, 120, 168, 336]
    billing_suspend_after_hours: int = 240
    # Closing an account: how long it can be reopened before its namespaces are deleted and it is invoiced.
    account_closure_grace_seconds: int = Field(default=7 * 86400, ge=0)

    # Spend-alert delivery. Webhooks must be https and reach public addresses unless private targets are
    # allowed (the local platform and tests); a delivery is retried for `alert_delivery_hours`, then failed.
    alert_webhook_allow_private: bool = False
    alert_delivery_hours: float = 72.0
    # Email through any SMTP server; locally `deploy.sh local` runs a mail sink into .state/mail (a Maildir).
    smtp_host: str | None = "127.0.0.1"
    smtp_port: int = 8025
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    alert_email_from: str = "tcloud billing <billing@tcloud.localhost>"

    # How often the API refreshes the billing-pipeline gauges from Postgres.
    pipeline_metrics_interval_seconds: float = 30.0

    # Worker.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = 9464

    @field_validator("cloud_api_port", mode="before")
    @classmethod
    def _empty_port_is_off(cls, value: object) -> object:
        """``TCLOUD_CLOUD_API_PORT=`` (empty) turns the Cloud Ops gRPC server off."""
        return None if value == "" else value

    @property
    def stripe_js(self) -> str:
        """Where the portal loads Stripe.js from (localstripe's stand-in when the Stripe base is local)."""
        if self.stripe_js_url:
            return self.stripe_js_url
        host = urlsplit(self.stripe_api_base).hostname or ""
        if host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost"):
            return self.stripe_api_base.rstrip("/") + "/js.stripe.com/v3/"
        return "https://js.stripe.com/v3/"

    @property
    def backup_path(self) -> Path:
        """Directory of the filesystem backup store."""
        return self.backup_dir or self.state_dir / "backups"

    @property
    def customer_ui_redirect_uris(self) -> list[str]:
        """The redirect URIs registered for the customers' UI: exactly these, compared as strings."""
        return self.oidc_redirect_uris or [f"{self.customer_ui_url.rstrip('/')}/auth/sso/callback"]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
