"""Chaos runs against real processes; each run's counts are listed at the end of the session."""

from __future__ import annotations

import pytest

from tests.chaos.rig import RunResult

RESULTS = pytest.StashKey[list[RunResult]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: kills real processes mid-stream (Mosquitto, server, edge)"
    )
    config.stash[RESULTS] = []


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    results = config.stash.get(RESULTS, [])
    if not results:
        return
    terminalreporter.section("chaos runs")
    for result in results:
        terminalreporter.write_line(result.to_json())
