"""The production deployment, validated offline: the Helm chart rendered by Helm's own SDK for default and production
values and every manifest checked against a pinned Kubernetes version; the settings it wires; the Temporal chart's
values; the Grafana dashboards' queries (run by the real Prometheus); the Dockerfile's entrypoints.
"""

from __future__ import annotations

import ast
import copy
import importlib.metadata
import json
import os
import re
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from api import oidc
from api.app import create_app
from launcher import temporal_server
from tcloud.settings import Settings
from tests import harness

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "tcloud"
TEMPORAL_VALUES = REPO / "charts" / "temporal-values.yaml"
# The minor version of OKE that infra/terraform creates (tests/test_deploy_terraform.py checks they agree).
KUBERNETES_VERSION = "1.33"
RELEASE = "tcloud"
# Custom resources kubernetes-validate has no schema for; checked structurally below.
CUSTOM_KINDS = {"ServiceMonitor"}

Manifest = dict[str, Any]


def production_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values-production.yaml").read_text())


def render(values: dict[str, Any] | None) -> list[Manifest]:
    """Render the chart with Helm's SDK (chart defaults, then ``values``) and parse every manifest."""
    rendered = helm_python.Chart.load(CHART).render(values=values, name=RELEASE, namespace="tcloud")
    docs: list[Manifest] = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".yaml"):
            docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def only(docs: list[Manifest], kind: str, name: str) -> Manifest:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def container(deployment: Manifest) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


VARIANTS = {
    "default": None,
    "production": production_values(),
    # A throw-away installation that puts its secrets in values: the chart creates the Secret.
    "inline-secrets": {"secrets": {"values": {"postgres_dsn": "postgresql://u:p@db:5432/tcloud",
                                              "stripe_api_key": "sk_test_x", "operator_token": "op"}}},
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> tuple[str, list[Manifest]]:
    return request.param, render(VARIANTS[request.param])


# --- Helm and Kubernetes validity -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_chart_lints_clean_with_helm(name: str) -> None:
    report = helm_python.lint(CHART, VARIANTS[name], strict=True, kube_version=f"v{KUBERNETES_VERSION}.0")
    assert report["errors"] == []
    # Severity 1 is informational (e.g. "icon is recommended"); warnings and errors fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_every_manifest_validates_against_the_pinned_kubernetes(variant: tuple[str, list[Manifest]]) -> None:
    _, docs = variant
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    """The check above can fail: a misspelt field or a wrong type in a rendered Deployment is rejected."""
    api = only(render(None), "Deployment", f"{RELEASE}-api")
    misspelt = copy.deepcopy(api)
    misspelt["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, KUBERNETES_VERSION, strict=True)
    wrong_type = copy.deepcopy(api)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "three thousand"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, KUBERNETES_VERSION, strict=True)


def test_production_renders_ingress_servicemonitors_and_pull_secret() -> None:
    docs = render(production_values())
    ingress = only(docs, "Ingress", f"{RELEASE}-api")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"{RELEASE}-api", "port": {"name": "http"}}
    assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceMonitor"} == {
        f"{RELEASE}-api", f"{RELEASE}-worker"}
    for name in ("api", "worker"):
        pod = only(docs, "Deployment", f"{RELEASE}-{name}")["spec"]["template"]["spec"]
        assert pod["imagePullSecrets"] == [{"name": "ghcr-pull"}]
    assert not [d for d in render(None) if d["kind"] in ("Ingress", "ServiceMonitor")]


# --- Scaling and disruption ------------------------------------------------------------------------------------


def test_hpa_bounds_are_one_to_three_for_api_and_worker(variant: tuple[str, list[Manifest]]) -> None:
    _, docs = variant
    hpas = {d["metadata"]["name"]: d for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
    assert set(hpas) == {f"{RELEASE}-api", f"{RELEASE}-worker"}
    for name, hpa in hpas.items():
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3), name
        target = hpa["spec"]["scaleTargetRef"]
        deployment = only(docs, target["kind"], target["name"])
        # The HPA owns the replica count: a fixed one in the Deployment would fight it on every upgrade.
        assert "replicas" not in deployment["spec"], name


