"""Secrets: API keys hashed at rest (no plaintext in any table, log line or workflow history), settings secrets
never printed, Stripe webhooks without a valid signature refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from temporalio.client import Client

from tcloud.settings import Settings
from tests.accounts_fixtures import TestAccount, create_account, create_namespace, unique, wait_stripe_customer
from tests.figures import Figures
from workflows.accounts import account_setup_workflow_id


class Recorder(logging.Handler):
    """Every record of every logger, formatted as it would be written (message, arguments and traceback)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def log_lines() -> Iterator[list[str]]:
    """Log lines of this module's API and worker (both in this process), at DEBUG."""
    recorder = Recorder()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)
    yield recorder.lines
    root.removeHandler(recorder)
    root.setLevel(old_level)


def forms(token: str) -> list[bytes]:
    """How a token could sit in a row's text: as itself, its secret part, or hex of either (bytea)."""
    secret = token.split("_", 2)[2]
    return [token.encode(), secret.encode(), token.encode().hex().encode(), secret.encode().hex().encode()]


async def database_text(pool: asyncpg.Pool) -> dict[str, bytes]:
    """Every row of every table of the platform's database, as text, by table."""
    tables = await pool.fetch("""SELECT table_schema, table_name FROM information_schema.tables
                                  WHERE table_type = 'BASE TABLE'
                                    AND table_schema NOT IN ('pg_catalog', 'information_schema')""")
    out: dict[str, bytes] = {}
    for t in tables:
        name = f'"{t["table_schema"]}"."{t["table_name"]}"'
        rows = await pool.fetch(f"SELECT t::text AS row FROM {name} t")
        out[name] = "\n".join(r["row"] for r in rows).encode()
    return out


async def test_api_keys_are_hashed_at_rest_and_never_logged(
        api: TestClient, operator_headers: dict[str, str], worker: None, pool: asyncpg.Pool,
        temporal_client: Client, log_lines: list[str], figures: Figures) -> None:
    account = await create_account(api, operator_headers, prefix="sec")
    await wait_stripe_customer(pool, account.id)
    tokens = [account.token]
    resp = await api.post("/cloud/api-keys", headers=account.headers, json={"spec": {"displayName": "second"}})
    assert resp.status == 200
    second = await resp.json()
    tokens.append(second["token"])
    # Use the keys every way: reads, a write that runs workflows, a wrong secret on a real prefix, a revoked key.
    await create_namespace(api, account, unique("sec-"))
    assert (await api.get("/cloud/account", headers=account.headers)).status == 200
    wrong = account.token[:-6] + "AAAAAA"
    assert (await api.get("/cloud/account", headers={"Authorization": f"Bearer {wrong}"})).status == 401
    tokens.append(wrong)
    assert (await api.delete(f"/cloud/api-keys/{second['keyId']}", headers=account.headers)).status == 200
    revoked = await api.get("/cloud/account", headers=TestAccount(account.id, second["token"], "").headers)
    assert revoked.status == 401

    tables = await database_text(pool)
    assert '"public"."api_keys"' in tables and len(tables) >= 5
    stored = await pool.fetch("SELECT secret_hash FROM api_keys WHERE account_id = $1", account.id)
    assert len(stored) == 2 and all(len(r["secret_hash"]) == 32 for r in stored)
    found = [(table, token[:12]) for table, text in tables.items() for token in tokens
             for form in forms(token) if form in text]
    assert found == [], f"API key material stored in plaintext: {found}"

    assert len(log_lines) > 0, "the recorder saw no log line: it is not attached"
    logged = [line for line in log_lines for token in tokens if any(f.decode() in line for f in forms(token))]
    assert logged == []

    history = await temporal_client.get_workflow_handle(account_setup_workflow_id(account.id)).fetch_history()
    assert not any(form in history.to_json().encode() for token in tokens for form in forms(token))
    figures.add("tables scanned for secrets", len(tables))
    figures.add("log lines scanned for secrets", len(log_lines))


SECRETS = {
    "postgres_dsn": "postgresql://u:pg-SECRET-1@db/tcloud",
    "stripe_api_key": "sk_live_SECRET-2",
    "stripe_webhook_secret": "whsec_SECRET-3",
    "operator_token": "op-SECRET-4",
    "smtp_password": "smtp-SECRET-6",
    "oidc_client_secret": "oidc-SECRET-7",
}


def test_settings_never_print_their_secrets() -> None:
    settings = Settings.model_validate(
        {**SECRETS, "backup_extra_dsns": {"temporal": "postgresql://t:SECRET-5@db/temporal"}})
    assert isinstance(settings.postgres_dsn, SecretStr) and settings.operator_token is not None
    shown = [repr(settings), str(settings), settings.model_dump_json(), json.dumps(settings.model_dump(mode="json")),
             f"{settings}", f"{settings!r}", str(settings.model_dump())]
    for text in shown:
        assert "SECRET" not in text, text
    # Every SecretStr field is covered: a new secret field must be a SecretStr (or it would print).
    secret_fields = {n for n, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)}
    assert set(SECRETS) | {"backup_extra_dsns"} >= secret_fields


async def test_public_answers_carry_no_secret(api: TestClient, settings: Settings) -> None:
    assert settings.operator_token is not None
    secrets = [settings.operator_token.get_secret_value(), settings.stripe_api_key.get_secret_value(),
               settings.stripe_webhook_secret.get_secret_value(), settings.postgres_dsn.get_secret_value()]
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/.well-known/jwks.json", "/", "/console"):
        body = await (await api.get(path)).text()
        assert not any(s in body for s in secrets), path


def stripe_signature(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header Stripe sends: ``t=<unix>,v1=<HMAC-SHA256 of "t.payload">``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


async def test_stripe_webhooks_without_a_valid_signature_are_refused(api: TestClient, settings: Settings,
                                                                     figures: Figures) -> None:
    payload = json.dumps({"id": "evt_sec", "object": "event", "type": "invoice.paid",
                          "data": {"object": {"id": "in_nosuch", "object": "invoice"}}}).encode()
    secret = settings.stripe_webhook_secret.get_secret_value()
    now = int(time.time())
    refused = {
        "no signature": {},
        "garbage": {"Stripe-Signature": "nonsense"},
        "another secret": {"Stripe-Signature": stripe_signature(payload, "whsec_other", now)},
        "stale (1 h old)": {"Stripe-Signature": stripe_signature(payload, secret, now - 3600)},
        "another payload": {"Stripe-Signature": stripe_signature(payload + b" ", secret, now)},
    }
    for what, headers in refused.items():
        resp = await api.post("/webhooks/stripe", data=payload, headers={**headers, "Content-Type": "application/json"})
        body = await resp.json()
        assert resp.status == 400 and body["message"], (what, body)
    # The same event, rightly signed, is accepted (and not one of ours, so not handled).
    resp = await api.post("/webhooks/stripe", data=payload,
                          headers={"Stripe-Signature": stripe_signature(payload, secret, now),
                                   "Content-Type": "application/json"})
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"received": True, "handled": False}
    figures.add("forged webhooks refused", len(refused))
