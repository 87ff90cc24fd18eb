"""The live case feed: Server-Sent Events tailing the audit log.

Every change to a case is an entry in ``case_transitions`` with a gap-free ``seq``. One reader
thread per app reads the entries after its cursor (one query for all consoles, not one per
connection) and hands them to each subscriber the entry's case is visible to. The SSE ``id`` is
the seq, so a reconnecting browser sends Last-Event-ID and gets what it missed from the database
before the live entries.

When the thread reads: on SQLite every ``feed_poll_seconds``. On PostgreSQL every transaction
that appends entries NOTIFYs ``storage.audit.FEED_CHANNEL`` at commit, and each API process holds
one listening connection that wakes its reader, so every process of a multi-process API sees an
entry as soon as it commits. The notification only says "look now": the reader still reads after
its cursor, so a dropped notification loses nothing, and it also reads every
``max(feed_poll_seconds, FALLBACK_SECONDS)`` without one. A lost listening connection is
reconnected with backoff, and the reader catches up from its cursor once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import select as select_io
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import anyio
import psycopg
from fastapi import APIRouter, FastAPI, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from dispatch.http.deps import API_PREFIX, PrincipalDep, scope_of
from storage.audit import FEED_CHANNEL
from storage.database import SessionFactory
from storage.tables import Case, CaseTransition

log = logging.getLogger(__name__)

MAX_QUEUED = 10_000  # a console this far behind is dropped; it reconnects and catches up
_BATCH = 500
# On PostgreSQL: the log is read at least this often even when no notification comes (a
# notification lost with its connection, a writer outside storage.audit).
FALLBACK_SECONDS = 5.0
RECONNECT_MAX_SECONDS = 10.0  # the backoff between attempts to reopen the listening connection
# The listening connection is idle for long stretches: keepalives find a dead peer (a cut
# network sends no reset) within about 25 s instead of the kernel's two hours; an attempt to
# reopen it gives up after 5 s (the reader reads nothing while it waits). The URL's own wins.
_LISTENER_OPTIONS = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


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
    """The one reader of the audit log for every feed connection of an app.

    The thread runs while somebody listens and stops when the last one leaves. On PostgreSQL
    (psycopg) it holds one LISTEN connection while it runs; elsewhere it polls.
    """

    def __init__(
        self,
        session_factory: SessionFactory,
        poll_seconds: float,
        *,
        fallback_seconds: float = FALLBACK_SECONDS,
    ) -> None:
        self._sessions = session_factory
        self._poll_seconds = poll_seconds
        self._fallback_seconds = max(poll_seconds, fallback_seconds)
        bind = session_factory.kw.get("bind")
        self._engine: Engine | None = None
        if (
            isinstance(bind, Engine)
            and bind.dialect.name == "postgresql"
            and bind.dialect.driver == "psycopg"
        ):
            self._engine = bind
        self._lock = threading.Lock()
        self._subscribers: set[Subscription] = set()
        self._cursor = 0
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # Wakes a reader that waits on its listening connection (the last one left, close).
        self._waker: socket.socket | None = None
        self.polls = 0  # how many times the log was read: tests check one query serves all
        self.notifications = 0  # notifications received on the listening connection
        self.connects = 0  # listening connections opened (one more after each loss)
        self.listener_pid: int | None = None  # the listening connection's backend, while open

    @property
    def listens(self) -> bool:
        """True where the reader waits for notifications (PostgreSQL), not a poll interval."""
        return self._engine is not None

    def subscribe(self, subscription: Subscription) -> int:
        """Register ``subscription``; returns the seq after which it gets live entries."""
        with self._lock:
            if self._thread is None:
                self._cursor = head_seq(self._sessions)
                self._stopping.clear()
                target = self._run_listening if self._engine is not None else self._run
                self._thread = threading.Thread(target=target, name="feed-reader", daemon=True)
                self._thread.start()
            self._subscribers.add(subscription)
            return self._cursor

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(subscription)
            last = not self._subscribers
        if last:
            self._wake()  # a listening reader closes its connection now, not a timeout later

    def end_streams(self) -> None:
        """End every open feed response, so a shutting-down server need not wait for them
        (each browser reconnects and resumes from its Last-Event-ID)."""
        with self._lock:
            for subscriber in self._subscribers:
                subscriber.end()

    def close(self) -> None:
        self.end_streams()
        self._stopping.set()
        self._wake()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def _wake(self) -> None:
        with self._lock, contextlib.suppress(OSError):  # full: wake-ups are waiting already
            if self._waker is not None:
                self._waker.send(b"x")

    def _run(self) -> None:
        try:
            while not self._stopping.wait(self._poll_seconds):
                if not self._tick():
                    return
        finally:
            self._forget_thread()

    def _forget_thread(self) -> None:
        with self._lock:
            if self._thread is threading.current_thread():
                self._thread = None

    def _run_listening(self) -> None:
        """Wait for a notification (or the fallback interval), then read; reopen a lost
        listening connection with backoff, reading after each attempt (the catch-up)."""
        connection: psycopg.Connection[Any] | None = None
        backoff, retry_at = 0.0, 0.0
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        with self._lock:
            self._waker = wake_w
        try:
            while not self._stopping.is_set():
                if connection is None and time.monotonic() >= retry_at:
                    try:
                        connection = self._listen()
                        backoff = 0.0
                    except (psycopg.Error, OSError) as exc:
                        backoff = min(max(2 * backoff, 0.5), RECONNECT_MAX_SECONDS)
                        retry_at = time.monotonic() + backoff
                        log.warning(
                            "the live feed cannot listen for changes (%s); polling, retrying in"
                            " %.1f s",
                            exc,
                            backoff,
                        )
                else:
                    timeout = self._fallback_seconds
                    if connection is None:
                        timeout = min(timeout, max(0.0, retry_at - time.monotonic()))
                    try:
                        self._wait(connection, wake_r, timeout)
                    except (psycopg.Error, OSError) as exc:
                        log.warning("the live feed lost its listening connection (%s)", exc)
                        self._close_listener(connection)
                        connection = None
                        retry_at = time.monotonic()  # the first attempt at once, then backoff
                if self._stopping.is_set() or not self._tick():
                    return
        finally:
            self._close_listener(connection)
            with self._lock:
                if self._waker is wake_w:
                    self._waker = None
            wake_r.close()
            wake_w.close()
            self._forget_thread()

    def _listen(self) -> psycopg.Connection[Any]:
        """A connection of its own (not the pool's), in autocommit, listening to the feed."""
        assert self._engine is not None
        dialect = self._engine.dialect
        cargs, cparams = dialect.create_connect_args(self._engine.url)
        raw = dialect.connect(*cargs, **{**_LISTENER_OPTIONS, **cparams})
        if not isinstance(raw, psycopg.Connection):  # pragma: no cover - the dialect is psycopg
            raw.close()
            raise psycopg.InterfaceError("the listening connection is not a psycopg one")
        connection: psycopg.Connection[Any] = raw
        try:
            connection.autocommit = True
            connection.execute(f"LISTEN {FEED_CHANNEL}")
        except BaseException:
            connection.close()
            raise
        self.connects += 1
        self.listener_pid = connection.info.backend_pid
        log.info("the live feed listens on %s (backend %s)", FEED_CHANNEL, self.listener_pid)
        return connection

    def _close_listener(self, connection: psycopg.Connection[Any] | None) -> None:
        self.listener_pid = None
        if connection is not None:
            with contextlib.suppress(psycopg.Error):
                connection.close()

    def _wait(
        self, connection: psycopg.Connection[Any] | None, waker: socket.socket, timeout: float
    ) -> None:
        """Until a notification, a wake-up or ``timeout``; raises if the connection is lost."""
        sources: list[Any] = [waker]
        pgconn = connection.pgconn if connection is not None else None
        if pgconn is not None:
            sources.append(pgconn.socket)
        ready, _, _ = select_io.select(sources, [], [], timeout)
        if waker in ready:
            with contextlib.suppress(BlockingIOError):
                while waker.recv(4096):
                    pass
        if pgconn is not None and len(ready) > (waker in ready):
            pgconn.consume_input()  # raises once the server has closed the connection
            if pgconn.status != psycopg.pq.ConnStatus.OK:
                raise psycopg.OperationalError("the listening connection is closed")
            while pgconn.notifies() is not None:
                self.notifications += 1

    def _tick(self) -> bool:
        """Read the log after the cursor and hand the entries out; False (and the thread is
        forgotten) when nobody listens any more."""
        with self._lock:
            if not self._subscribers:
                if self._thread is threading.current_thread():
                    self._thread = None
                return False
            cursor = self._cursor
        try:
            events = self._read(cursor)
        except SQLAlchemyError:
            log.exception("the live feed could not read the audit log; retrying")
            return True
        with self._lock:
            if events:
                self._cursor = events[-1].seq
            for subscriber in self._subscribers:
                subscriber.offer(events)
        return True

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