def test_disabling_autoscaling_falls_back_to_fixed_replicas() -> None:
    docs = render({"api": {"autoscaling": {"enabled": False}, "replicas": 2}})
    assert only(docs, "Deployment", f"{RELEASE}-api")["spec"]["replicas"] == 2
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"] == [f"{RELEASE}-worker"]


def test_pod_disruption_budgets_select_each_deployments_pods(variant: tuple[str, list[Manifest]]) -> None:
    _, docs = variant
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert len(pdbs) == 2
    for pdb in pdbs:
        wanted = pdb["spec"]["selector"]["matchLabels"].items()
        selected = [d["metadata"]["name"] for d in docs
                    if d["kind"] == "Deployment" and wanted <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert selected == [pdb["metadata"]["name"]]
        # With one replica, maxUnavailable 1 still lets a node drain (minAvailable 1 would block it forever).
        assert pdb["spec"]["maxUnavailable"] == 1


# --- Wiring: services, probes, settings ------------------------------------------------------------------------


def test_services_and_probes_point_at_real_ports(variant: tuple[str, list[Manifest]]) -> None:
    _, docs = variant
    for service in (d for d in docs if d["kind"] == "Service"):
        pods = [d for d in docs if d["kind"] == "Deployment"
                and service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(pods) == 1, service["metadata"]["name"]
        port_names = {p["name"] for p in container(pods[0])["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names
    api = container(only(docs, "Deployment", f"{RELEASE}-api"))
    assert api["command"] == ["tcloud-api"]
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    worker = container(only(docs, "Deployment", f"{RELEASE}-worker"))
    assert worker["command"] == ["tcloud-worker"]
    assert worker["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}


def test_the_cloud_api_is_a_grpc_port_of_the_api_service_published_with_tls() -> None:
    default = render(None)
    assert not [d for d in default if d["kind"] == "Ingress"]
    docs = render(production_values())
    service = only(docs, "Service", f"{RELEASE}-api")
    grpc_port = next(p for p in service["spec"]["ports"] if p["name"] == "cloud-api")
    assert grpc_port["appProtocol"] == "grpc"
    api = container(only(docs, "Deployment", f"{RELEASE}-api"))
    env = {e["name"]: e["value"] for e in api["env"]}
    assert {"name": "cloud-api", "containerPort": int(env["TCLOUD_CLOUD_API_PORT"]), "protocol": "TCP"} in api["ports"]
    ingress = only(docs, "Ingress", f"{RELEASE}-cloud-api")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    rule = ingress["spec"]["rules"][0]
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": service["metadata"]["name"],
                                                              "port": {"name": "cloud-api"}}
    assert ingress["spec"]["tls"][0]["hosts"] == [rule["host"]]
    # The same ClusterIssuer as the HTTP API's ingress.
    web = only(docs, "Ingress", f"{RELEASE}-api")
    assert (ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]
            == web["metadata"]["annotations"]["cert-manager.io/cluster-issuer"])


def test_the_probed_paths_are_routes_of_the_real_api() -> None:
    paths = {r.resource.canonical for r in create_app(Settings()).router.routes() if r.resource is not None}
    assert {"/healthz", "/readyz", "/metrics", "/.well-known/jwks.json"} <= paths


def settings_of(docs: list[Manifest], deployment: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a pod of ``deployment`` would build: its ConfigMap, Secret (if rendered) and env."""
    spec = container(only(docs, "Deployment", deployment))
    env: dict[str, str] = {}
    for source in spec["envFrom"]:
        if "configMapRef" in source:
            env.update(only(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            name = source["secretRef"]["name"]
            secret = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == name]
            env.update(secret[0]["stringData"] if secret else {})  # else: an existing Secret of the cluster
    env.update({e["name"]: e["value"] for e in spec["env"]})
    fields = set(Settings.model_fields)
    for key in env:
        assert key.startswith("TCLOUD_") and key.removeprefix("TCLOUD_").lower() in fields, f"{key} is no setting"
    for key in [k for k in os.environ if k.startswith("TCLOUD_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_config_and_secrets_become_the_processes_settings(variant: tuple[str, list[Manifest]],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    name, docs = variant
    api = settings_of(docs, f"{RELEASE}-api", monkeypatch)
    assert (api.api_host, api.api_port, api.cloud_api_port) == ("0.0.0.0", 3000, 3001)
    assert api.control_namespace == "tcloud-system"
    worker = settings_of(docs, f"{RELEASE}-worker", monkeypatch)
    assert (worker.worker_metrics_host, worker.worker_metrics_port) == ("0.0.0.0", 9464)
    assert worker.temporal_address == api.temporal_address
    if name == "inline-secrets":
        assert api.postgres_dsn.get_secret_value() == "postgresql://u:p@db:5432/tcloud"
        assert api.operator_token is not None and api.operator_token.get_secret_value() == "op"
    if name == "production":
        assert api.backup_store == "oci" and api.oci_auth == "instance_principal"
        assert api.prometheus_namespace_label == "exported_namespace"
        assert api.temporal_address == "temporal-internal-frontend:7236"
        # The JWT key file the settings name is where the Secret is mounted.
        pod = only(docs, "Deployment", f"{RELEASE}-api")["spec"]["template"]["spec"]
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "jwt")
        item = next(v for v in pod["volumes"] if v["name"] == "jwt")["secret"]["items"][0]
        assert api.jwt_private_key_file == Path(mount["mountPath"]) / item["path"]


@pytest.mark.parametrize("bad", [
    {"config": {"temporal_adress": "typo:7233"}},
    {"secrets": {"values": {"postgres_dns": "typo"}}},
    {"api": {"autoscaling": {"maxReplicas": 4}}},
    {"worker": {"autoscaling": {"minReplicas": 0}}},
], ids=["config-typo", "secret-typo", "api-max-4", "worker-min-0"])
def test_helm_rejects_values_that_are_no_setting_or_break_the_bounds(bad: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        render(bad)


def test_the_values_schema_names_only_settings() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]
    fields = Settings.model_fields
    for name in schema["config"]["properties"]:
        assert name in fields, f"values.schema.json: config.{name} is not a field of Settings"
    for name in schema["secrets"]["properties"]["values"]["properties"]:
        assert name in fields and "SecretStr" in str(fields[name].annotation), f"secrets.values.{name}"


def test_every_config_value_of_the_chart_is_a_setting() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for key in {**values["config"], **production_values()["config"]}:
        assert key in Settings.model_fields, f"config.{key} is not a field of tcloud.settings.Settings"


def test_containers_run_as_non_root_with_a_read_only_root() -> None:
    deployments = [d for d in render(production_values()) if d["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} >= {f"{RELEASE}-customer-ui", f"{RELEASE}-ui-gateway"}
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == dockerfile_user()
        assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        if deployment["metadata"]["name"] == f"{RELEASE}-customer-ui":  # Temporal's UI image: its config, /tmp
            assert mounts == {"/home/ui-server/config", "/tmp"}
            continue
        # Writable places the processes need: /tmp (pg_dump files) and the state directory.
        assert {"/tmp", "/var/lib/tcloud"} <= mounts


def test_service_monitors_scrape_named_service_ports() -> None:
    docs = render(production_values())
    for monitor in (d for d in docs if d["kind"] == "ServiceMonitor"):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        services = [d for d in docs if d["kind"] == "Service"
                    and monitor["spec"]["selector"]["matchLabels"].items() <= d["metadata"]["labels"].items()
                    and d["spec"]["selector"].items() <= monitor["spec"]["selector"]["matchLabels"].items()]
        assert len(services) == 1, monitor["metadata"]["name"]
        service_ports = {p["name"] for p in services[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in service_ports and endpoint["path"] == "/metrics"


# --- The customers' Temporal UI -------------------------------------------------------------------------------

SECRET_IN_UI_CONFIG = '{{ env "TEMPORAL_AUTH_CLIENT_SECRET" | quote }}'


def customer_ui_config(docs: list[Manifest]) -> dict[str, Any]:
    """The UI server's config file the chart renders, its client secret template replaced by a marker."""
    text = only(docs, "ConfigMap", f"{RELEASE}-customer-ui")["data"]["docker.yaml"]
    # The UI server's own template (Go text/template) reads the secret from the environment at start.
    assert text.startswith("# enable-template\n") and text.count(SECRET_IN_UI_CONFIG) == 1
    config: dict[str, Any] = yaml.safe_load(text.replace(SECRET_IN_UI_CONFIG, '"<secret>"'))
    return config


def test_the_customer_ui_is_configured_as_the_local_one() -> None:
    """The chart's UI server config is launcher.temporal_server.customer_ui_config's, which the browser test runs."""
    docs = render(production_values())
    chart = customer_ui_config(docs)
    config = production_values()["config"]
    defaults = Settings()
    local = temporal_server.customer_ui_config(
        gateway_address=chart["temporalGrpcAddress"], port=chart["port"], ui_url=config["customer_ui_url"],
        issuer=config["oidc_issuer"], client_id=defaults.oidc_client_id, client_secret="<secret>",
        callback_url=config["customer_ui_url"] + "/auth/sso/callback", session_seconds=defaults.oidc_session_seconds)
    assert chart.pop("host") == "0.0.0.0" and local.pop("host") == "127.0.0.1"  # a pod, a loopback process
    assert chart == local
    assert chart["auth"]["enabled"] is True and chart["cors"]["cookieInsecure"] is False


def test_the_customer_ui_and_the_api_agree_on_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(production_values())
    provider = customer_ui_config(docs)["auth"]["providers"][0]
    api = settings_of(docs, f"{RELEASE}-api", monkeypatch)
    assert provider["providerUrl"] == api.oidc_issuer == "https://" + production_values()["api"]["ingress"]["host"]
    assert provider["clientId"] == api.oidc_client_id
    assert [provider["callbackUrl"]] == api.customer_ui_redirect_uris
    assert provider["scopes"] == list(oidc.SCOPES)
    # The client secret: one key of the Secret both read (the API as a setting, the UI from its environment).
    ui = container(only(docs, "Deployment", f"{RELEASE}-customer-ui"))
    ref = next(e for e in ui["env"] if e["name"] == "TEMPORAL_AUTH_CLIENT_SECRET")["valueFrom"]["secretKeyRef"]
    assert ref == {"name": production_values()["secrets"]["existingSecret"], "key": "TCLOUD_OIDC_CLIENT_SECRET"}
    assert "SecretStr" in str(Settings.model_fields["oidc_client_secret"].annotation)
    # Its public host: the ingress, with TLS, in front of the UI's Service.
    ingress = only(docs, "Ingress", f"{RELEASE}-customer-ui")
    host = urllib.parse.urlsplit(api.customer_ui_url).hostname
    assert ingress["spec"]["rules"][0]["host"] == host and ingress["spec"]["tls"][0]["hosts"] == [host]
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"] == {
        "name": f"{RELEASE}-customer-ui", "port": {"name": "http"}}
    # Temporal's chart runs the same UI release for the operators.
    temporal_web = yaml.safe_load(TEMPORAL_VALUES.read_text())["web"]["image"]
    assert ui["image"] == f"{temporal_web['repository']}:{temporal_web['tag']}"


def test_the_customer_ui_reaches_the_public_frontend_through_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(production_values())
    gateway_service = only(docs, "Service", f"{RELEASE}-ui-gateway")
    port = next(p for p in gateway_service["spec"]["ports"] if p["name"] == "grpc")
    assert customer_ui_config(docs)["temporalGrpcAddress"] == f"{gateway_service['metadata']['name']}:{port['port']}"
    gateway = settings_of(docs, f"{RELEASE}-ui-gateway", monkeypatch)
    assert container(only(docs, "Deployment", f"{RELEASE}-ui-gateway"))["command"] == ["tcloud-ui-gateway"]
    assert (gateway.ui_gateway_host, gateway.ui_gateway_port) == ("0.0.0.0", port["port"])
    # Upstream: the Temporal chart's public frontend (release `temporal`), not the internal one the API uses.
    assert gateway.ui_gateway_upstream == "temporal-frontend:7233"
    assert gateway.temporal_address == "temporal-internal-frontend:7236"
    # Keys: the API Service's JWKS, the one Temporal's frontend trusts too.
    keys = yaml.safe_load(TEMPORAL_VALUES.read_text())["server"]["config"]["authorization"]["jwtKeyProvider"]
    api_service = only(docs, "Service", f"{RELEASE}-api")["metadata"]["name"]
    assert gateway.ui_gateway_jwks_url == f"http://{api_service}:80/.well-known/jwks.json"
    assert keys["keySourceURIs"] == [f"http://{api_service}/.well-known/jwks.json"]
    assert gateway.oidc_issuer == production_values()["config"]["oidc_issuer"]
    # The gateway has no key to sign with.
    pod = only(docs, "Deployment", f"{RELEASE}-ui-gateway")["spec"]["template"]["spec"]
    assert not [v for v in pod["volumes"] if "secret" in v]
    assert callable(importlib.metadata.entry_points(group="console_scripts")["tcloud-ui-gateway"].load())


def test_the_customer_ui_needs_its_url_and_is_off_by_default() -> None:
    assert not [d for d in render(None) if "customer-ui" in d["metadata"]["name"] or
                "ui-gateway" in d["metadata"]["name"]]
    with pytest.raises(helm_python.HelmRenderError, match=r"config\.customer_ui_url"):
        render({"customerUi": {"enabled": True}})
    with pytest.raises(helm_python.HelmRenderError, match=r"config\.oidc_issuer"):
        render({"customerUi": {"enabled": True}, "config": {"customer_ui_url": "https://ui.example.org"}})
    # A throw-away installation with the client secret in values: the chart's Secret carries it.
    docs = render({"customerUi": {"enabled": True},
                   "config": {"customer_ui_url": "https://ui.example.org", "oidc_issuer": "https://api.example.org"},
                   "secrets": {"values": {"oidc_client_secret": "s3cret", "postgres_dsn": "postgresql://x@db/t"}}})
    secret = only(docs, "Secret", f"{RELEASE}-secrets")
    assert secret["stringData"]["TCLOUD_OIDC_CLIENT_SECRET"] == "s3cret"
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


# --- Grafana dashboards ----------------------------------------------------------------------------------------


def dashboards() -> dict[str, dict[str, Any]]:
    configmap = only(render(None), "ConfigMap", f"{RELEASE}-dashboards")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    return {name: json.loads(text) for name, text in configmap["data"].items()}


def test_dashboards_ship_usage_and_billing_pipeline_panels() -> None:
    boards = dashboards()
    assert set(boards) == {"tcloud-usage.json", "tcloud-billing-pipeline.json"}
    titles = {b["uid"]: " | ".join(p["title"] for p in b["panels"]) for b in boards.values()}
    assert "by namespace" in titles["tcloud-usage"]
    for subject in ("collection lag", "Invoices by state", "Failed"):
        assert subject.lower() in titles["tcloud-billing-pipeline"].lower()
    for board in boards.values():
        assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
        assert all(p["targets"] and p["datasource"]["uid"] == "${datasource}" for p in board["panels"])


def dashboard_queries() -> list[tuple[str, str]]:
    """Every query of every panel, with the dashboards' template variables filled in."""
    queries = []
    for board in dashboards().values():
        for panel in board["panels"]:
            for target in panel["targets"]:
                for label in ("exported_namespace", "namespace"):
                    queries.append((f"{board['uid']}/{panel['title']}", target["expr"].replace("${ns_label}", label)))
    return queries


def test_every_dashboard_query_is_valid_promql_for_the_real_prometheus(prometheus: harness.Prometheus) -> None:
    for where, query in dashboard_queries():
        url = f"{prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                assert json.load(response)["status"] == "success", where
        except urllib.error.HTTPError as err:
            pytest.fail(f"{where}: Prometheus rejected {query!r}: {err.read().decode()}")
    # And the check bites: Prometheus answers 400 to a broken expression.
    bad = f"{prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": "sum by (x (rate(action[5m]))"})
    with pytest.raises(urllib.error.HTTPError) as rejected:
        urllib.request.urlopen(bad, timeout=10)
    assert rejected.value.code == 400


# --- Temporal's chart values -----------------------------------------------------------------------------------


def test_temporal_values_use_postgres_for_persistence_and_visibility() -> None:
    server = yaml.safe_load(TEMPORAL_VALUES.read_text())["server"]
    persistence = server["config"]["persistence"]
    assert (persistence["defaultStore"], persistence["visibilityStore"]) == ("default", "visibility")
    for store in ("default", "visibility"):
        sql = persistence["datastores"][store]["sql"]
        assert sql["pluginName"] == sql["driverName"] == "postgres12"
        assert sql["existingSecret"] == "temporal-postgres"  # created by deploy-oke.sh, never in values
        assert "password" not in sql
    assert persistence["datastores"]["default"]["sql"]["databaseName"] != \
        persistence["datastores"]["visibility"]["sql"]["databaseName"]


def test_temporal_values_scrape_metrics_and_keep_bundled_stores_off() -> None:
    values = yaml.safe_load(TEMPORAL_VALUES.read_text())
    assert values["server"]["metrics"]["serviceMonitor"]["enabled"] is True
    assert values["server"]["metrics"]["serviceMonitor"]["additionalLabels"]["release"] == "kube-prometheus-stack"
    for bundled in ("cassandra", "mysql", "postgresql", "elasticsearch", "prometheus", "grafana"):
        assert values[bundled]["enabled"] is False, bundled


def test_temporal_authorizes_tenants_with_the_apis_jwks() -> None:
    values = yaml.safe_load(TEMPORAL_VALUES.read_text())
    auth = values["server"]["config"]["authorization"]
    assert (auth["authorizer"], auth["claimMapper"], auth["permissionsClaimName"]) == ("default", "default",
                                                                                      "permissions")
    # The JWKS URI is the tcloud chart's API Service (same Kubernetes namespace) at the API's JWKS route.
    api_service = only(render(production_values()), "Service", f"{RELEASE}-api")
    port = api_service["spec"]["ports"][0]["port"]
    host = api_service["metadata"]["name"] + ("" if port == 80 else f":{port}")
    assert auth["jwtKeyProvider"]["keySourceURIs"] == [f"http://{host}/.well-known/jwks.json"]
    # The platform's own processes use the internal frontend, which needs no tenant token.
    assert values["server"]["internal-frontend"]["enabled"] is True
    prod_config = production_values()["config"]
    assert prod_config["temporal_address"] == "temporal-internal-frontend:7236"


def test_tenants_reach_temporals_frontend_over_grpc_with_tls() -> None:
    frontend = yaml.safe_load(TEMPORAL_VALUES.read_text())["server"]["frontend"]["ingress"]
    assert frontend["enabled"] is True and frontend["className"] == "nginx"
    assert frontend["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    assert frontend["tls"][0]["hosts"] == frontend["hosts"]
    # The same ClusterIssuer as the API's ingress.
    api_ingress = production_values()["api"]["ingress"]["annotations"]
    assert frontend["annotations"]["cert-manager.io/cluster-issuer"] == api_ingress["cert-manager.io/cluster-issuer"]


def test_the_operators_ui_uses_the_internal_frontend() -> None:
    """The official chart's UI is the operators': every namespace, no sign-in, so only on the internal door and
    without an ingress (the customers' UI is the tcloud chart's customerUi)."""
    web = yaml.safe_load(TEMPORAL_VALUES.read_text())["web"]
    assert web["temporalAddress"] == production_values()["config"]["temporal_address"]
    assert "ingress" not in web


def test_temporal_values_create_the_control_namespace_and_search_attributes() -> None:
    values = yaml.safe_load(TEMPORAL_VALUES.read_text())
    namespaces = {n["name"] for n in values["server"]["config"]["namespaces"]["namespace"]}
    assert Settings().control_namespace in namespaces
    env = {e["name"]: e["value"] for e in values["admintools"]["additionalEnv"]}
    attributes = dict(pair.split("=") for pair in env["TCLOUD_SEARCH_ATTRIBUTES"].split(","))
    assert attributes == {"TcloudAccount": "Keyword", "TcloudPeriod": "Keyword", "TcloudStatus": "Keyword",
                          "TcloudAccounts": "KeywordList"}


# --- The Dockerfile --------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(ins.upper(), rest.strip()) for ins, _, rest in
            (line.partition(" ") for line in lines if line and not line.startswith("#"))]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (ins, _) in enumerate(instructions) if ins == "FROM")
    return instructions[last_from:]


