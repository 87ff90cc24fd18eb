"""What a run measured: ingest's answers and their latency, progress, what was stored."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from pydantic import ValidationError

from contracts.acks import IngestAck
from contracts.stats import percentile


@dataclass
class AckTracker:
    """Publish times by message id, and what ingest answered; shared with paho's threads."""

    _sent_at: dict[UUID, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    bad_acks: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def sent(self, message_id: UUID) -> None:
        with self._lock:
            self._sent_at[message_id] = time.monotonic()

    def answered(self, payload: bytes) -> None:
        now = time.monotonic()
        try:
            ack = IngestAck.model_validate_json(payload)
        except ValidationError:
            with self._lock:
                self.bad_acks += 1
            return
        with self._lock:
            sent_at = self._sent_at.pop(ack.message_id, None)
            if sent_at is None:
                return  # an ack for a message of an earlier run, or a repeat
            self.outcomes[ack.outcome.value] += 1
            self.latencies.append(now - sent_at)

    @property
    def unanswered(self) -> int:
        with self._lock:
            return len(self._sent_at)


def latency_summary_ms(latencies: Sequence[float]) -> dict[str, float | None]:
    """p50, p95, p99 and max in milliseconds; None each when nothing was answered."""
    if not latencies:
        return dict.fromkeys(("p50", "p95", "p99", "max"))
    return {
        "p50": round(percentile(latencies, 0.50) * 1000, 2),
        "p95": round(percentile(latencies, 0.95) * 1000, 2),
        "p99": round(percentile(latencies, 0.99) * 1000, 2),
        "max": round(max(latencies) * 1000, 2),
    }


class Progress:
    """One self-rewriting stderr line, only when stderr is a terminal."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = max(total, 1)
        self.enabled = sys.stderr.isatty()
        self._last = 0.0

    def show(self, done: int, detail: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < 0.25):
            return
        self._last = now
        filled = min(30, int(30 * done / self.total))
        sys.stderr.write(
            f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} {detail}"
        )
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def stored_message_ids(database_url: str, message_ids: Iterable[UUID]) -> set[UUID]:
    """Which of ``message_ids`` ingest's database holds."""
    from sqlalchemy import select

    from storage.database import make_engine
    from storage.tables import Event

    wanted = list(message_ids)
    found: set[UUID] = set()
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                found.update(
                    connection.scalars(select(Event.message_id).where(Event.message_id.in_(chunk)))
                )
    finally:
        engine.dispose()
    return found
