"""`deploy.sh local | status | stop` on free ports: everything comes up, and stop + start keeps the data."""

from __future__ import annotations

import asyncio
import json
import mailbox
import os
import smtplib
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from launcher import procs
from launcher.cli import read_env_file

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def deploy_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    state = tmp_path_factory.mktemp("deploy-state")
    grpc, public, ui, http, metrics, prom, stripe_port, api, worker, smtp, cloud, customer_ui, gateway = (
        procs.free_port() for _ in range(13))
    others_from = next(p for p in iter(lambda: procs.free_low_port(20000, 32000), None)
                       if all(not procs.port_open(p + i) for i in range(8)))
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("TCLOUD_")},
        "TCLOUD_VENV": sys.prefix,
        "TCLOUD_STATE_DIR": str(state),
        "TCLOUD_TEMPORAL_ADDRESS": f"127.0.0.1:{grpc}",
        "TCLOUD_TEMPORAL_PUBLIC_ADDRESS": f"127.0.0.1:{public}",
        "TCLOUD_LOCAL_TEMPORAL_PORTS_FROM": str(others_from),
        "TCLOUD_TEMPORAL_UI_URL": f"http://127.0.0.1:{ui}",
        "TCLOUD_LOCAL_TEMPORAL_HTTP_PORT": str(http),
        "TCLOUD_LOCAL_TEMPORAL_METRICS_PORT": str(metrics),
        "TCLOUD_PROMETHEUS_URL": f"http://127.0.0.1:{prom}",
        "TCLOUD_STRIPE_API_BASE": f"http://127.0.0.1:{stripe_port}",
        "TCLOUD_API_PORT": str(api),
        "TCLOUD_CLOUD_API_PORT": str(cloud),
        "TCLOUD_WORKER_METRICS_PORT": str(worker),
        "TCLOUD_SMTP_PORT": str(smtp),
        "TCLOUD_CUSTOMER_UI_URL": f"http://127.0.0.1:{customer_ui}",
        "TCLOUD_UI_GATEWAY_PORT": str(gateway),
    }


def deploy(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(REPO / "deploy.sh"), *args], env=env, capture_output=True, text=True,
                            timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"deploy.sh {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def temporal(env: dict[str, str], *args: str) -> str:
    cmd = [str(procs.BIN_DIR / "temporal"), *args, "--address", env["TCLOUD_TEMPORAL_ADDRESS"]]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout


def temporal_failure(env: dict[str, str], *args: str) -> str:
    """Run the temporal CLI expecting it to fail; its error output."""
    cmd = [str(procs.BIN_DIR / "temporal"), *args, "--address", env["TCLOUD_TEMPORAL_ADDRESS"]]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode != 0, result.stdout
    return result.stderr


def ui_namespaces(ui_url: str) -> list[str]:
    """The namespaces the Temporal UI lists (through its own API)."""
    with urllib.request.urlopen(ui_url + "/api/v1/namespaces", timeout=10) as resp:
        return [n["namespaceInfo"]["name"] for n in json.load(resp)["namespaces"]]


async def _db_rows(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def _tenant_uses_the_public_door(env: dict[str, str]) -> None:
    """README's path for a customer: an API key, a namespace, a token, then the temporal CLI on the public door."""
    api = f"http://127.0.0.1:{env['TCLOUD_API_PORT']}"
    operator = read_env_file(Path(env["TCLOUD_STATE_DIR"]) / "tcloud.env")["TCLOUD_OPERATOR_TOKEN"]
    account = "dep" + uuid.uuid4().hex[:8]
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{api}/admin/accounts", headers={"Authorization": f"Bearer {operator}"},
                             json={"id": account, "name": "D", "email": "d@d.test", "plan": "essentials"}) as resp:
            key = (await resp.json())["apiKey"]["token"]
        headers = {"Authorization": f"Bearer {key}"}
        async with http.post(f"{api}/cloud/namespaces", headers=headers,
                             json={"spec": {"name": "orders", "retentionDays": 1}}) as resp:
            created = await resp.json()
        op = created["asyncOperation"]["id"]
        for _ in range(300):
            async with http.get(f"{api}/cloud/operations/{op}", headers=headers) as resp:
                if (await resp.json())["asyncOperation"]["state"] == "STATE_FULFILLED":
                    break
            await asyncio.sleep(0.2)
        async with http.post(f"{api}/cloud/namespaces/orders.{account}/token", headers=headers) as resp:
            token = await resp.json()
    assert token["address"] == env["TCLOUD_TEMPORAL_PUBLIC_ADDRESS"]
    cli = [str(procs.BIN_DIR / "temporal"), "workflow", "list", "--address", token["address"],
           "--namespace", f"orders.{account}", "--tls=false"]
    with_token = await asyncio.to_thread(subprocess.run, [*cli, "--api-key", token["token"]], capture_output=True,
                                         text=True, timeout=60)
    assert with_token.returncode == 0, with_token.stderr
    without = await asyncio.to_thread(subprocess.run, cli, capture_output=True, text=True, timeout=60)
    assert without.returncode != 0 and "unauthorized" in without.stderr.lower(), without.stderr