def dockerfile_user() -> int:
    users = [args for ins, args in final_stage() if ins == "USER"]
    return int(users[-1].split(":")[0])


def console_scripts() -> dict[str, str]:
    scripts: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    return scripts


def test_dockerfile_entrypoints_are_the_projects_console_scripts() -> None:
    cmd = [json.loads(args) for ins, args in final_stage() if ins in ("CMD", "ENTRYPOINT")]
    assert cmd == [["tcloud-api"]]
    scripts = console_scripts()
    commands = {container(d)["command"][0] for d in render(None) if d["kind"] == "Deployment"}
    assert commands == {"tcloud-api", "tcloud-worker"}
    assert commands | {cmd[0][0]} <= set(scripts)
    # The installed scripts point where pyproject says, and load.
    installed = {ep.name: ep for ep in importlib.metadata.entry_points(group="console_scripts")}
    for name in commands:
        assert installed[name].value == scripts[name]
        assert callable(installed[name].load())


def test_dockerfile_is_pinned_non_root_and_health_checked() -> None:
    instructions = dockerfile_instructions()
    args = dict(a.split("=", 1) for ins, a in instructions if ins == "ARG" and "=" in a)
    for ins, image in ((i, a.split()[0]) for i, a in instructions if i == "FROM"):
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        if ":" not in image:
            continue  # a build stage by name
        assert re.search(r":\d+\.\d+\.\d+-", image), f"{ins} {image} is not pinned to a patch version"
    assert dockerfile_user() != 0
    health = [a for ins, a in final_stage() if ins == "HEALTHCHECK"]
    assert health and "/healthz" in health[0]
    exposed = {int(p) for ins, a in final_stage() if ins == "EXPOSE" for p in a.split()}
    assert exposed == {Settings().api_port, Settings().cloud_api_port, Settings().worker_metrics_port}


