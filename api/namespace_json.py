"""Namespace rows as Cloud Ops ``Namespace`` messages, and the checks on a requested ``NamespaceSpec``.

Two renderings of a namespace: the message (:func:`namespace_message`), which defines it and the gRPC door serves,
and its JSON text written directly from the rows (:func:`namespaces_json`), which ``GET /cloud/namespaces`` serves:
building 100 messages and converting them with protobuf's JSON mapping cost about 3.5 ms of CPU a page.
``tests/test_namespace_json.py`` holds the two equal: byte for byte, but for the order of the keys of map fields
(tags, search attributes), which protobuf takes from its hash table and this text sorts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

import asyncpg
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.cloud.cloudservice.v1 import GetNamespacesResponse
from temporalio.api.cloud.namespace.v1 import ApiKeyAuthSpec, Endpoints, Namespace, NamespaceSpec
from temporalio.api.cloud.resource.v1 import ResourceState

from api import namespace_attributes
from api.errors import ApiError
from tcloud.domain import search_attributes
from tcloud.domain.namespace_names import name_problem
from tcloud.settings import Settings

RETENTION_MIN, RETENTION_MAX, RETENTION_DEFAULT = 1, 90, 30
# The NamespaceSpec fields this platform implements; any other field set in a request is refused. `api_key_auth`
# is always on (tenants reach their namespaces with tokens from their API keys): a spec may say so, not turn it off.
SUPPORTED_SPEC_FIELDS = frozenset({"name", "retention_days", "regions", "api_key_auth", "custom_search_attributes",
                                   "search_attributes"})

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
    namespace_attributes.fill(ns, row)
    return ns


# --- The listing's JSON, written directly ----------------------------------------------------------------------

_STATE_NAMES = {state: ResourceState.Name(value) for state, value in _STATE.items()}


def _rfc3339(moment: datetime) -> str:
    """``moment`` as protobuf's JSON mapping writes a Timestamp: UTC, and 0, 3 or 6 decimals (a datetime has no
    nanoseconds)."""
    if moment.tzinfo is not UTC and moment.tzinfo is not None:  # asyncpg's timestamptz are in UTC already
        moment = moment.astimezone(UTC)
    micros = moment.microsecond
    whole = moment.isoformat(timespec="seconds")[:19]  # the year has 4 digits: no offset, no decimals
    if not micros:
        return whole + "Z"
    if micros % 1000 == 0:
        return f"{whole}.{micros // 1000:03d}Z"
    return f"{whole}.{micros:06d}Z"


@lru_cache(maxsize=8)
def _settings_text(region: str, grpc_address: str, ui_url: str) -> tuple[str, str, str]:
    """What every namespace's JSON takes from the settings: the spec's regions (text after ``"regions": ``), the
    web address up to the namespace, and the endpoints' tail from after the web address (an empty gRPC address
    is left out, as the mapping leaves out every empty string)."""
    grpc = f', "grpcAddress": {_quote(grpc_address)}' if grpc_address else ""
    return f"[{_quote(region)}]", f"{ui_url.rstrip('/')}/namespaces/", grpc + "}"


# A custom search attribute's type as ``spec.searchAttributes`` names it (``KeywordList``: ``..._KEYWORD_LIST``).
_SEARCH_ATTRIBUTE_TYPE_NAMES = {
    kind: NamespaceSpec.SearchAttributeType.Name(NamespaceSpec.SearchAttributeType.Value(
        "SEARCH_ATTRIBUTE_TYPE_" + re.sub(r"(?<!^)(?=[A-Z])", "_", kind).upper()))
    for kind in search_attributes.TYPES}


def _map_of(column: Any) -> dict[str, str]:
    """A jsonb map column's dict (asyncpg gives its text; most are empty)."""
    return {} if column == "{}" else namespace_attributes.json_map(column)


def _map_json(items: Mapping[str, str]) -> str:
    """A map field's JSON object, keys in order (protobuf's own order is its hash table's: only the pairs match)."""
    return "{" + ", ".join(f"{_quote(key)}: {_quote(items[key])}" for key in sorted(items)) + "}"


def _namespace_json(row: Mapping[str, Any], regions: str, web_prefix: str, endpoints_tail: str) -> str:
    """One row as ``MessageToDict(namespace_message(row))`` written by ``json.dumps``."""
    ns = row["namespace"]
    retention = row["retention_days"]
    operation = row["async_operation_id"]
    attributes = _map_of(row["search_attributes"])
    tags = _map_of(row["tags"])
    return "".join((
        '{"namespace": ', _quote(ns),
        ', "resourceVersion": ', _quote(str(row["resource_version"])),
        ', "spec": {"name": ', _quote(row["name"]), ', "regions": ', regions,
        f', "retentionDays": {retention}' if retention else "",
        f', "customSearchAttributes": {_map_json(attributes)}' if attributes else "",
        ', "apiKeyAuth": {"enabled": true}',
        (', "searchAttributes": ' + _map_json({name: _SEARCH_ATTRIBUTE_TYPE_NAMES[kind]
                                               for name, kind in attributes.items()})) if attributes else "",
        '}, "stateDeprecated": ', _quote(row["state"]),
        f', "asyncOperationId": {_quote(operation)}' if operation else "",
        ', "endpoints": {"webAddress": ', _quote(f"{web_prefix}{ns}/workflows"), endpoints_tail,
        ', "createdTime": "', _rfc3339(row["created_at"]),
        '", "lastModifiedTime": "', _rfc3339(row["updated_at"]),
        '", "state": "', _STATE_NAMES[row["state"]], '"',
        f', "tags": {_map_json(tags)}' if tags else "",
        "}",
    ))


# The ``namespaces`` columns known to :func:`_namespace_json` (rendered, or not part of the message). A row with
# another column, which :func:`namespace_message` may render, goes through the message until this text renders it
# too (``tests/test_namespace_json.py`` fails on a stored row with another column, so that is not forgotten).
RENDERED_COLUMNS = frozenset({"namespace", "name", "account_id", "state", "retention_days", "failure_reason",
                              "created_at", "updated_at", "deleted_at", "resource_version", "async_operation_id",
                              "tags", "search_attributes"})


def namespaces_json(rows: Sequence[Mapping[str, Any]], next_page_token: str, settings: Settings) -> bytes:
    """The ``GetNamespacesResponse`` of these rows as protobuf's JSON mapping renders it (``message_response``):
    the same names, order, values and left-out empty fields (map fields' keys sorted), written directly."""
    if rows and not RENDERED_COLUMNS.issuperset(rows[0].keys()):
        answer = GetNamespacesResponse(namespaces=[namespace_message(r, settings) for r in rows],
                                       next_page_token=next_page_token)
        return json.dumps(MessageToDict(answer)).encode()
    regions, web_prefix, endpoints_tail = _settings_text(
        settings.cloud_region, settings.temporal_public_address, settings.customer_ui_url)
    fields = []
    if rows:
        fields.append('"namespaces": [' + ", ".join(
            _namespace_json(row, regions, web_prefix, endpoints_tail) for row in rows) + "]")
    if next_page_token:
        fields.append(f'"nextPageToken": {_quote(next_page_token)}')
    return ("{" + ", ".join(fields) + "}").encode()
