"""The console's figures cost a scan of the window's cases: no request should wait for it while
recent figures exist, and asks that find none should scan once between them, not once each.
A real SQLite database with real ingested cases; the cache as the app builds it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from dispatch.web.stats import Stats, StatsCache, compute_stats
from storage.database import SessionFactory
from tests.factories import EventFactory, IngestRig, make_ingest, migrated_database
from tests.waiting import wait_for

ZONE = "Asia/Shanghai"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[IngestRig]:
    with migrated_database(f"sqlite:///{tmp_path}/db.sqlite") as (_engine, sessions):
        yield make_ingest(sessions, tmp_path / "evidence")


def cases_in(stats: Stats) -> int:
    return sum(stats.per_kind.values())


def test_stale_figures_are_served_while_one_thread_counts_again(rig: IngestRig) -> None:
    sessions: SessionFactory = rig.session_factory
    now = [0.0]
    counts_begun: list[float] = []
    background_may_finish = threading.Event()

    def held_count(session: Session, department: str | None, timezone: str) -> Stats:
        counts_begun.append(now[0])
        if len(counts_begun) > 1:  # the background count waits until both asks are answered
            background_may_finish.wait(timeout=20)
        return compute_stats(session, department, timezone)

    cache = StatsCache(
        max_age_seconds=15, clock=lambda: now[0], session_factory=sessions, compute=held_count
    )
    events = EventFactory()
    rig.service.store(events.event())
    with sessions() as session:
        first = cache.get(session, None, ZONE)
        assert cases_in(first) == 1
        rig.service.store(events.event())
        now[0] = 16.0  # stale, within twice max_age: the asker does not wait
        assert cache.get(session, None, ZONE) is first
        assert cache.get(session, None, ZONE) is first  # one background count, not two
        background_may_finish.set()
        wait_for(lambda: cache.refreshes == 1, 20.0)
        recounted = cache.get(session, None, ZONE)
        assert cases_in(recounted) == 2
        assert cache.refreshes == 1
        rig.service.store(events.event())
        now[0] = 16.0 + 31.0  # older than twice max_age: counted by the asker, now
        assert cases_in(cache.get(session, None, ZONE)) == 3
        assert cache.refreshes == 1
        assert len(counts_begun) == 3  # the first ask, one background count, the late ask


def test_without_a_session_factory_the_asker_counts_stale_figures(rig: IngestRig) -> None:
    now = [0.0]
    cache = StatsCache(max_age_seconds=15, clock=lambda: now[0])
    events = EventFactory()
    rig.service.store(events.event())
    with rig.session_factory() as session:
        first = cache.get(session, None, ZONE)
        rig.service.store(events.event())
        now[0] = 16.0
        assert cases_in(cache.get(session, None, ZONE)) == 2
        assert cache.refreshes == 0
        assert cases_in(first) == 1


def test_asks_that_find_nothing_count_once_between_them(rig: IngestRig) -> None:
    counts: list[float] = []

    def slow_count(session: Session, department: str | None, timezone: str) -> Stats:
        counts.append(time.monotonic())
        time.sleep(0.3)  # long enough that every asker arrives while the first counts
        return compute_stats(session, department, timezone)

    cache = StatsCache(max_age_seconds=15, session_factory=rig.session_factory, compute=slow_count)
    rig.service.store(EventFactory().event())
    start = threading.Barrier(6)
    answers: list[Stats] = []

    def ask(department: str | None) -> None:
        start.wait()
        with rig.session_factory() as session:
            answers.append(cache.get(session, department, ZONE))

    askers = [threading.Thread(target=ask, args=(None,)) for _ in range(5)]
    askers.append(threading.Thread(target=ask, args=("fire_rescue",)))
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join(timeout=30)
    assert len(answers) == 6
    assert len(counts) == 2  # one per key: everyone's scope, and the fire department's
    whole = [a for a in answers if cases_in(a) == 1]
    assert len(whole) == 5
    assert all(a is whole[0] for a in whole)
