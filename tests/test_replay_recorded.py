"""Histories recorded by the real worker before the code was reorganized (tests/histories/*.json, kept with
``TCLOUD_RECORD_HISTORIES=dir pytest …``) still replay on today's workflow code: no change of the code broke a
workflow that was running when it was deployed."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tcloud.platform.temporal import DATA_CONVERTER
from workers import registry

# <workflow type>.json, or <workflow type>.<variant>.json for another shape of the same type (e.g. a step taken only
# for some inputs).
HISTORIES = {p.stem: p.read_text() for p in sorted((Path(__file__).parent / "histories").glob("*.json"))}


def test_every_capability_has_a_recorded_history() -> None:
    registered = {getattr(w, "__temporal_workflow_definition").name for w in registry.workflows()}
    recorded = {name.split(".")[0] for name in HISTORIES}
    assert recorded <= registered, recorded - registered
    assert len(recorded) >= 12


@pytest.mark.parametrize("name", list(HISTORIES))
async def test_recorded_history_replays(name: str) -> None:
    history = WorkflowHistory.from_json(name, HISTORIES[name])
    replayer = Replayer(workflows=registry.workflows(), data_converter=DATA_CONVERTER)
    await replayer.replay_workflow(history)
