"""Ledger rows into Cloud Ops ``GetUsage`` summaries (``temporalio.api.cloud.usage.v1``), per day or per hour.

Two renderings of the same answer: the messages (:func:`summaries`, :func:`to_json`), which define it and serve the
live estimate, and the JSON text written directly (:func:`record_groups_json`, :func:`summary_parts`,
:func:`response_json`), which ``GET /cloud/usage`` serves: protobuf's JSON mapping costs about 15 µs a record, and
an hour of 100 namespaces has 300. :class:`RenderedBuckets` keeps what was rendered of each day or hour.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
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


# The text of each record up to its value, per ledger metric, and the factor from the ledger's unit.
_RECORD_TEXT = {
    metric: (f'{{"type": "{RecordType.Name(record_type)}", "unit": "{RecordUnit.Name(unit)}", "value": ',  # type: ignore[arg-type]
             factor)
    for metric, (record_type, unit, factor) in _RECORDS.items()}
_GROUP_BY = f'{{"groupBys": [{{"key": "{GroupByKey.Name(GroupByKey.GROUP_BY_KEY_NAMESPACE)}", "value": '


def record_groups_json(quantities: Mapping[str, Mapping[str, Decimal]]) -> bytes:
    """``record_groups(quantities)`` as protobuf's JSON mapping renders it (the same values, written directly)."""
    groups = []
    for namespace in sorted(quantities):
        per_metric = quantities[namespace]
        records = ", ".join(f"{prefix}{float(per_metric[metric] * factor)!r}}}"
                            for metric, (prefix, factor) in _RECORD_TEXT.items() if metric in per_metric)
        groups.append(f"{_GROUP_BY}{json.dumps(namespace)}}}], \"records\": [{records}]}}")
    return ("[" + ", ".join(groups) + "]").encode()


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def summary_parts(start: datetime, end: datetime, record_groups: bytes, incomplete: bool) -> tuple[bytes, bytes, bytes]:
    """One ``Summary`` in protobuf's JSON mapping, as three pieces around its record groups, already rendered
    (:func:`record_groups_json`): joined once with the whole answer (:func:`response_json`), not copied per summary.
    ``start`` and ``end`` are whole seconds."""
    return (f'{{"startTime": "{_rfc3339(start)}", "endTime": "{_rfc3339(end)}", "recordGroups": '.encode(),
            record_groups, b', "incomplete": true}' if incomplete else b', "incomplete": false}')


def response_json(summaries: Iterable[tuple[bytes, ...]], extra: Mapping[str, Any], next_page_token: str = "") -> bytes:
    """The ``GetUsageResponse`` body: the summaries (each in pieces, :func:`summary_parts`), ``nextPageToken``, then
    ``extra``'s keys."""
    parts = [b'{"summaries": [']
    for i, summary in enumerate(summaries):
        if i:
            parts.append(b", ")
        parts.extend(summary)
    tail = "".join(f", {json.dumps(key)}: {json.dumps(value)}" for key, value in extra.items())
    parts += [b'], "nextPageToken": ', json.dumps(next_page_token).encode(), tail.encode(), b"}"]
    return b"".join(parts)


def _token(bucket: datetime, step: timedelta) -> str:
    return bucket.date().isoformat() if step == STEPS["day"] else _rfc3339(bucket)


def page(start: datetime, end: datetime, step: timedelta, size: int, token: str) -> tuple[list[datetime], str]:
    """The buckets of one page of ``[start, end)`` (``size`` of them from the one ``token`` names, or from
    ``start``) and the next page's token ('' on the last page): the first bucket of the next page, a date for days,
    an RFC 3339 time for hours.

    Raises:
        ValueError: a token that is not one this listing gives for this range.
    """
    first = start
    if token:
        try:
            if step == STEPS["day"]:
                day = date.fromisoformat(token)
                first = datetime(day.year, day.month, day.day, tzinfo=UTC)
            else:
                first = datetime.fromisoformat(token.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError as err:
            raise ValueError("pageToken is not a token this listing gave") from err
        if not start <= first < end or (first - start) % step or _token(first, step) != token:
            raise ValueError("pageToken is not a token this listing gave (for this time range)")
    buckets = [first + i * step for i in range(min(size, (end - first) // step))]
    after = buckets[-1] + step
    return buckets, _token(after, step) if after < end else ""


class RenderedBuckets:
    """The record groups rendered of each ``(account, granularity, bucket start)``, each with the version of its
    day's ledger rows it was rendered from (``tcloud.store.usage.day_versions``): valid while that version stands.
    Least recently used first out, past ``max_bytes``."""

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._items: OrderedDict[tuple[str, str, datetime], tuple[int | None, bytes]] = OrderedDict()

    def get(self, key: tuple[str, str, datetime], version: int | None) -> bytes | None:
        """The text kept for ``key`` if it was rendered at ``version``, else None."""
        item = self._items.get(key)
        if item is None or item[0] != version:
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: tuple[str, str, datetime], version: int | None, text: bytes) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self.size -= len(old[1])
        self._items[key] = (version, text)
        self.size += len(text)
        while self.size > self.max_bytes and self._items:
            _, (_, dropped) = self._items.popitem(last=False)
            self.size -= len(dropped)
