"""The official Temporal server on PostgreSQL with JWT authorization: its config, schemas and process.

The same choices as ``charts/temporal-values.yaml``, so that the local platform and the tests run what production
runs: persistence and SQL visibility on PostgreSQL (``postgres12``), Temporal's default authorizer and default JWT
claim mapper with keys from the control plane's JWKS, and two doors:

- the public frontend, where tenants connect and every call needs a valid JWT;
- the internal frontend (``internal-frontend``), where the platform's own processes connect. The server maps every
  caller there to the system admin, so it must never be reachable from outside: loopback here, cluster-internal on
  Kubernetes (the chart gives it no ingress).

The config is written as JSON, which is also YAML, so no YAML library is needed to write it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from launcher import gobuild, procs

PERSISTENCE_DB = "temporal"
VISIBILITY_DB = "temporal_visibility"
DATABASES = (PERSISTENCE_DB, VISIBILITY_DB)
SCHEMAS = {PERSISTENCE_DB: "postgresql/v12/temporal", VISIBILITY_DB: "postgresql/v12/visibility"}
SERVICES = ("frontend", "internal-frontend", "history", "matching", "worker")

# Checked at every start: a short refresh so that the control plane's key is known soon after the API starts.
DYNAMIC_CONFIG = {
    # How soon a newly registered namespace (or search attribute) is served by every service.
    "system.namespaceCacheRefreshInterval": [{"value": "1s"}],
}


@dataclass
class ServerPorts:
    """Every port the all-in-one server listens on (gRPC and ringpop membership per service)."""

    frontend: int
    frontend_http: int
    internal_frontend: int
    history: int
    matching: int
    worker: int
    frontend_membership: int
    internal_frontend_membership: int
    history_membership: int
    matching_membership: int
    worker_membership: int
    metrics: int

    @classmethod
    def free(cls) -> ServerPorts:
        """Ports nothing listens on right now (tests), below the ephemeral range (see ``procs.free_low_port``)."""
        chosen: list[int] = []
        while len(chosen) < len(fields(cls)):
            port = procs.free_low_port()
            if port not in chosen:
                chosen.append(port)
        return cls(*chosen)

    @classmethod
    def local(cls, *, frontend: int, internal_frontend: int, frontend_http: int, metrics: int,
              others_from: int | None = None) -> ServerPorts:
        """The local platform's ports: Temporal's usual numbers, or eight consecutive ones from ``others_from``."""
        others = ([7234, 7235, 7239, 6933, 6936, 6934, 6935, 6939] if others_from is None
                  else list(range(others_from, others_from + 8)))
        history, matching, worker, *membership = others
        return cls(frontend=frontend, frontend_http=frontend_http, internal_frontend=internal_frontend,
                   history=history, matching=matching, worker=worker, frontend_membership=membership[0],
                   internal_frontend_membership=membership[1], history_membership=membership[2],
                   matching_membership=membership[3], worker_membership=membership[4], metrics=metrics)

    def rpc(self, service: str) -> dict[str, object]:
        key = service.replace("-", "_")
        out: dict[str, object] = {"grpcPort": getattr(self, key), "membershipPort": getattr(self, f"{key}_membership"),
                                  "bindOnIP": "127.0.0.1"}
        if service == "frontend":
            out["httpPort"] = self.frontend_http
        return out


@dataclass(frozen=True)
class PostgresTarget:
    """Where Temporal's two databases live, from a server DSN (TCP or a Unix socket directory)."""

    user: str
    password: str
    host: str
    port: int
    socket_dir: str | None

    @property
    def plugin(self) -> str:
        """The chart's ``postgres12`` (lib/pq) over TCP; over a Unix socket only the pgx driver honours ``host``."""
        return "postgres12_pgx" if self.socket_dir else "postgres12"

    @classmethod
    def from_dsn(cls, dsn: str) -> PostgresTarget:
        parts = urlsplit(dsn)
        socket_dir = parse_qs(parts.query).get("host", [None])[0]
        return cls(user=parts.username or "postgres", password=parts.password or "",
                   host=parts.hostname or "localhost", port=parts.port or 5432, socket_dir=socket_dir)

    def datastore(self, database: str, *, max_conns: int) -> dict[str, object]:
        sql: dict[str, object] = {
            "pluginName": self.plugin, "databaseName": database, "connectAddr": f"{self.host}:{self.port}",
            "connectProtocol": "tcp", "user": self.user, "password": self.password,
            "maxConns": max_conns, "maxIdleConns": max_conns, "maxConnLifetime": "1h",
        }
        if self.socket_dir:
            sql["connectAttributes"] = {"host": self.socket_dir}
        return {"sql": sql}

    def sql_tool_args(self, database: str) -> list[str]:
        args = ["--plugin", self.plugin, "--ep", self.host, "-p", str(self.port), "-u", self.user,
                "--db", database]
        if self.password:
            args += ["--pw", self.password]
        if self.socket_dir:
            args += ["--connect-attributes", f"host={self.socket_dir}"]
        return args


