"""The append-only audit log: every action on a case, chained by SHA-256.

Each entry's hash covers its own fields and the hash of the entry before it, so altering an entry
breaks its own hash and deleting one breaks the next entry's link. The newest entry is also kept
in ``audit_head``, so cutting entries off the end shows too.

Writers lock the head row first (an UPDATE that changes nothing): PostgreSQL takes a row lock
and SQLite its write lock, so two transactions never chain onto the same entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storage.tables import AuditCursor, AuditHead, CaseTransition

log = logging.getLogger(__name__)

# What a cursor's reader makes of its entries: the rows to add in the same transaction.
RowsFor = Callable[[Session, Sequence[CaseTransition]], Sequence[Any]]

GENESIS_HASH = "0" * 64
HEAD_ID = 1
# On PostgreSQL each transaction that appends entries NOTIFYs this channel with its newest seq,
# delivered at commit: the live feed's listeners read the log then, not a poll later. It only
# says "look now"; the log stays the source of truth.
FEED_CHANNEL = "civicwatch_feed"
# The fields an entry's hash covers, in order. Changing this list breaks every stored chain.
HASHED_FIELDS = (
    "seq",
    "case_id",
    "action",
    "from_state",
    "to_state",
    "actor",
    "reason",
    "at",
    "detail",
)


def entry_hash(entry: dict[str, Any], prev_hash: str) -> str:
    """The hash of one entry (a dict with HASHED_FIELDS) chained onto ``prev_hash``."""
    at = entry["at"]
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise ValueError(f"audit entry needs a timezone-aware time, got {at!r}")
    fields = {name: entry.get(name) for name in HASHED_FIELDS}
    fields["at"] = at.astimezone(UTC).isoformat(timespec="microseconds")
    fields["detail"] = fields["detail"] or {}
    canonical = json.dumps(
        [prev_hash, fields], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _lock_head(session: Session) -> tuple[int, str]:
    """Lock the chain's head for this transaction; returns (newest seq, its hash)."""
    # synchronize_session=False: the head is read back as plain columns below and never held
    # as an object, and evaluating the statement against the session (the default) cost more
    # CPU than the statement itself, inside the span every writer waits on.
    locked = session.execute(
        update(AuditHead)
        .where(AuditHead.id == HEAD_ID)
        .values(seq=AuditHead.seq)
        .execution_options(synchronize_session=False)
    )
    if not getattr(locked, "rowcount", 0):
        created = AuditHead(id=HEAD_ID, seq=0, entry_hash=GENESIS_HASH)
        session.add(created)
        session.flush()
        session.expunge(created)  # no object to go stale when the head moves below
    head = session.execute(
        select(AuditHead.seq, AuditHead.entry_hash).where(AuditHead.id == HEAD_ID)
    ).one()
    return int(head.seq), str(head.entry_hash)


