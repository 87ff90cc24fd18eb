"""Waiting in tests for something another thread or process does: poll, never sleep a guess."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

POLL_SECONDS = 0.02
"""How often a condition is asked: a condition holds at most this long before a test sees it."""


def wait_for(
    condition: Callable[[], object],
    timeout: float = 10.0,
    what: str = "the condition",
    poll: float = POLL_SECONDS,
) -> float:
    """Seconds until ``condition()`` was true; fails the test, naming ``what``, when it was not
    within ``timeout`` seconds (asked once more at the deadline)."""
    start = time.monotonic()
    deadline = start + timeout
    while not condition():
        if time.monotonic() >= deadline:
            if condition():
                break
            pytest.fail(f"{what}: not within {timeout}s")
        time.sleep(poll)
    return time.monotonic() - start