def server_config(*, ports: ServerPorts, postgres: PostgresTarget, jwks_uris: Sequence[str],
                  jwks_refresh: str, dynamic_config_file: Path, history_shards: int,
                  log_level: str = "warn", databases: tuple[str, str] = DATABASES
                  ) -> dict[str, object]:
    """The server's config file, as a dict."""
    return {
        "log": {"stdout": True, "level": log_level},
        "persistence": {
            "defaultStore": "default",
            "visibilityStore": "visibility",
            "numHistoryShards": history_shards,
            "datastores": {
                # Per service and datastore; the chart's 20/10 are per pod of one service.
                "default": postgres.datastore(databases[0], max_conns=10),
                "visibility": postgres.datastore(databases[1], max_conns=5),
            },
        },
        "global": {
            "membership": {"maxJoinDuration": "30s", "broadcastAddress": "127.0.0.1"},
            "metrics": {"prometheus": {"framework": "tally", "timerType": "histogram",
                                       "listenAddress": f"127.0.0.1:{ports.metrics}", "handlerPath": "/metrics"}},
            "authorization": {
                "jwtKeyProvider": {"keySourceURIs": list(jwks_uris), "refreshInterval": jwks_refresh},
                "permissionsClaimName": "permissions",
                "authorizer": "default",
                "claimMapper": "default",
            },
        },
        "services": {service: {"rpc": ports.rpc(service)} for service in SERVICES},
        "clusterMetadata": {
            "enableGlobalNamespace": False,
            "failoverVersionIncrement": 10,
            "masterClusterName": "active",
            "currentClusterName": "active",
            "clusterInformation": {"active": {
                "enabled": True, "initialFailoverVersion": 1, "rpcName": "frontend",
                "rpcAddress": f"127.0.0.1:{ports.frontend}", "httpAddress": f"127.0.0.1:{ports.frontend_http}",
            }},
        },
        "dcRedirectionPolicy": {"policy": "noop"},
        "archival": {"history": {"state": "disabled"}, "visibility": {"state": "disabled"}},
        "namespaceDefaults": {"archival": {"history": {"state": "disabled"}, "visibility": {"state": "disabled"}}},
        "dynamicConfigClient": {"filepath": str(dynamic_config_file), "pollInterval": "10s"},
    }


async def _create_databases(server_dsn: str, names: Sequence[str]) -> dict[str, bool]:
    """Create each database that does not exist; answer which already had Temporal's schema."""
    import asyncpg

    from tcloud.store import admin

    had_schema: dict[str, bool] = {}
    conn = await asyncpg.connect(server_dsn)
    try:
        for name in names:
            if await admin.create_database_if_missing(conn, name):
                had_schema[name] = False
                continue
            db = await asyncpg.connect(procs.database_dsn(server_dsn, name))
            try:
                had_schema[name] = await admin.table_exists(db, "schema_version")
            finally:
                await db.close()
    finally:
        await conn.close()
    return had_schema


def prepare_databases(server_dsn: str, *, databases: tuple[str, str] = DATABASES,
                      log: Path) -> None:
    """Create Temporal's databases if missing and set up or upgrade their schemas with ``temporal-sql-tool``."""
    tool = str(gobuild.ensure_built(gobuild.TEMPORAL_SQL_TOOL))
    target = PostgresTarget.from_dsn(server_dsn)
    had_schema = procs.run_coroutine(_create_databases(server_dsn, databases))
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        for database, schema in zip(databases, SCHEMAS.values(), strict=True):
            steps = [] if had_schema[database] else [["setup-schema", "-v", "0.0"]]
            steps.append(["update-schema", "--schema-name", schema])
            for step in steps:
                cmd = [tool, *target.sql_tool_args(database), *step]
                if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode != 0:
                    raise RuntimeError(f"temporal-sql-tool {step[0]} of {database} failed: see {log}")


def configured_process(root: Path, *, ports: ServerPorts, server_dsn: str, jwks_uris: Sequence[str],
                       jwks_refresh: str, history_shards: int, log: Path,
                       databases: tuple[str, str] = DATABASES) -> procs.Process:
    """Write the server's config and its dynamic config under ``root``; the process that runs them."""
    root.mkdir(parents=True, exist_ok=True)
    dynamic = root / "dynamicconfig.yaml"
    dynamic.write_text(json.dumps(DYNAMIC_CONFIG, indent=2) + "\n")
    config = server_config(ports=ports, postgres=PostgresTarget.from_dsn(server_dsn), jwks_uris=jwks_uris,
                           jwks_refresh=jwks_refresh, dynamic_config_file=dynamic, history_shards=history_shards,
                           databases=databases)
    path = root / "temporal-server.yaml"
    path.write_text("# Generated by tcloud (launcher/temporal_server.py); edits are overwritten.\n"
                    + json.dumps(config, indent=2) + "\n")
    return server_process(path, log=log)


def server_process(config_file: Path, *, log: Path) -> procs.Process:
    binary = str(gobuild.ensure_built(gobuild.TEMPORAL_SERVER))
    argv = [binary, "--config-file", str(config_file), "start"]
    for service in SERVICES:
        argv += ["--service", service]
    return procs.Process("temporal", argv, log)


