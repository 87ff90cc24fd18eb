"""A civicwatch process freezes the heap it starts with, after freeing what is already garbage."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from civicwatch.serving import freeze_startup_heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
def test_live_objects_are_frozen_and_garbage_is_freed_first() -> None:
    kept = _Node()
    cycle = _Node()
    cycle.other = _Node()
    cycle.other.other = cycle  # garbage only the cyclic collector frees
    gone = weakref.ref(cycle)
    del cycle
    gc.disable()  # so that only freeze_startup_heap can free the cycle
    try:
        assert gone() is not None
        freeze_startup_heap()
        assert gone() is None  # freed, not frozen
        assert gc.get_freeze_count() > 0
        tracked = (obj for generation in range(3) for obj in gc.get_objects(generation))
        assert not any(obj is kept for obj in tracked)  # out of every generation
    finally:
        gc.enable()