async def test_deploy_local_status_stop_keeps_data(deploy_env: dict[str, str]) -> None:
    try:
        up = deploy(deploy_env, "local")
        assert "api: started" in up.stdout
        status = deploy(deploy_env, "status")
        assert "DOWN" not in status.stdout, status.stdout
        assert status.stdout.count("UP") == 11
        # The customers' Temporal UI, its gateway and the API's OpenID discovery document.
        assert f"UP    customer-ui  {deploy_env['TCLOUD_CUSTOMER_UI_URL']} (sign-in at " in status.stdout
        assert "refuses calls without a JWT" in status.stdout
        assert "refuses calls without an API key" in status.stdout  # the Cloud Ops gRPC server of the API process
        # The mail sink keeps what it is sent in the state directory.
        with smtplib.SMTP("127.0.0.1", int(deploy_env["TCLOUD_SMTP_PORT"]), timeout=10) as smtp:
            smtp.sendmail("billing@tcloud.localhost", ["ops@acme.test"], b"Subject: hello\r\n\r\nbody\r\n")
        maildir = mailbox.Maildir(Path(deploy_env["TCLOUD_STATE_DIR"]) / "mail", create=False)
        assert [m["Subject"] for m in maildir] == ["hello"]

        # Running it again starts no duplicates.
        again = deploy(deploy_env, "local")
        assert "started" not in again.stdout, again.stdout

        assert "tcloud-system" in temporal(deploy_env, "operator", "namespace", "list")
        assert procs.http_ok(deploy_env["TCLOUD_TEMPORAL_UI_URL"]), "Temporal UI does not answer"
        assert "tcloud-system" in ui_namespaces(deploy_env["TCLOUD_TEMPORAL_UI_URL"])

        wf_id = f"platform-check/{uuid.uuid4()}"
        out = temporal(deploy_env, "workflow", "execute", "--namespace", "tcloud-system",
                       "--task-queue", "tcloud-control", "--type", "PlatformCheckWorkflow",
                       "--workflow-id", wf_id, "--input", "{}", "-o", "json")
        assert json.loads(out)["status"] == "COMPLETED"
        await _tenant_uses_the_public_door(deploy_env)
        dsn = read_env_file(Path(deploy_env["TCLOUD_STATE_DIR"]) / "tcloud.env")["TCLOUD_POSTGRES_DSN"]
        await _db_rows(dsn, "INSERT INTO accounts (id, name, email) VALUES ('keepme', 'K', 'k@k.test') RETURNING id")

        # The daily backup covers Temporal's own databases; restoring them brings back what the backup held.
        backup = temporal(deploy_env, "workflow", "execute", "--namespace", "tcloud-system",
                          "--task-queue", "tcloud-control", "--type", "BackupWorkflow",
                          "--workflow-id", f"backup/test-{uuid.uuid4().hex[:6]}", "--input", "{}", "-o", "json")
        dumped = {d["database"] for d in json.loads(backup)["result"]["manifest"]["dumps"]}
        assert {"platform", "temporal", "temporal_visibility"} <= dumped, dumped
        after_backup = f"platform-check/{uuid.uuid4()}"
        temporal(deploy_env, "workflow", "execute", "--namespace", "tcloud-system", "--task-queue", "tcloud-control",
                 "--type", "PlatformCheckWorkflow", "--workflow-id", after_backup, "--input", "{}")
        restored = deploy(deploy_env, "restore", "latest", "--temporal", "--force")
        assert "restored" in restored.stdout and "temporal_visibility" in restored.stdout, restored.stdout
        assert "DOWN" not in deploy(deploy_env, "status").stdout
        temporal(deploy_env, "workflow", "describe", "--namespace", "tcloud-system", "--workflow-id", wf_id)
        gone = temporal_failure(deploy_env, "workflow", "describe", "--namespace", "tcloud-system", "--workflow-id",
                                after_backup)
        assert "not found" in gone.lower(), gone

        deploy(deploy_env, "stop")
        assert deploy(deploy_env, "status", check=False).returncode != 0

        deploy(deploy_env, "local")
        described = temporal(deploy_env, "workflow", "describe", "--namespace", "tcloud-system",
                             "--workflow-id", wf_id, "-o", "json")
        assert json.loads(described)["workflowExecutionInfo"]["status"] == "WORKFLOW_EXECUTION_STATUS_COMPLETED"
        rows = await _db_rows(dsn, "SELECT id FROM accounts WHERE id = 'keepme'")
        assert len(rows) == 1
    finally:
        deploy(deploy_env, "stop", check=False)
