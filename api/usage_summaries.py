"""Ledger rows into Cloud Ops ``GetUsage`` summaries (``temporalio.api.cloud.usage.v1``), per day or per hour."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.cloud.cloudservice.v1 import GetUsageResponse
from temporalio.api.cloud.usage.v1 import (
    GroupBy,
    GroupByKey,
    Record,
    RecordGroup,
    RecordType,
    RecordUnit,
    Summary,
)

from tcloud.domain.metering import COLLECTORS, HOUR, hours_between

# Ledger metric -> (Cloud record type, unit, factor from the ledger's unit). Storage is kept in byte-hours.
_RECORDS: dict[str, tuple[int, int, int]] = {
    "actions": (RecordType.RECORD_TYPE_ACTIONS, RecordUnit.RECORD_UNIT_NUMBER, 1),
    "active_storage": (RecordType.RECORD_TYPE_ACTIVE_STORAGE, RecordUnit.RECORD_UNIT_BYTE_SECONDS, 3600),
    "retained_storage": (RecordType.RECORD_TYPE_RETAINED_STORAGE, RecordUnit.RECORD_UNIT_BYTE_SECONDS, 3600),
}
STEPS = {"day": timedelta(days=1), "hour": HOUR}


@dataclass(frozen=True)
class LedgerEntry:
    namespace: str
    hour: datetime
    metric: str
    quantity: Decimal


def _timestamp(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def record_groups(quantities: Mapping[str, Mapping[str, Decimal]]) -> list[RecordGroup]:
    """One group per namespace (sorted), one record per metric present, in Cloud's units."""
    groups = []
    for namespace in sorted(quantities):
        records = []
        for metric, (record_type, unit, factor) in _RECORDS.items():
            if metric in quantities[namespace]:
                records.append(Record(type=record_type, unit=unit,  # type: ignore[arg-type]
                                      value=float(quantities[namespace][metric] * factor)))
        groups.append(RecordGroup(group_bys=[GroupBy(key=GroupByKey.GROUP_BY_KEY_NAMESPACE, value=namespace)],
                                  records=records))
    return groups


def summaries(entries: Iterable[LedgerEntry], collected: Mapping[str, set[datetime]], start: datetime,
              end: datetime, step: timedelta) -> list[Summary]:
    """A summary per ``step`` in ``[start, end)``; ``incomplete`` unless every collector has each of its hours."""
    buckets: dict[datetime, dict[str, dict[str, Decimal]]] = {}
    for e in entries:
        bucket = start + ((e.hour - start) // step) * step
        per_metric = buckets.setdefault(bucket, {}).setdefault(e.namespace, {})
        per_metric[e.metric] = per_metric.get(e.metric, Decimal(0)) + e.quantity
    out = []
    moment = start
    while moment < end:
        hours = hours_between(moment, moment + step)
        complete = all(h in collected.get(c, set()) for c in COLLECTORS for h in hours)
        out.append(Summary(start_time=_timestamp(moment), end_time=_timestamp(moment + step),
                           record_groups=record_groups(buckets.get(moment, {})), incomplete=not complete))
        moment += step
    return out


def to_json(items: list[Summary]) -> dict[str, Any]:
    """The ``GetUsageResponse`` in protobuf's JSON mapping (as the other Cloud Ops routes), zero values kept."""
    return MessageToDict(GetUsageResponse(summaries=items), always_print_fields_with_no_presence=True)
