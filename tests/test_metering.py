"""Unit tests of the pure metering rules (no I/O): counter deltas, billable actions, labels, storage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tcloud.domain import metering
from tcloud.domain.metering import ExecutionStorage, WindowSeries

H = datetime(2026, 11, 25, 10, tzinfo=UTC)


def test_delta_from_baseline_counts_increments_only() -> None:
    assert metering.counter_delta(10, [(1, 10), (2, 13), (3, 13), (4, 20)]) == 10


def test_new_series_counts_from_zero() -> None:
    assert metering.counter_delta(None, [(1, 4), (2, 6)]) == 6


def test_reset_counts_what_the_restarted_process_saw() -> None:
    # 100 -> 105 (5), restart, 3 (3 since restart), 7 (4): 12, never negative.
    assert metering.counter_delta(100, [(1, 105), (2, 3), (3, 7)]) == 12


def test_no_samples_in_window_is_zero() -> None:
    assert metering.counter_delta(50, []) == 0


@given(st.lists(st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=8), min_size=1,
                max_size=5))
def test_splitting_a_run_of_processes_across_windows_loses_and_doubles_nothing(runs: list[list[int]]) -> None:
    """Each inner list is the increments seen by one server process; the counter restarts from 0 between them."""
    samples: list[tuple[float, int]] = []
    t = 0
    for previous, increments in zip([None, *runs], runs, strict=False):
        # A restart is visible only as a drop: the new process's first value below the old one's last.
        assume(previous is None or increments[0] < sum(previous))
        value = 0
        for inc in increments:
            value += inc
            t += 1
            samples.append((t, value))
    truth = sum(sum(r) for r in runs)
    whole = metering.counter_delta(None, samples)
    assert whole == truth
    # Any split point: window 1 + window 2 (baseline = last value of window 1) gives the same total.
    for cut in range(len(samples) + 1):
        first, second = samples[:cut], samples[cut:]
        baseline = first[-1][1] if first else None
        assert metering.counter_delta(None, first) + metering.counter_delta(baseline, second) == truth


def test_billable_types_follow_cloud_rules() -> None:
    assert metering.is_billable_action_type("command_BatchMarkers")
    assert not metering.is_billable_action_type("command_RecordMarker")
    assert not metering.is_billable_action_type("command_RecordMarker_LocalActivity")
    for kind in ("grpc_StartWorkflowExecution", "command_ScheduleActivityTask", "command_StartTimer",
                 "grpc_SignalWorkflowExecution", "command_StartChildWorkflowExecution",
                 "command_StartChildWorkflowExecution_Extra", "activity_retry", "grpc_RecordActivityTaskHeartbeat"):
        assert metering.is_billable_action_type(kind), kind
    assert not metering.is_billable_action_type("")


def test_action_deltas_group_by_namespace_label_and_skip_record_marker() -> None:
    def series(ns: str, kind: str, svc: str, samples: list[tuple[float, int]]) -> WindowSeries:
        return WindowSeries({"__name__": "action", "namespace": ns, "action_type": kind, "service_name": svc},
                            samples)

    window = [
        series("orders_acme", "grpc_StartWorkflowExecution", "frontend", [(1, 5), (2, 9)]),
        series("orders_acme", "command_RecordMarker", "frontend", [(1, 1), (2, 50)]),
        series("orders_acme", "command_BatchMarkers", "frontend", [(1, 2)]),
        series("tcloud_system", "command_StartTimer", "frontend", [(1, 0)]),
    ]
    baselines = {metering.series_key(window[0].labels): 3}
    got = metering.action_deltas(window, baselines, namespace_label="namespace")
    assert got == {"orders_acme": {"grpc_StartWorkflowExecution": 6, "command_BatchMarkers": 2}}


def test_label_map_recovers_namespaces_and_refuses_collisions() -> None:
    assert metering.sanitize_label_value("tcloud-system") == "tcloud_system"
    assert metering.namespace_label_map(["orders.acme", "tcloud-system"]) == {
        "orders_acme": "orders.acme", "tcloud_system": "tcloud-system"}
    with pytest.raises(metering.MeteringError, match="share the metrics label"):
        metering.namespace_label_map(["a-b.acme", "a.b.acme"])


@pytest.mark.parametrize("raw", ["1.5", "NaN", "-3", "+Inf", "x"])
def test_counter_values_must_be_whole(raw: str) -> None:
    with pytest.raises(metering.MeteringError):
        metering.parse_counter_value(raw)


def test_counter_values_parse_exactly() -> None:
    assert metering.parse_counter_value("12345678901234567") == 12345678901234567
    assert metering.parse_counter_value("1e3") == 1000


def test_storage_byte_hours_weighs_time_in_each_state() -> None:
    retention = timedelta(days=1)
    executions = [
        ExecutionStorage(H - timedelta(days=2), None, 1000),  # open all hour: 1000 active byte-hours
        ExecutionStorage(H + timedelta(minutes=30), None, 600),  # opened half-way: 300
        # Closed at :15 -> a quarter hour active, three quarters retained.
        ExecutionStorage(H - timedelta(hours=2), H + timedelta(minutes=15), 4000),
        # Closed long ago, retention ends at :30 -> half an hour retained.
        ExecutionStorage(H - timedelta(days=3), H - retention + timedelta(minutes=30), 200),
        # Retention over before the hour: nothing.
        ExecutionStorage(H - timedelta(days=3), H - retention - timedelta(minutes=1), 999),
    ]
    assert metering.storage_byte_hours(executions, H, retention) == (1000 + 300 + 1000, 3000 + 100)


def test_hours_between_and_ids() -> None:
    assert metering.hours_between(H, H + timedelta(hours=3)) == [H, H + metering.HOUR, H + 2 * metering.HOUR]
    assert metering.hour_id(H + timedelta(minutes=59)) == "2026-11-25T10:00Z"
    assert metering.floor_hour(datetime(2026, 11, 25, 10, 59, 59)) == H


def test_namespace_label_name_comes_from_settings() -> None:
    """Under the Prometheus operator the server's `namespace` label arrives as `exported_namespace`."""
    window = [WindowSeries({"exported_namespace": "orders_acme", "namespace": "monitoring",
                            "action_type": "command_StartTimer"}, [(1, 3)])]
    assert metering.action_deltas(window, {}, namespace_label="exported_namespace") == {
        "orders_acme": {"command_StartTimer": 3}}


