"""storage.evidence_guard on SQLite (the in-process lock): a writer's shared hold lasts until
its session's transaction ends, by commit, rollback or close, and keeps the retention job's
exclusive hold out meanwhile; writers never wait for each other."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from storage.database import make_engine, make_session_factory
from storage.evidence_guard import hold_for_new_bytes, hold_for_removal


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[Callable[[], Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'guard.db'}")
    yield make_session_factory(engine)
    engine.dispose()


def _removal_gets_in(sessions: Callable[[], Session], within: float = 0.3) -> bool:
    """Whether the job's exclusive hold is granted within ``within`` seconds (let go at once)."""
    granted = threading.Event()

    def remove() -> None:
        with sessions() as session, hold_for_removal(session):
            granted.set()

    job = threading.Thread(target=remove, daemon=True)
    job.start()
    return granted.wait(within)


@pytest.mark.parametrize("end", ["commit", "rollback", "close"])
def test_a_writers_hold_lasts_until_its_transaction_ends(
    sessions: Callable[[], Session], end: str
) -> None:
    writer = sessions()
    writer.execute(text("SELECT 1"))
    hold_for_new_bytes(writer)
    hold_for_new_bytes(writer)  # again in the same transaction: still one hold
    other = sessions()
    hold_for_new_bytes(other)  # another writer is not kept waiting
    other.close()
    granted = threading.Event()

    def remove() -> None:
        with sessions() as session, hold_for_removal(session):
            granted.set()

    job = threading.Thread(target=remove, daemon=True)
    job.start()
    assert not granted.wait(0.3), "the job got in while a writer's transaction was open"
    getattr(writer, end)()
    assert granted.wait(5), f"the writer's hold outlived its {end}"
    job.join(5)
    if end != "close":
        writer.close()


def test_a_writer_waits_while_the_job_holds_it(sessions: Callable[[], Session]) -> None:
    job = sessions()
    held = hold_for_removal(job)
    held.__enter__()
    stored = threading.Event()

    def write() -> None:
        with sessions() as session:
            hold_for_new_bytes(session)
            stored.set()
            session.commit()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    assert not stored.wait(0.3), "a writer got in while the job removed bytes"
    held.__exit__(None, None, None)
    job.close()
    assert stored.wait(5)
    writer.join(5)
    assert _removal_gets_in(sessions), "the writer's hold outlived its commit"
