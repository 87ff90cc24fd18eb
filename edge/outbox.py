"""The disk outbox: every event stays here until ingest confirms it stored it."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from contracts.acks import AckOutcome, IngestAck
from contracts.event_frame import EventEncoding, encode_event
from contracts.events import ViolationEvent

PENDING = "pending"
REJECTED = "rejected"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    message_id   TEXT PRIMARY KEY,
    topic        TEXT NOT NULL,
    payload      BLOB NOT NULL,
    created_at   REAL NOT NULL,
    last_sent_at REAL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    state        TEXT NOT NULL DEFAULT 'pending',
    reason       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS messages_pending ON messages (state, created_at);
CREATE TABLE IF NOT EXISTS sequences (
    camera_id TEXT PRIMARY KEY,
    next      INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    message_id: UUID
    topic: str
    payload: bytes
    attempts: int
    created_at: datetime


class Outbox:
    """A SQLite file (WAL) shared by the worker thread and the MQTT callback thread."""

    def __init__(self, path: Path, event_encoding: EventEncoding = "json") -> None:
        """``event_encoding``: how ``add`` encodes an event; the payload is stored as it goes on
        the wire. Messages already stored keep theirs (the publisher reads either)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.event_encoding: EventEncoding = event_encoding
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def add(self, topic: str, event: ViolationEvent, now: datetime | None = None) -> None:
        created = (now or datetime.now(UTC)).timestamp()
        with self._lock:
            self._db.execute(
                "INSERT INTO messages (message_id, topic, payload, created_at) VALUES (?, ?, ?, ?)",
                (
                    str(event.message_id),
                    topic,
                    encode_event(event, self.event_encoding),
                    created,
                ),
            )

    def due(
        self, resend_after_seconds: float, now: datetime, limit: int = 50
    ) -> list[OutboxMessage]:
        """Pending messages never sent, or sent longer ago than resend_after, oldest first."""
        cutoff = now.timestamp() - resend_after_seconds
        with self._lock:
            rows = self._db.execute(
                "SELECT message_id, topic, payload, attempts, created_at FROM messages "
                "WHERE state = ? AND (last_sent_at IS NULL OR last_sent_at <= ?) "
                "ORDER BY created_at, rowid LIMIT ?",
                (PENDING, cutoff, limit),
            ).fetchall()
        return [
            OutboxMessage(
                UUID(r[0]), r[1], bytes(r[2]), int(r[3]), datetime.fromtimestamp(r[4], UTC)
            )
            for r in rows
        ]

    def mark_sent(self, message_id: UUID, at: datetime) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE messages SET last_sent_at = ?, attempts = attempts + 1 "
                "WHERE message_id = ?",
                (at.timestamp(), str(message_id)),
            )

    def settle(self, ack: IngestAck) -> bool:
        """Apply ingest's answer; True when it settled a message that was still pending."""
        with self._lock:
            return self._settle(ack)

    def settle_many(self, acks: Sequence[IngestAck]) -> list[bool]:
        """Apply a batch of ingest's answers in one transaction (all or none); for each, True
        when it settled a message that was still pending."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                settled = [self._settle(ack) for ack in acks]
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return settled

    def _settle(self, ack: IngestAck) -> bool:
        if ack.outcome is AckOutcome.REJECTED:
            cursor = self._db.execute(
                "UPDATE messages SET state = ?, reason = ? WHERE message_id = ? AND state = ?",
                (REJECTED, ack.reason, str(ack.message_id), PENDING),
            )
        else:
            cursor = self._db.execute(
                "DELETE FROM messages WHERE message_id = ? AND state = ?",
                (str(ack.message_id), PENDING),
            )
        return cursor.rowcount > 0

    def in_flight_count(self, resend_after_seconds: float, now: datetime) -> int:
        """Pending messages sent within the resend window: out, not yet confirmed."""
        cutoff = now.timestamp() - resend_after_seconds
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM messages WHERE state = ? AND last_sent_at > ?",
                (PENDING, cutoff),
            ).fetchone()
        return int(row[0])

    def pending_count(self) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM messages WHERE state = ?", (PENDING,)
            ).fetchone()
        return int(row[0])

    def rejected(self) -> list[tuple[UUID, str]]:
        """Dead letters: (message_id, ingest's reason)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT message_id, reason FROM messages WHERE state = ? ORDER BY created_at",
                (REJECTED,),
            ).fetchall()
        return [(UUID(r[0]), str(r[1])) for r in rows]

    def next_sequence(self, camera_id: str) -> int:
        """The camera's next message sequence number; increases across restarts."""
        with self._lock:
            row = self._db.execute(
                "INSERT INTO sequences (camera_id, next) VALUES (?, 1) "
                "ON CONFLICT (camera_id) DO UPDATE SET next = next + 1 RETURNING next",
                (camera_id,),
            ).fetchone()
        return int(row[0]) - 1

    def close(self) -> None:
        with self._lock:
            self._db.close()