def chain_entries(session: Session, entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give each entry (a dict of CaseTransition columns, in order) its seq and hashes, and move
    the head; the caller inserts the returned rows in the same transaction."""
    if not entries:
        return []
    seq, prev = _lock_head(session)
    chained = []
    for entry in entries:
        seq += 1
        row = {"action": "", "detail": {}, "reason": "", **entry, "seq": seq, "prev_hash": prev}
        row["entry_hash"] = entry_hash(row, prev)
        prev = row["entry_hash"]
        chained.append(row)
    session.execute(
        update(AuditHead)
        .where(AuditHead.id == HEAD_ID)
        .values(seq=seq, entry_hash=prev)
        .execution_options(synchronize_session=False)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Queued with the transaction, sent only if it commits (a rollback sends nothing).
        session.execute(select(func.pg_notify(FEED_CHANNEL, str(seq))))
    return chained


def append_entry(session: Session, transition: CaseTransition) -> CaseTransition:
    """Chain one ORM entry (its case_id or case set) and add it to the session."""
    if transition.case_id is None:
        if transition.case.id is None:
            session.flush()  # a new case needs its id before the entry can name it
        transition.case_id = transition.case.id
    values = {name: getattr(transition, name) for name in HASHED_FIELDS if name != "seq"}
    # No autoflush: the entry is not in the session yet and must not be flushed half-chained.
    with session.no_autoflush:
        (row,) = chain_entries(session, [values])
    transition.seq = row["seq"]
    transition.prev_hash = row["prev_hash"]
    transition.entry_hash = row["entry_hash"]
    transition.action = row["action"]
    transition.detail = row["detail"]
    session.add(transition)
    return transition


@dataclass(frozen=True)
class ChainProblem:
    seq: int | None
    entry_id: int | None
    problem: str

    def __str__(self) -> str:
        return f"audit entry seq={self.seq} (row id {self.entry_id}): {self.problem}"


@dataclass(frozen=True)
class ChainReport:
    entries: int
    problems: list[ChainProblem]

    @property
    def intact(self) -> bool:
        return not self.problems


_ROW_COLUMNS = (
    CaseTransition.id,
    CaseTransition.prev_hash,
    CaseTransition.entry_hash,
    *(getattr(CaseTransition, name) for name in HASHED_FIELDS),
)


@dataclass
class Claimed:
    """Audit entries after a named cursor, the cursor row locked until the transaction ends:
    the caller handles the entries, then moves ``cursor.seq`` past the last one."""

    cursor: AuditCursor
    entries: Sequence[CaseTransition]

    def advance(self) -> None:
        if self.entries:
            self.cursor.seq = int(self.entries[-1].seq or self.cursor.seq)


def claim_after_cursor(session: Session, name: str, batch_size: int) -> Claimed | None:
    """The next ``batch_size`` entries after cursor ``name``, for a reader that hands each
    entry on once (the notification pump, residents' status messages). None on the first run:
    the cursor is placed at the chain's head, so history is not replayed (a process that
    places it concurrently makes the commit raise IntegrityError)."""
    # A write first: PostgreSQL locks the row, SQLite takes its write lock, so two readers
    # never take the same entries.
    locked = session.execute(
        update(AuditCursor)
        .where(AuditCursor.name == name)
        .values(seq=AuditCursor.seq)
        .execution_options(synchronize_session=False)
    )
    cursor = session.get(AuditCursor, name) if getattr(locked, "rowcount", 0) else None
    if cursor is None:
        head = session.scalar(select(AuditHead.seq).where(AuditHead.id == HEAD_ID))
        session.add(AuditCursor(name=name, seq=int(head or 0)))
        return None
    entries = session.scalars(
        select(CaseTransition)
        .where(CaseTransition.seq > cursor.seq)
        .order_by(CaseTransition.seq)
        .limit(batch_size)
    ).all()
    return Claimed(cursor, entries)


def pump_batch(
    sessions: sessionmaker[Session], name: str, batch_size: int, rows_for: RowsFor
) -> tuple[int, int]:
    """One transaction: the entries after cursor ``name`` claimed, the rows ``rows_for`` makes
    of them added, the cursor moved past them. Returns (rows written, entries read); (0, 0) on
    the first run, which places the cursor at the chain's head, or when another process placed
    it at the same moment (its commit raised IntegrityError; the next run goes on)."""
    try:
        with sessions.begin() as session:
            claimed = claim_after_cursor(session, name, batch_size)
            if claimed is None:
                log.info("audit reader %s starts at the chain's head", name)
                return 0, 0
            rows = rows_for(session, claimed.entries) if claimed.entries else []
            session.add_all(rows)
            claimed.advance()
            return len(rows), len(claimed.entries)
    except IntegrityError:
        log.info("audit reader %s: its cursor was placed concurrently", name)
        return 0, 0


def pump_all(sessions: sessionmaker[Session], name: str, batch_size: int, rows_for: RowsFor) -> int:
    """``pump_batch`` until the log is drained (a scheduled job catches up after downtime or a
    burst in one run); returns the rows written."""
    total = 0
    while True:
        written, read = pump_batch(sessions, name, batch_size, rows_for)
        total += written
        if read < batch_size:
            return total


def _rows(session: Session, batch: int = 5000) -> Iterator[Any]:
    after = 0
    while True:
        query = select(*_ROW_COLUMNS).where(CaseTransition.seq > after)
        rows = session.execute(query.order_by(CaseTransition.seq).limit(batch)).all()
        if not rows:
            return
        yield from rows
        after = int(rows[-1].seq)


def verify_chain(
    session: Session,
    stop_at_first: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ChainReport:
    """Walk the whole chain in seq order; report every entry whose hash or link does not hold.
    ``progress`` is called with the number of entries checked so far, now and then."""
    problems: list[ChainProblem] = []
    unchained = session.scalars(
        select(CaseTransition.id).where(CaseTransition.seq.is_(None)).limit(10)
    ).all()
    problems.extend(ChainProblem(None, row, "entry is outside the chain") for row in unchained)
    expected_prev, expected_seq, count = GENESIS_HASH, 1, 0
    for row in _rows(session):
        count += 1
        values = {name: getattr(row, name) for name in HASHED_FIELDS}
        if row.seq != expected_seq:
            problems.append(
                ChainProblem(row.seq, row.id, f"seq {expected_seq} is missing (entry deleted)")
            )
        if row.prev_hash != expected_prev:
            problems.append(ChainProblem(row.seq, row.id, "does not link to the entry before it"))
        if entry_hash(values, row.prev_hash or "") != row.entry_hash:
            problems.append(ChainProblem(row.seq, row.id, "its content does not match its hash"))
        expected_prev, expected_seq = row.entry_hash or "", (row.seq or 0) + 1
        if progress is not None and count % 1000 == 0:
            progress(count)
        if stop_at_first and problems:
            return ChainReport(count, problems)
    head = session.get(AuditHead, HEAD_ID)
    if head is not None and (head.seq != expected_seq - 1 or head.entry_hash != expected_prev):
        problems.append(
            ChainProblem(head.seq, None, "the head names a newer entry: entries cut off the end")
        )
    return ChainReport(count, problems)
