"""The live case feed: Server-Sent Events tailing the audit log.

Every change to a case is an entry in ``case_transitions`` with a gap-free ``seq``. One poller
thread per app reads the entries after its cursor every ``feed_poll_seconds`` (one query per
tick for all consoles, not one per connection) and hands them to each subscriber the entry's
case is visible to. The SSE ``id`` is the seq, so a reconnecting browser sends Last-Event-ID
and gets what it missed from the database before the live entries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, FastAPI, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from dispatch.http.deps import API_PREFIX, PrincipalDep, scope_of
from storage.database import SessionFactory
from storage.tables import Case, CaseTransition

log = logging.getLogger(__name__)

MAX_QUEUED = 10_000  # a console this far behind is dropped; it reconnects and catches up
_BATCH = 500


@dataclass(frozen=True)
class FeedEvent:
    """One audit entry with the case as it is now, ready to send."""

    seq: int
    department: str | None
    data: dict[str, Any]

    def sse(self) -> str:
        return f"id: {self.seq}\nevent: case\ndata: {json.dumps(self.data, ensure_ascii=False)}\n\n"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def read_entries(
    session_factory: SessionFactory,
    after: int,
    limit: int,
    until: int | None = None,
    department: str | None = None,
) -> list[FeedEvent]:
    """Feed events with ``after < seq (<= until)``, oldest first; ``department`` scopes them."""
    query = (
        select(
            CaseTransition.seq,
            CaseTransition.case_id,
            CaseTransition.action,
            CaseTransition.from_state,
            CaseTransition.to_state,
            CaseTransition.actor,
            CaseTransition.reason,
            CaseTransition.at,
            Case.kind,
            Case.state,
            Case.department,
            Case.priority,
            Case.tier,
            Case.sla_due_at,
            Case.overdue,
            Case.escalation_level,
            Case.site_id,
            Case.camera_id,
            Case.zone_id,
            Case.plate_text,
            Case.opened_at,
        )
        .join(Case, Case.id == CaseTransition.case_id)
        .where(CaseTransition.seq > after)
        .order_by(CaseTransition.seq)
    )
    if until is not None:
        query = query.where(CaseTransition.seq <= until)
    if department is not None:
        query = query.where(Case.department == department)
    with session_factory() as session:
        rows = session.execute(query.limit(limit)).all()
    return [
        FeedEvent(
            seq=int(row.seq),
            department=row.department,
            data={
                "seq": row.seq,
                "case_id": row.case_id,
                "action": row.action,
                "from_state": row.from_state,
                "to_state": row.to_state,
                "actor": row.actor,
                "reason": row.reason,
                "at": _iso(row.at),
                "case": {
                    "id": row.case_id,
                    "kind": row.kind,
                    "state": row.state,
                    "department": row.department,
                    "priority": row.priority,
                    "tier": row.tier,
                    "sla_due_at": _iso(row.sla_due_at),
                    "overdue": row.overdue,
                    "escalation_level": row.escalation_level,
                    "site_id": row.site_id,
                    "camera_id": row.camera_id,
                    "zone_id": row.zone_id,
                    "plate_text": row.plate_text,
                    "opened_at": _iso(row.opened_at),
                },
            },
        )
        for row in rows
    ]


def head_seq(session_factory: SessionFactory) -> int:
    """The newest audit entry's seq (0 for an empty log)."""
    with session_factory() as session:
        return int(session.scalar(select(func.coalesce(func.max(CaseTransition.seq), 0))) or 0)


class Subscription:
    """One open feed connection: a queue the poller fills and an event that wakes its stream."""

    def __init__(self, loop: asyncio.AbstractEventLoop, department: str | None) -> None:
        self.department = department
        self._loop = loop
        self._queue: deque[FeedEvent] = deque()
        self.wake = asyncio.Event()
        self.overflowed = False
        self.ended = False  # the server is shutting down: end the stream

    def offer(self, events: Sequence[FeedEvent]) -> None:
        """Called by the poller thread."""
        wanted = [e for e in events if self.department is None or e.department == self.department]
        if not wanted:
            return
        if len(self._queue) + len(wanted) > MAX_QUEUED:
            self.overflowed = True
        else:
            self._queue.extend(wanted)
        self._loop.call_soon_threadsafe(self.wake.set)

    def end(self) -> None:
        """Called from any thread: the stream ends at its next wake-up."""
        self.ended = True
        self._loop.call_soon_threadsafe(self.wake.set)

    def drain(self) -> list[FeedEvent]:
        drained = []
        while self._queue:
            drained.append(self._queue.popleft())
        return drained