def server_ready(ports: ServerPorts) -> bool:
    """Both doors answer as healthy (their ports open seconds before they serve): the public frontend's HTTP API
    answers GetSystemInfo, which needs no token, and the internal frontend passes the gRPC health check."""
    return (procs.port_open(ports.internal_frontend) and procs.http_ok(f"http://127.0.0.1:{ports.metrics}/metrics")
            and procs.http_ok(f"http://127.0.0.1:{ports.frontend_http}/api/v1/system-info")
            and _healthy(f"127.0.0.1:{ports.internal_frontend}"))


def _healthy(address: str) -> bool:
    try:
        result = subprocess.run([procs.binary("temporal"), "operator", "cluster", "health", "--address", address],
                                capture_output=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


# --- The operators' Temporal UI ---------------------------------------------------------------------------

def ui_config(*, grpc_address: str, port: int, default_namespace: str) -> dict[str, object]:
    """The UI server's config: the operators' UI on loopback, talking to the internal frontend (the base of the
    customers' UI too, :func:`customer_ui_config`)."""
    return {
        "temporalGrpcAddress": grpc_address,
        "host": "127.0.0.1",
        "port": port,
        "enableUi": True,
        "defaultNamespace": default_namespace,
        "showTemporalSystemNamespace": False,
        "hideLogs": True,
        "cors": {"cookieInsecure": True, "allowOrigins": [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]},
        "auth": {"enabled": False},
        "notifyOnNewVersion": False,
        "disableNewsFetch": True,
    }


def ui_process(root: Path, *, grpc_address: str, port: int, default_namespace: str, log: Path) -> procs.Process:
    config = ui_config(grpc_address=grpc_address, port=port, default_namespace=default_namespace)
    return _ui_server("temporal-ui", root, config, log)


def _ui_server(name: str, root: Path, config: dict[str, object], log: Path) -> procs.Process:
    """The UI server reading ``config`` (written under ``root``, mode 0600: it may hold a client secret)."""
    binary = str(gobuild.ensure_built(gobuild.TEMPORAL_UI_SERVER))
    config_dir = root / "ui-config"
    config_dir.mkdir(parents=True, exist_ok=True)
    base = config_dir / "base.yaml"
    base.touch(mode=0o600)
    base.chmod(0o600)
    base.write_text(json.dumps(config, indent=2) + "\n")
    (config_dir / "tcloud.yaml").write_text("{}\n")
    argv = [binary, "--root", str(root), "--config", "ui-config", "--env", "tcloud", "start"]
    return procs.Process(name, argv, log)


# --- The customers' Temporal UI ---------------------------------------------------------------------------

# The OIDC scopes the customers' UI asks for; the provider (api/oidc.py) serves exactly these.
CUSTOMER_UI_SCOPES = ("openid", "profile", "email")
# The customers' UI sends a customer who is not signed in straight to the provider's sign-in page; its start page
# probes this namespace, which no tenant may read, and so shows the namespace picker (the customer's own).
CUSTOMER_UI_DEFAULT_NAMESPACE = "default"


def customer_ui_config(*, gateway_address: str, port: int, ui_url: str, issuer: str, client_id: str,
                       client_secret: str, callback_url: str, session_seconds: int) -> dict[str, object]:
    """The customers' UI server: OIDC login against the control plane (the provider at ``issuer``), Temporal
    reached through the UI gateway (api/ui_gateway.py) in front of the public frontend, so each call carries the
    signed-in customer's token and the server decides; a link back to the portal in its top bar."""
    config = ui_config(grpc_address=gateway_address, port=port, default_namespace=CUSTOMER_UI_DEFAULT_NAMESPACE)
    ui_origin = _origin(ui_url)
    portal_origin = _origin(issuer)
    config["cors"] = {"cookieInsecure": not ui_url.startswith("https://"), "allowOrigins": [ui_origin]}
    config["auth"] = {
        "enabled": True,
        "redirectToProvider": True,
        # A sign-in lasts as long as the provider's session, whatever the refresh tokens say.
        "maxSessionDuration": f"{session_seconds}s",
        "providers": [{
            "label": "tcloud", "type": "oidc", "providerUrl": issuer, "clientId": client_id,
            "clientSecret": client_secret, "callbackUrl": callback_url, "scopes": list(CUSTOMER_UI_SCOPES),
            "refreshTokenDuration": f"{session_seconds}s",
        }],
    }
    config["customUi"] = {"enabled": True, "iframeExtensions": [{
        "id": "tcloud-portal", "title": "tcloud portal", "slot": "app.top-nav.actions.before",
        "src": f"{portal_origin}/ui-link", "allowedOrigin": portal_origin,
        # Its link opens the portal in a new tab, which inherits these (the portal needs scripts, forms, dialogs).
        "sandbox": {"allowPopups": True, "allowSameOrigin": True, "allowForms": True, "allowModals": True},
    }]}
    return config


def customer_ui_process(root: Path, config: dict[str, object], *, log: Path) -> procs.Process:
    return _ui_server("temporal-ui-customers", root, config, log)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def ui_ready(port: int) -> bool:
    return procs.http_ok(f"http://127.0.0.1:{port}/healthz")
