"""The local platform's Temporal server is configured as production's (charts/temporal-values.yaml), so the suite
tests what the chart deploys: same release, same authorization, same persistence, two doors."""

from __future__ import annotations

from pathlib import Path

import yaml

from launcher import gobuild, temporal_server

REPO = Path(__file__).resolve().parents[1]
CHART = yaml.safe_load((REPO / "charts" / "temporal-values.yaml").read_text())


def _local_config() -> dict:  # type: ignore[type-arg]
    return temporal_server.server_config(
        ports=temporal_server.ServerPorts.local(frontend=7233, internal_frontend=7236, frontend_http=7243,
                                                metrics=9235),
        postgres=temporal_server.PostgresTarget.from_dsn("postgresql://temporal:pw@db.internal:5432/postgres"),
        jwks_uris=["http://127.0.0.1:3000/.well-known/jwks.json"], jwks_refresh="10s",
        dynamic_config_file=Path("/tmp/dc.yaml"), history_shards=4)


def test_the_chart_runs_the_release_the_suite_builds() -> None:
    assert "v" + CHART["server"]["image"]["tag"] == gobuild.SERVER_VERSION
    assert "v" + CHART["web"]["image"]["tag"] == gobuild.UI_SERVER_VERSION


def test_authorization_is_the_charts() -> None:
    local = _local_config()["global"]["authorization"]
    chart = CHART["server"]["config"]["authorization"]
    for key in ("authorizer", "claimMapper", "permissionsClaimName"):
        assert local[key] == chart[key], key
    assert local["authorizer"] == "default" and local["claimMapper"] == "default"
    assert local["jwtKeyProvider"]["keySourceURIs"][0].endswith("/.well-known/jwks.json")
    assert chart["jwtKeyProvider"]["keySourceURIs"][0].endswith("/.well-known/jwks.json")


def test_persistence_and_visibility_are_postgres_like_the_charts() -> None:
    local = _local_config()["persistence"]
    chart = CHART["server"]["config"]["persistence"]
    for store in ("default", "visibility"):
        assert local["datastores"][store]["sql"]["databaseName"] == chart["datastores"][store]["sql"]["databaseName"]
        # Over TCP both use lib/pq's postgres12; the embedded server's Unix socket needs the pgx driver.
        assert local["datastores"][store]["sql"]["pluginName"] == chart["datastores"][store]["sql"]["pluginName"]
    assert local["visibilityStore"] == chart["visibilityStore"]
    socket = temporal_server.PostgresTarget.from_dsn("postgresql://postgres:@/postgres?host=/run/pg")
    assert socket.datastore("temporal", max_conns=1)["sql"]["pluginName"] == "postgres12_pgx"


def test_two_doors_the_internal_one_on_loopback() -> None:
    services = _local_config()["services"]
    assert set(services) == {"frontend", "internal-frontend", "history", "matching", "worker"}
    assert all(s["rpc"]["bindOnIP"] == "127.0.0.1" for s in services.values())
    assert CHART["server"]["internal-frontend"]["enabled"] is True
    assert "ingress" not in CHART["server"]["internal-frontend"]


def test_two_uis_the_operators_on_the_internal_door_the_customers_with_their_sign_in() -> None:
    """The operators' UI runs without a sign-in, so only against the internal frontend; the customers' UI signs in
    with the API as its OpenID provider and reaches Temporal through the UI gateway, with the same UI release."""
    from api import oidc
    from tcloud.settings import Settings

    operators = temporal_server.ui_config(grpc_address="127.0.0.1:7236", port=8080, default_namespace="tcloud-system")
    assert operators["auth"] == {"enabled": False}
    assert CHART["web"]["temporalAddress"].endswith(":7236")  # production: the internal frontend too

    settings = Settings()
    customers = temporal_server.customer_ui_config(
        gateway_address=f"127.0.0.1:{settings.ui_gateway_port}", port=8081, ui_url=settings.customer_ui_url,
        issuer=settings.oidc_issuer, client_id=settings.oidc_client_id, client_secret="s",
        callback_url=settings.customer_ui_redirect_uris[0], session_seconds=settings.oidc_session_seconds)
    assert customers["temporalGrpcAddress"] == f"127.0.0.1:{settings.ui_gateway_port}"
    auth = customers["auth"]
    assert auth["enabled"] is True and auth["redirectToProvider"] is True
    [provider] = auth["providers"]
    assert (provider["type"], provider["providerUrl"], provider["clientId"]) == (
        "oidc", settings.oidc_issuer, settings.oidc_client_id)
    assert provider["callbackUrl"] == "http://127.0.0.1:8081/auth/sso/callback"
    assert set(provider["scopes"]) <= set(oidc.SCOPES)
    assert customers["cors"] == {"cookieInsecure": True, "allowOrigins": [settings.customer_ui_url]}
    # The link back to the portal: the API's page, framed from the API's origin only.
    [link] = customers["customUi"]["iframeExtensions"]
    assert link["allowedOrigin"] == settings.oidc_issuer and link["src"] == f"{settings.oidc_issuer}/ui-link"
    tcloud_values = yaml.safe_load((REPO / "charts" / "tcloud" / "values.yaml").read_text())
    assert "v" + tcloud_values["customerUi"]["image"]["tag"] == gobuild.UI_SERVER_VERSION