class FeedHub:
    """The one poller of the audit log for every feed connection of an app.

    The thread runs while somebody listens and stops when the last one leaves.
    """

    def __init__(self, session_factory: SessionFactory, poll_seconds: float) -> None:
        self._sessions = session_factory
        self._poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._subscribers: set[Subscription] = set()
        self._cursor = 0
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.polls = 0  # how many times the log was read: tests check one query serves all

    def subscribe(self, subscription: Subscription) -> int:
        """Register ``subscription``; returns the seq after which it gets live entries."""
        with self._lock:
            if self._thread is None:
                self._cursor = head_seq(self._sessions)
                self._stopping.clear()
                self._thread = threading.Thread(target=self._run, name="feed-poller", daemon=True)
                self._thread.start()
            self._subscribers.add(subscription)
            return self._cursor

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(subscription)

    def end_streams(self) -> None:
        """End every open feed response, so a shutting-down server need not wait for them
        (each browser reconnects and resumes from its Last-Event-ID)."""
        with self._lock:
            for subscriber in self._subscribers:
                subscriber.end()

    def close(self) -> None:
        self.end_streams()
        self._stopping.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.wait(self._poll_seconds):
            with self._lock:
                if not self._subscribers:
                    self._thread = None
                    return
                cursor = self._cursor
            try:
                events = self._read(cursor)
            except SQLAlchemyError:
                log.exception("the live feed could not read the audit log; retrying")
                continue
            with self._lock:
                if events:
                    self._cursor = events[-1].seq
                for subscriber in self._subscribers:
                    subscriber.offer(events)
        with self._lock:
            self._thread = None

    def _read(self, cursor: int) -> list[FeedEvent]:
        events: list[FeedEvent] = []
        while True:  # a burst larger than one batch is read to its end in this tick
            self.polls += 1
            batch = read_entries(self._sessions, cursor, _BATCH)
            events.extend(batch)
            if len(batch) < _BATCH:
                return events
            cursor = batch[-1].seq


def end_streams(app: FastAPI) -> None:
    """End ``app``'s open live-feed responses: the composition root calls this on shutdown."""
    hub: FeedHub | None = getattr(app.state, "feed_hub", None)
    if hub is not None:
        hub.end_streams()


router = APIRouter(prefix=API_PREFIX)


# Not in the OpenAPI document: an endless event stream is no request/response a schema (or a
# schema-driven fuzzer) can describe or wait for.
@router.get("/feed", response_class=StreamingResponse, include_in_schema=False)
async def case_feed(
    request: Request,
    principal: PrincipalDep,
    after: Annotated[
        int | None, Query(ge=0, description="replay entries after this seq (audit log order)")
    ] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Case changes as Server-Sent Events (``event: case``, ``id`` = audit seq), live.

    A department role gets its department's cases only. A reconnecting client sends
    Last-Event-ID (or ``?after=``) and first gets what it missed; ``event: reset`` means more
    was missed than is replayed: reload.
    """
    hub: FeedHub = request.app.state.feed_hub
    options = request.app.state.api.web
    department = scope_of(principal)
    resume = after
    if last_event_id is not None and last_event_id.strip().isdigit():
        resume = int(last_event_id.strip())
    session_factory: SessionFactory = request.app.state.api.session_factory
    subscription = Subscription(asyncio.get_running_loop(), department)

    async def stream() -> AsyncIterator[str]:
        # Subscribed here, not before the response starts: a stream that never starts holds no
        # subscription. The first one starts the poller, which reads the log's head: a thread.
        try:  # (the thread is not abandoned on cancel: the finally always follows subscribe)
            live_from = await anyio.to_thread.run_sync(hub.subscribe, subscription)
            yield "retry: 2000\n\n"
            last = live_from
            if resume is not None and resume < live_from:
                missed = await anyio.to_thread.run_sync(
                    lambda: read_entries(
                        session_factory,
                        resume,
                        options.feed_catchup_limit + 1,
                        until=live_from,
                        department=department,
                    )
                )
                if len(missed) > options.feed_catchup_limit:
                    yield "event: reset\ndata: {}\n\n"
                    return
                for event in missed:
                    yield event.sse()
            while True:
                try:
                    await asyncio.wait_for(subscription.wake.wait(), options.feed_heartbeat_seconds)
                except TimeoutError:
                    yield ": heartbeat\n\n"
                    continue
                subscription.wake.clear()
                if subscription.overflowed or subscription.ended:
                    return  # the browser reconnects with Last-Event-ID and catches up
                for event in subscription.drain():
                    if event.seq > last:
                        last = event.seq
                        yield event.sse()
        finally:
            hub.unsubscribe(subscription)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
