"""The lock between writers of new evidence bytes and the retention job's byte removal.

Evidence is content-addressed: an image whose row the retention job removed (its name queued in
``evidence_deletions``) may come in again (an identical frame, a re-sent photo) while the job is
deleting its bytes. Without a lock the job could read "no row names it" before the writer's new
row commits, and then delete the bytes the writer has just written (or found still there and so
did not write): a committed row would name bytes that are gone.

- A writer calls ``hold_for_new_bytes(session)`` in the transaction that commits its evidence
  rows, BEFORE it writes (or decides not to write) the bytes; it holds the lock shared until that
  transaction ends. Writers never wait for each other.
- The retention job removes bytes inside ``with hold_for_removal(session):``; it holds the lock
  exclusively while it re-reads which names have a row again and deletes the bytes of the rest.

So a writer's bytes go either before the job's re-check (its row has committed by then, and the
job keeps the bytes) or after the job's removal (the writer writes them anew: a row that is new
in its transaction always writes its bytes).

PostgreSQL (several processes): a transaction-level advisory lock, ``pg_advisory_xact_lock_shared``
for writers and ``pg_advisory_xact_lock`` for the job, one statement each; both are released by
the transaction's commit or rollback. A queued exclusive request makes later shared requests
wait (PostgreSQL's lock queue), so ingest pauses while one batch of names is removed.

SQLite (one process, ``civicwatch server``): an in-process readers-writer lock. A writer holds
it shared until its session's transaction ends (a listener on the session); the job holds it
exclusively for the ``with`` block only, in which it only reads and deletes bytes: it takes
SQLite's write lock (to delete the names) after the block, so a writer that holds SQLite's write
lock while it waits for the shared lock never waits on the job in turn. Shared requests are
granted whenever no exclusive holder is in (no writer preference), for the same reason: a
writer holding the shared lock may wait for SQLite's write lock held by another writer that
needs the shared lock too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event, text
from sqlalchemy.orm import Session, SessionTransaction

# The advisory lock's key: two int4s, a key space apart from the single bigint keys the rest
# takes (ingest's incident locks are hashes over the whole bigint range, storage.evidence_pg's
# schema lock is one too), so it never collides with them (pg_locks shows it with objsubid 2).
LOCK_KEY = (0x0E71DE7C, 0x0DE1)
_SHARED = text("SELECT pg_advisory_xact_lock_shared(:a, :b)").bindparams(
    a=LOCK_KEY[0], b=LOCK_KEY[1]
)
_EXCLUSIVE = text("SELECT pg_advisory_xact_lock(:a, :b)").bindparams(a=LOCK_KEY[0], b=LOCK_KEY[1])
_HELD = "civicwatch.evidence_guard"  # session.info key: the root transaction holding it shared


class SharedExclusiveLock:
    """Many shared holders or one exclusive holder; shared requests never wait for a waiting
    exclusive one (see the module docstring)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False

    def acquire_shared(self) -> None:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._shared += 1

    def release_shared(self) -> None:
        with self._cond:
            self._shared -= 1
            if not self._shared:
                self._cond.notify_all()

    def acquire_exclusive(self) -> None:
        with self._cond:
            while self._exclusive or self._shared:
                self._cond.wait()
            self._exclusive = True

    def release_exclusive(self) -> None:
        with self._cond:
            self._exclusive = False
            self._cond.notify_all()


LOCAL = SharedExclusiveLock()  # this process's lock for SQLite databases


def hold_for_new_bytes(session: Session) -> None:
    """Hold the lock shared until ``session``'s transaction ends (it is begun if need be).

    Writers of evidence rows call this before they write the rows' bytes into the store.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_SHARED)
        return
    session.connection()  # begins the transaction if the session has none yet
    root = session.get_transaction()
    if root is None or session.info.get(_HELD) is root:
        return
    LOCAL.acquire_shared()
    session.info[_HELD] = root
    if not session.info.get(_HELD + ".listening"):
        session.info[_HELD + ".listening"] = True
        # Installed once per session; releases when the holding transaction ends.
        event.listen(session, "after_transaction_end", _release_at_end)


def _release_at_end(session: Session, transaction: SessionTransaction) -> None:
    if session.info.get(_HELD) is transaction:
        del session.info[_HELD]
        LOCAL.release_shared()


@contextmanager
def hold_for_removal(session: Session) -> Iterator[None]:
    """The retention job's byte removal: PostgreSQL holds the lock exclusively from here until
    ``session``'s transaction ends; SQLite for the ``with`` block only (module docstring)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_EXCLUSIVE)
        yield
        return
    LOCAL.acquire_exclusive()
    try:
        yield
    finally:
        LOCAL.release_exclusive()
