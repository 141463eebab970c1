"""Pure metering rules: exact counter deltas from raw samples, billable actions, label mapping, storage.

Nothing here does I/O; the activities in ``activities/usage.py`` feed it what Prometheus and Temporal answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from itertools import pairwise

from tcloud.domain.states import Collector

HOUR = timedelta(hours=1)
GB = 10**9  # bytes: storage is priced per decimal gigabyte-hour

COLLECTORS: tuple[Collector, ...] = ("actions", "storage")

# A series is identified by all its labels but the metric name.
SeriesKey = frozenset[tuple[str, str]]
# (unix seconds, counter value) as Prometheus returns them.
Sample = tuple[float, int]


class MeteringError(ValueError):
    """Input the metering rules cannot turn into a trustworthy figure."""


def floor_hour(moment: datetime) -> datetime:
    """The UTC hour containing ``moment`` (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hour_id(hour: datetime) -> str:
    """The readable id of an hour, as used in workflow ids: ``2026-11-25T13:00Z``."""
    return floor_hour(hour).strftime("%Y-%m-%dT%H:%MZ")


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """Every hour ``h`` with ``start <= h < end`` (both floored to the hour)."""
    out, h, stop = [], floor_hour(start), floor_hour(end)
    while h < stop:
        out.append(h)
        h += HOUR
    return out


def sanitize_label_value(namespace: str) -> str:
    """How Temporal's Prometheus reporter spells a namespace in a label value (``-`` and ``.`` become ``_``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", namespace)


def namespace_label_map(namespaces: Iterable[str]) -> dict[str, str]:
    """Map each sanitized label value back to the namespace it came from.

    Raises:
        MeteringError: if two namespaces sanitize to the same label value, since their usage could not be told
            apart (account ids have no ``-`` precisely so that provisioning can prevent this).
    """
    out: dict[str, str] = {}
    for ns in namespaces:
        label = sanitize_label_value(ns)
        if label in out and out[label] != ns:
            raise MeteringError(f"namespaces {out[label]!r} and {ns!r} share the metrics label {label!r}")
        out[label] = ns
    return out


def is_billable_action_type(action_type: str) -> bool:
    """Temporal Cloud's rule for the server's ``action`` counter.

    Every action type the server emits is one billable action, except the per-marker ``command_RecordMarker*``
    series: the server also emits ``command_BatchMarkers`` once per workflow task completion that carries markers
    (local activities, side effects, version markers), and Cloud bills that batch as one action. A child workflow
    emits both ``command_StartChildWorkflowExecution`` and ``..._Extra`` because Cloud bills it as two.
    """
    return bool(action_type) and not action_type.startswith("command_RecordMarker")


def parse_counter_value(raw: str) -> int:
    """An exact integer from a Prometheus sample value (counters of events are whole numbers).

    Raises:
        MeteringError: for a value that is not a finite whole number.
    """
    if raw.isascii() and raw.isdigit():  # how Prometheus sends a whole number: read it without Decimal
        return int(raw)
    try:
        value = Decimal(raw)
    except InvalidOperation as err:
        raise MeteringError(f"counter value {raw!r} is not a number") from err
    if not value.is_finite() or value != value.to_integral_value() or value < 0:
        raise MeteringError(f"counter value {raw!r} is not a whole non-negative number")
    return int(value)


def series_key(labels: Mapping[str, str]) -> SeriesKey:
    """The identity of a series: its labels without ``__name__``."""
    return frozenset((k, v) for k, v in labels.items() if k != "__name__")


def counter_delta(baseline: int | None, samples: Iterable[Sample], restarts: Sequence[float] = ()) -> int:
    """The exact number of events a counter observed over ``samples``.

    Args:
        baseline: the series' last value before the window, or None if the series had no earlier sample (a new
            series starts from zero, so its first value counts in full).
        samples: the raw samples inside the window, in time order.
        restarts: scrape times after which the process exposing the series is known to have restarted (the
            last sample before a drop in any series of the same scrape target): a pair of samples straddling one
            is a reset even if the value did not drop.

    Returns:
        The sum of the increments between consecutive samples. A drop is a counter reset (process restart), and so
        is a restart of the target between the two samples: either way the new value is what the new process
        counted since it started. Never negative.
    """
    total = 0
    prev = baseline
    prev_ts = float("-inf")
    for ts, value in samples:
        restarted = any(prev_ts <= r < ts for r in restarts)
        if prev is None or value < prev or restarted:
            total += value
        else:
            total += value - prev
        prev, prev_ts = value, ts
    return total


@dataclass(frozen=True)
class WindowSeries:
    """One series of the ``action`` counter as seen in one window."""

    labels: Mapping[str, str]
    samples: list[Sample]


TARGET_LABELS = ("job", "instance")


def target_of(labels: Mapping[str, str]) -> tuple[str, ...]:
    """The scrape target (one server process) a series comes from."""
    return tuple(labels.get(name, "") for name in TARGET_LABELS)


def target_restarts(window: Iterable[WindowSeries]) -> dict[tuple[str, ...], list[float]]:
    """For each scrape target, the scrape times after which it restarted within the window.

    Counters never drop within one process, and a series, once created, is in every scrape of its process. So
    when a series drops between two samples at ``p`` and ``r``, the scrape at ``p`` was the old process's and every
    later scrape the new one's: any series of the same target with samples on both sides of ``p`` was reset, even
    one that climbed back above its old value before the first scrape. Only drops between two samples inside the
    window count: a drop from the baseline (whose time is not known) resets only its own series.
    """
    out: dict[tuple[str, ...], set[float]] = {}
    for series in window:
        ordered = sorted(series.samples)
        for (p, before), (_, after) in pairwise(ordered):
            if after < before:
                out.setdefault(target_of(series.labels), set()).add(p)
    return {target: sorted(times) for target, times in out.items()}


def action_deltas(
    window: Iterable[WindowSeries], baselines: Mapping[SeriesKey, int], *, namespace_label: str
) -> dict[str, dict[str, int]]:
    """Billable action counts per sanitized namespace label and action type over one window.

    Args:
        window: every series with its raw samples inside the window.
        baselines: each series' last value before the window; a series absent here is new.
        namespace_label: the label carrying the namespace.

    Returns:
        ``{label value: {action_type: count}}``, only for billable types with a positive count.
    """
    return billable_by_namespace(series_deltas(window, baselines), namespace_label=namespace_label)


def series_deltas(window: Iterable[WindowSeries],
                  baselines: Mapping[SeriesKey, int]) -> list[tuple[Mapping[str, str], int]]:
    """Each series' labels and :func:`counter_delta` over the window, with its target's restarts."""
    window = list(window)
    restarts = target_restarts(window)
    return [(series.labels, counter_delta(baselines.get(series_key(series.labels)), sorted(series.samples),
                                          restarts.get(target_of(series.labels), ())))
            for series in window]


def billable_by_namespace(deltas: Iterable[tuple[Mapping[str, str], int]], *,
                          namespace_label: str) -> dict[str, dict[str, int]]:
    """``{label value: {action_type: count}}`` from each series' labels and count: billable types, positive counts."""
    out: dict[str, dict[str, int]] = {}
    for labels, delta in deltas:
        action_type = labels.get("action_type", "")
        ns_label = labels.get(namespace_label)
        if ns_label is None or not is_billable_action_type(action_type) or not delta:
            continue
        per_type = out.setdefault(ns_label, {})
        per_type[action_type] = per_type.get(action_type, 0) + delta
    return out


