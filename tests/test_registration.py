"""The worker registers every activity and workflow the code defines: none can be forgotten and fail at run time."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from unittest.mock import MagicMock

import pytest

import activities
import workflows
from workers import registry
from workers.capability import Clients, activity_methods


def _defined(package: object, marker: str) -> set[str]:
    """Names of everything in ``package``'s modules carrying Temporal's ``marker`` attribute."""
    names: set[str] = set()
    for info in pkgutil.iter_modules(package.__path__):  # type: ignore[attr-defined]
        module = importlib.import_module(f"{package.__name__}.{info.name}")  # type: ignore[attr-defined]
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            if marker == "__temporal_workflow_definition" and hasattr(cls, marker):
                names.add(getattr(cls, marker).name)
            for _, member in inspect.getmembers(cls):
                if marker == "__temporal_activity_definition" and hasattr(member, marker):
                    names.add(getattr(member, marker).name)
    return names


def test_every_activity_defined_is_registered() -> None:
    clients = Clients(settings=MagicMock(), pool=MagicMock(), temporal=MagicMock(), stripe=MagicMock(),
                      prometheus=MagicMock())
    registered = [getattr(fn, "__temporal_activity_definition").name for fn in registry.activities(clients)]
    assert len(registered) == len(set(registered)), "an activity is registered twice"
    assert set(registered) == _defined(activities, "__temporal_activity_definition")


def test_every_workflow_defined_is_registered() -> None:
    registered = {getattr(w, "__temporal_workflow_definition").name for w in registry.workflows()}
    assert registered == _defined(workflows, "__temporal_workflow_definition")


def test_a_class_without_activities_is_refused() -> None:
    with pytest.raises(ValueError, match=r"no @activity\.defn"):
        activity_methods(object())
