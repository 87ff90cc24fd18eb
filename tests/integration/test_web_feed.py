"""The live case feed (SSE) over real HTTP: a real uvicorn server, a real database, cases from
the real ingest path (IngestService.store with generated events from tests/factories.py)."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from civicwatch.serving import BackgroundApi
from contracts.events import ViolationKind
from dispatch.config import ApiSettings, ApiToken, Department, Role
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.web.feed import FeedHub
from dispatch.web.settings import WebOptions
from dispatch.workflow import Workflow
from tests.conftest import free_port
from tests.factories import FIRE_LANE_ZONE, EventFactory, IngestRig, make_ingest, migrated_database

TOKENS = {
    "dispatcher": ApiToken(
        name="desk", token=SecretStr("dispatcher-token-0001"), role=Role.DISPATCHER
    ),
    "law": ApiToken(
        name="officer",
        token=SecretStr("law-enforcement-token"),
        role=Role.WORKER,
        department=Department.LAW_ENFORCEMENT,
    ),
}
POLL_SECONDS = 0.1


@dataclass
class Served:
    base: str
    rig: IngestRig
    hub: FeedHub
    api: BackgroundApi
    edge: EventFactory = field(default_factory=EventFactory)

    def parking(self) -> None:
        self.rig.service.store(self.edge.event())

    def fire_lane(self) -> None:
        self.rig.service.store(
            self.edge.event(zone_id=FIRE_LANE_ZONE, kind=ViolationKind.FIRE_LANE_BLOCKING)
        )


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[Served]:
    with migrated_database(database_url) as (_engine, sessions):
        rig = make_ingest(sessions, tmp_path / "evidence")
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=rig.evidence_store,
                settings=ApiSettings(tokens=list(TOKENS.values())),
                registry=rig.registry,
                metrics_registry=rig.metrics.registry,
                workflow=Workflow(),
                web=WebOptions(feed_poll_seconds=POLL_SECONDS, feed_heartbeat_seconds=0.5),
            )
        )
        port = free_port()
        server = BackgroundApi(app, "127.0.0.1", port)
        server.start()
        try:
            yield Served(f"http://127.0.0.1:{port}", rig, app.state.feed_hub, server)
        finally:
            server.stop()


class SseReader:
    """Reads one SSE stream in a thread: events (and heartbeat comments) land in a queue."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.items: queue.Queue[dict[str, Any]] = queue.Queue()
        self.opened = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=30))
        self._url = url
        self._headers = headers
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self.opened.wait(10), "the feed did not answer"

    def _run(self) -> None:
        event: dict[str, Any] = {}
        try:
            with self._client.stream("GET", self._url, headers=self._headers) as response:
                self.status = response.status_code
                if response.status_code != 200:
                    self.opened.set()
                    return
                for line in response.iter_lines():
                    # The stream's first line ("retry:") follows the subscription: live from here.
                    self.opened.set()
                    if self._stop:
                        return
                    if line.startswith(":"):
                        self.items.put({"comment": line[1:].strip()})
                    elif line == "":
                        if "data" in event:
                            self.items.put(event)
                        event = {}
                    else:
                        key, _, value = line.partition(":")
                        event[key] = value.strip()
        except httpx.HTTPError:
            self.opened.set()

    def events(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The next ``count`` case events (comments skipped), each with its JSON decoded."""
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                item = self.items.get(timeout=left)
            except queue.Empty:
                break
            if item.get("event") == "case":
                found.append({**item, "json": json.loads(item["data"])})
        return found

    def close(self) -> None:
        self._stop = True
        self._client.close()
        self._thread.join(timeout=5)


def _feed(served: Served, who: str, **headers: str) -> SseReader:
    token = TOKENS[who].token.get_secret_value()
    return SseReader(f"{served.base}/api/v1/feed", {"Authorization": f"Bearer {token}", **headers})


def test_a_stored_case_reaches_an_open_feed_within_a_second(served: Served) -> None:
    reader = _feed(served, "dispatcher")
    try:
        assert reader.status == 200
        served.parking()
        # From the commit on, not counting the store itself: its time is ingest's, not the feed's
        stored = time.monotonic()
        events = reader.events(2)  # register + dispatch
        took = time.monotonic() - stored
        assert [e["json"]["action"] for e in events] == ["register", "dispatch"]
        assert took < 1.0, f"the case took {took:.2f} s to reach the feed"
        case = events[-1]["json"]["case"]
        assert case["kind"] == "illegal_parking"
        assert case["department"] == "law_enforcement"
        assert [int(e["id"]) for e in events] == [e["json"]["seq"] for e in events]
    finally:
        reader.close()


def test_a_worker_gets_only_their_departments_cases(served: Served) -> None:
    worker = _feed(served, "law")
    dispatcher = _feed(served, "dispatcher")
    try:
        served.fire_lane()
        served.parking()
        everything = dispatcher.events(4)
        mine = worker.events(4, timeout=2.0)
        assert {e["json"]["case"]["kind"] for e in everything} == {
            "illegal_parking",
            "fire_lane_blocking",
        }
        assert len(mine) == 2
        assert {e["json"]["case"]["department"] for e in mine} == {"law_enforcement"}
    finally:
        worker.close()
        dispatcher.close()


def test_a_reconnect_with_last_event_id_misses_nothing(served: Served) -> None:
    first = _feed(served, "dispatcher")
    served.parking()
    seen = first.events(2)
    first.close()
    served.parking()  # while nobody listens
    served.fire_lane()
    again = _feed(served, "dispatcher", **{"Last-Event-ID": seen[-1]["id"]})
    try:
        served.parking()  # live, after the reconnect
        events = again.events(6)
        seqs = [e["json"]["seq"] for e in events]
        assert seqs == list(range(int(seen[-1]["id"]) + 1, int(seen[-1]["id"]) + 7))
    finally:
        again.close()


def test_one_poller_serves_every_connection(served: Served) -> None:
    readers = [_feed(served, "dispatcher") for _ in range(6)]
    try:
        before = served.hub.polls
        time.sleep(1.0)
        polls = served.hub.polls - before
        # One read per tick for all six connections, not six.
        assert polls <= 1.0 / POLL_SECONDS + 2, f"{polls} reads of the log in a second"
        served.parking()
        assert all(len(reader.events(2)) == 2 for reader in readers)
    finally:
        for reader in readers:
            reader.close()


def test_the_feed_sends_heartbeats_and_the_poller_stops_when_nobody_listens(
    served: Served,
) -> None:
    reader = _feed(served, "dispatcher")
    try:
        deadline = time.monotonic() + 3
        comments = []
        while time.monotonic() < deadline and "heartbeat" not in comments:
            try:
                comments.append(reader.items.get(timeout=0.5).get("comment"))
            except queue.Empty:
                continue
        assert "heartbeat" in comments
    finally:
        reader.close()
    # Once the server has seen the connection close, the poller stops within a tick or two.
    deadline = time.monotonic() + 5
    polls = -1
    while time.monotonic() < deadline and served.hub.polls != polls:
        polls = served.hub.polls
        time.sleep(5 * POLL_SECONDS)
    assert served.hub.polls == polls, "the poller still reads with nobody listening"


def test_an_open_feed_does_not_hold_up_shutdown(served: Served) -> None:
    reader = _feed(served, "dispatcher")
    try:
        started = time.monotonic()
        served.api.stop()
        took = time.monotonic() - started
        assert took < 2.0, f"shutdown waited {took:.1f} s for the open feed"
        reader._thread.join(timeout=5)
        assert not reader._thread.is_alive(), "the feed response never ended"
    finally:
        reader.close()