@dataclass(frozen=True)
class SeriesSummary:
    """One series over a window as Prometheus' functions describe it, without its samples.

    ``last``: its last value in the window (``last_over_time``); ``drops``: the decreases between two of its samples
    inside the window (``resets``); ``dropped_at_start``: its first sample in the window is below its last value
    before the window (without drops inside the window the first sample is the lowest, ``min_over_time``).
    """

    labels: Mapping[str, str]
    last: int
    drops: int = 0
    dropped_at_start: bool = False


def summary_delta(summary: SeriesSummary, baseline: int | None) -> int:
    """:func:`counter_delta` of a series from its summary, when its scrape target did not restart in the window.

    Without a restart of its process inside the window the series never drops there, so its increments telescope:
    the last value less the baseline; or all of the last value when the series is new (no baseline) or dropped
    from its baseline (a reset before its first sample).

    Raises:
        MeteringError: for a series that drops inside the window: its target restarted, so its count needs its
            samples and the restart times (:func:`action_deltas`).
    """
    if summary.drops:
        raise MeteringError(f"series {dict(summary.labels)} drops inside the window: count it from its samples")
    if baseline is None or summary.dropped_at_start:
        return summary.last
    return summary.last - baseline


def restarted_targets(summaries: Iterable[SeriesSummary]) -> set[tuple[str, ...]]:
    """The scrape targets with a series that drops inside the window: they restarted there (see
    :func:`target_restarts`), and each of their series is counted from its samples."""
    return {target_of(s.labels) for s in summaries if s.drops}


def overlap_seconds(start: datetime, end: datetime | None, window_start: datetime, window_end: datetime) -> float:
    """Seconds of ``[start, end)`` inside ``[window_start, window_end)``; ``end`` None means still going."""
    lo = max(start, window_start)
    hi = window_end if end is None else min(end, window_end)
    return max(0.0, (hi - lo).total_seconds())


@dataclass(frozen=True)
class ExecutionStorage:
    """What visibility says about one workflow execution's storage."""

    start_time: datetime
    close_time: datetime | None
    history_size_bytes: int


def storage_byte_hours(executions: Iterable[ExecutionStorage], hour: datetime,
                       retention: timedelta) -> tuple[int, int]:
    """Active and retained storage of one namespace in one hour, in whole byte-hours.

    An execution's history is active storage while it is open and retained storage from its close until the
    namespace's retention removes it; each counts for the part of the hour it spent in that state.

    Returns:
        ``(active, retained)`` byte-hours, each rounded once (half up) after summing exactly.
    """
    end = hour + HOUR
    active = Decimal(0)
    retained = Decimal(0)
    for ex in executions:
        size = Decimal(ex.history_size_bytes)
        active += size * Decimal(str(overlap_seconds(ex.start_time, ex.close_time, hour, end)))
        if ex.close_time is not None:
            retained += size * Decimal(str(overlap_seconds(ex.close_time, ex.close_time + retention, hour, end)))
    seconds = Decimal(3600)
    return (int((active / seconds).to_integral_value(ROUND_HALF_UP)),
            int((retained / seconds).to_integral_value(ROUND_HALF_UP)))