def test_a_restart_seen_in_one_series_resets_every_series_of_that_target() -> None:
    def series(instance: str, kind: str, samples: list[tuple[float, int]]) -> WindowSeries:
        return WindowSeries({"job": "temporal", "instance": instance, "namespace": "orders_acme",
                             "action_type": kind}, samples)

    busy = series("a:1", "command_ScheduleActivityTask", [(10, 105), (20, 3)])  # dropped: a:1 restarted at 20
    quiet = series("a:1", "grpc_StartWorkflowExecution", [(10, 2), (20, 6)])  # climbed 2 -> 6 across the restart
    other = series("b:1", "command_StartTimer", [(10, 2), (20, 6)])  # another process: no restart
    baselines = {metering.series_key(busy.labels): 100, metering.series_key(quiet.labels): 2,
                 metering.series_key(other.labels): 2}
    assert metering.target_restarts([busy, quiet, other]) == {("temporal", "a:1"): [10]}
    got = metering.action_deltas([busy, quiet, other], baselines, namespace_label="namespace")
    assert got == {"orders_acme": {"command_ScheduleActivityTask": 5 + 3, "grpc_StartWorkflowExecution": 6,
                                   "command_StartTimer": 4}}


def test_a_known_restart_after_the_baseline_counts_the_first_sample_from_zero() -> None:
    assert metering.counter_delta(50, [(5, 60), (9, 70)], restarts=[4]) == 70
    assert metering.counter_delta(50, [(5, 60), (9, 70)], restarts=[5]) == 10 + 70


def test_a_drop_from_the_baseline_resets_only_its_own_series() -> None:
    """The baseline's time is unknown: the restart may predate another series' baseline, so it proves nothing."""
    target = {"job": "t", "instance": "a", "namespace": "x"}
    dropped = WindowSeries({**target, "action_type": "command_StartTimer"}, [(10, 1)])
    climbed = WindowSeries({**target, "action_type": "grpc_SignalWorkflowExecution"}, [(10, 9)])
    baselines = {metering.series_key(dropped.labels): 5, metering.series_key(climbed.labels): 7}
    assert metering.target_restarts([dropped, climbed]) == {}
    assert metering.action_deltas([dropped, climbed], baselines, namespace_label="namespace") == {
        "x": {"command_StartTimer": 1, "grpc_SignalWorkflowExecution": 2}}


@given(st.one_of(st.none(), st.integers(min_value=0, max_value=10**6)), st.integers(min_value=0, max_value=10**6),
       st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=30))
def test_a_series_summary_counts_what_its_samples_count_when_its_process_did_not_restart(
        baseline: int | None, first: int, increments: list[int]) -> None:
    """What one query answers per series (last value, lowest value against the baseline, drops) gives the same
    count as its samples: the collector reads samples only for the targets that restarted in the window."""
    values = [first]
    for inc in increments[1:]:
        values.append(values[-1] + inc)
    samples = [(float(t), v) for t, v in enumerate(values)]
    summary = metering.SeriesSummary({"namespace": "x"}, last=values[-1], drops=0,
                                     dropped_at_start=baseline is not None and min(values) < baseline)
    assert metering.summary_delta(summary, baseline) == metering.counter_delta(baseline, samples)


def test_a_series_that_drops_inside_the_window_is_counted_from_its_samples() -> None:
    target = {"job": "temporal", "instance": "a:1", "namespace": "x"}
    dropped = metering.SeriesSummary({**target, "action_type": "command_StartTimer"}, last=3, drops=1)
    steady = metering.SeriesSummary({**target, "action_type": "grpc_StartWorkflowExecution"}, last=9)
    other = metering.SeriesSummary({"job": "temporal", "instance": "b:1", "namespace": "x"}, last=9)
    assert metering.restarted_targets([dropped, steady, other]) == {("temporal", "a:1")}
    with pytest.raises(metering.MeteringError, match="drops inside the window"):
        metering.summary_delta(dropped, 5)