def test_image_keeps_the_portals_files_where_the_api_looks_for_them() -> None:
    """The API finds api/static and node_modules relative to its source: the image installs the code editable
    under its WORKDIR and puts the npm packages beside it."""
    from api.routes import portal

    assert portal.STATIC == REPO / "api" / "static" and portal.NODE_MODULES == REPO / "node_modules"
    stage = final_stage()
    workdir = [a for ins, a in stage if ins == "WORKDIR"][-1]
    copies = [a.split() for ins, a in stage if ins == "COPY"]
    assert ["--from=build", workdir, workdir] in copies
    assert ["--from=frontend", "/src/node_modules", f"{workdir}/node_modules"] in copies
    build_stage = dockerfile_instructions()
    assert ("RUN", "pip install -e .") in build_stage
    assert ("WORKDIR", workdir) in build_stage[:build_stage.index(("RUN", "pip install -e ."))]


def test_dockerfile_copies_every_python_package_and_nothing_ignored() -> None:
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = [a.split()[:-1] for ins, a in dockerfile_instructions() if ins == "COPY" and "--from" not in a]
    sources = {src.rstrip("/") for srcs in copied for src in srcs}
    for pattern in include:
        assert pattern.rstrip("*") in sources, f"package {pattern} is not copied into the image"
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: no such path"
        assert source not in ignored, f"COPY {source} is excluded by .dockerignore"
    # Nothing the copied packages import from this repository is left out of the image (tests/, bench/...).
    for package in (p.rstrip("*") for p in include):
        for module in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(module.read_text(), str(module))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
                for root in (name.split(".")[0] for name in names):
                    if (REPO / root).is_dir() or (REPO / f"{root}.py").exists():
                        assert root in sources, f"{module.relative_to(REPO)} imports {root}, not in the image"
