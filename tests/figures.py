"""Figures the suite prints at the end (faults injected, invoices checked, requests fuzzed, matrix cells...).

Use the ``figures`` fixture: ``figures.add("faults injected", 3)`` adds to a running total;
``figures.set("backup MB/s", 41.2)`` records a value. They print in pytest's terminal summary.
"""

from __future__ import annotations

from typing import Any

import pytest


class Figures:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, name: str, amount: int | float = 1) -> None:
        self.values[name] = self.values.get(name, 0) + amount

    def set(self, name: str, value: Any) -> None:
        self.values[name] = value


_FIGURES = Figures()


@pytest.fixture(scope="session")
def figures() -> Figures:
    return _FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES.values:
        return
    terminalreporter.section("figures")
    for name, value in sorted(_FIGURES.values.items()):
        terminalreporter.write_line(f"{name}: {value}")
