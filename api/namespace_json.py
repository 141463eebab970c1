"""Namespace rows as Cloud Ops ``Namespace`` messages, and the checks on a requested ``NamespaceSpec``."""

from __future__ import annotations

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.cloud.namespace.v1 import ApiKeyAuthSpec, Endpoints, Namespace, NamespaceSpec
from temporalio.api.cloud.resource.v1 import ResourceState

from api.errors import ApiError
from tcloud.domain.namespace_names import name_problem
from tcloud.settings import Settings

RETENTION_MIN, RETENTION_MAX, RETENTION_DEFAULT = 1, 90, 30
# The NamespaceSpec fields this platform implements; any other field set in a request is refused. `api_key_auth`
# is always on (tenants reach their namespaces with tokens from their API keys): a spec may say so, not turn it off.
SUPPORTED_SPEC_FIELDS = frozenset({"name", "retention_days", "regions", "api_key_auth"})

_STATE = {
    "provisioning": ResourceState.RESOURCE_STATE_ACTIVATING,
    "active": ResourceState.RESOURCE_STATE_ACTIVE,
    "updating": ResourceState.RESOURCE_STATE_UPDATING,
    "deleting": ResourceState.RESOURCE_STATE_DELETING,
    "deleted": ResourceState.RESOURCE_STATE_DELETED,
    "failed": ResourceState.RESOURCE_STATE_ACTIVATION_FAILED,
}


def checked_spec(spec: NamespaceSpec, *, region: str, name: str | None = None,
                 retention_default: int = RETENTION_DEFAULT) -> tuple[str, int]:
    """The name and retention of a requested spec, or a 400 saying what is wrong.

    Args:
        spec: the spec from the request.
        region: this platform's one region (``spec.regions`` may name it, nothing else).
        name: for an update, the namespace's name (the spec may repeat it, not change it).
        retention_default: the retention when the spec leaves it out (an update keeps the current one).
    """
    unsupported = sorted(f.json_name for f, _ in spec.ListFields() if f.name not in SUPPORTED_SPEC_FIELDS)
    if unsupported:
        raise ApiError(400, f"spec fields not supported on this platform: {', '.join(unsupported)}")
    if spec.HasField("api_key_auth") and not spec.api_key_auth.enabled:
        raise ApiError(400, "spec.apiKeyAuth cannot be disabled: API keys (and their tokens) are how this "
                            "platform's namespaces are reached")
    if any(r != region for r in spec.regions) or len(spec.regions) > 1:
        raise ApiError(400, f"spec.regions: this platform has one region, {region!r}")
    if name is not None:
        if spec.name and spec.name != name:
            raise ApiError(400, "spec.name cannot change: a namespace keeps its name")
    else:
        problem = name_problem(spec.name) if spec.name else "spec.name is required"
        if problem:
            raise ApiError(400, problem)
    retention = spec.retention_days or retention_default
    if not RETENTION_MIN <= retention <= RETENTION_MAX:
        raise ApiError(400, f"spec.retentionDays must be between {RETENTION_MIN} and {RETENTION_MAX}")
    return name or spec.name, retention


def _ts(value: object) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)  # type: ignore[arg-type]
    return ts


def namespace_message(row: asyncpg.Record, settings: Settings) -> Namespace:
    """The Cloud Ops view of a ``namespaces`` row."""
    ns = Namespace(
        namespace=row["namespace"],
        resource_version=str(row["resource_version"]),
        spec=NamespaceSpec(name=row["name"], retention_days=row["retention_days"], regions=[settings.cloud_region],
                           api_key_auth=ApiKeyAuthSpec(enabled=True)),
        state=_STATE[row["state"]],
        state_deprecated=row["state"],
        async_operation_id=row["async_operation_id"] or "",
        endpoints=Endpoints(grpc_address=settings.temporal_public_address,
                            web_address=f"{settings.customer_ui_url.rstrip('/')}/namespaces/{row['namespace']}/workflows"),
    )
    ns.created_time.CopyFrom(_ts(row["created_at"]))
    ns.last_modified_time.CopyFrom(_ts(row["updated_at"]))
    return ns
