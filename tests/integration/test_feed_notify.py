"""The live feed across API processes on PostgreSQL: LISTEN/NOTIFY, not the poll.

Two apps, each with its own engine (as two API processes would have), serve the feed from one
database; cases are stored through a third engine (ingest's). The poll interval is an hour, so
only a notification explains an entry reaching both apps' consoles within a second. Then one
app's listening connection is killed in the server (pg_terminate_backend): it must reconnect,
deliver what was stored meanwhile and keep delivering live.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from civicwatch.serving import BackgroundApi
from dispatch.config import ApiSettings
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.web.feed import FeedHub
from dispatch.web.settings import WebOptions
from dispatch.workflow import Workflow
from storage.audit import FEED_CHANNEL, chain_entries
from storage.database import make_engine, make_session_factory
from tests.conftest import POSTGRES_ADMIN_URL, _postgres_scratch_database, free_port
from tests.factories import EventFactory, IngestRig, make_ingest, migrated_database
from tests.integration.test_web_feed import TOKENS, SseReader
from tests.waiting import wait_for

pytestmark = pytest.mark.postgres

NEVER = 3600.0  # the poll interval: a fallback read never comes within a test
BOUND = 1.0  # seconds from the commit to the event on a console


@dataclass
class Api:
    base: str
    hub: FeedHub
    server: BackgroundApi

    def feed(self) -> SseReader:
        token = TOKENS["dispatcher"].token.get_secret_value()
        return SseReader(f"{self.base}/api/v1/feed", {"Authorization": f"Bearer {token}"})


@dataclass
class Cluster:
    url: str
    apis: list[Api]
    writer: IngestRig
    edge: EventFactory

    def store_case(self) -> float:
        """Stores one case (register + dispatch); returns the time of the commit."""
        self.writer.service.store(self.edge.event())
        return time.monotonic()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_scratch_database()


@pytest.fixture
def cluster(postgres_url: str, tmp_path: Path) -> Iterator[Cluster]:
    with migrated_database(postgres_url) as (_engine, writer_sessions):
        writer = make_ingest(writer_sessions, tmp_path / "evidence")
        engines, apis = [], []
        try:
            for _ in range(2):
                engine = make_engine(postgres_url)
                engines.append(engine)
                app = create_app(
                    ApiContext(
                        session_factory=make_session_factory(engine),
                        evidence_store=writer.evidence_store,
                        settings=ApiSettings(tokens=list(TOKENS.values())),
                        registry=writer.registry,
                        metrics_registry=writer.metrics.registry,
                        workflow=Workflow(),
                        web=WebOptions(feed_poll_seconds=NEVER, feed_heartbeat_seconds=5),
                    )
                )
                port = free_port()
                server = BackgroundApi(app, "127.0.0.1", port)
                server.start()
                apis.append(Api(f"http://127.0.0.1:{port}", app.state.feed_hub, server))
            yield Cluster(postgres_url, apis, writer, EventFactory())
        finally:
            for api in apis:
                api.server.stop()
                api.hub.close()
            for engine in engines:
                engine.dispose()


def test_an_entry_reaches_the_consoles_of_both_apps_by_notification(cluster: Cluster) -> None:
    readers = [api.feed() for api in cluster.apis for _ in range(2)]
    try:
        assert all(api.hub.listens for api in cluster.apis)
        wait_for(lambda: all(api.hub.listener_pid for api in cluster.apis), 5.0)
        polls = [api.hub.polls for api in cluster.apis]
        stored = cluster.store_case()
        for reader in readers:
            events = reader.events(2, timeout=BOUND)
            took = time.monotonic() - stored
            assert [e["json"]["action"] for e in events] == ["register", "dispatch"], (
                f"{len(events)} of 2 events within {BOUND} s"
            )
            assert took < BOUND, f"the case took {took:.2f} s to reach a console"
        for api, before in zip(cluster.apis, polls, strict=True):
            assert api.hub.notifications >= 1
            # One read of the log per notification: a burst of consoles does not multiply it.
            assert api.hub.polls - before <= api.hub.notifications
    finally:
        for reader in readers:
            reader.close()


def test_a_killed_listening_connection_reconnects_and_delivers_what_was_missed(
    cluster: Cluster,
) -> None:
    victim, other = cluster.apis
    readers = [victim.feed(), other.feed()]
    admin = create_engine(cluster.url, isolation_level="AUTOCOMMIT")
    try:
        wait_for(lambda: victim.hub.listener_pid is not None, 5.0)
        first_pid, connects = victim.hub.listener_pid, victim.hub.connects
        with admin.connect() as connection:
            killed = connection.execute(
                text("SELECT pg_terminate_backend(:pid)"), {"pid": first_pid}
            ).scalar()
        assert killed is True
        cluster.store_case()  # while the victim may still be without its listener
        for reader in readers:
            events = reader.events(2, timeout=5.0)
            assert [e["json"]["action"] for e in events] == ["register", "dispatch"]
        wait_for(lambda: victim.hub.connects > connects, 5.0)
        wait_for(lambda: victim.hub.listener_pid not in (None, first_pid), 5.0)
        # Listening again: the next case arrives by notification (the poll interval is an hour).
        stored = cluster.store_case()
        for reader in readers:
            events = reader.events(2, timeout=BOUND)
            assert [e["json"]["action"] for e in events] == ["register", "dispatch"]
        assert time.monotonic() - stored < BOUND + 0.5
        seqs = [e["json"]["seq"] for e in events]
        assert seqs == sorted(seqs)
    finally:
        admin.dispose()
        for reader in readers:
            reader.close()


def test_the_notification_only_says_look_now(cluster: Cluster) -> None:
    """A notification with no new entry delivers nothing; a rolled-back append sends none; the
    next committed one delivers its entries."""
    api = cluster.apis[0]
    reader = api.feed()
    admin = create_engine(cluster.url, isolation_level="AUTOCOMMIT")
    try:
        wait_for(lambda: api.hub.listener_pid is not None, 5.0)
        before = api.hub.notifications
        with admin.connect() as connection:
            connection.execute(
                text("SELECT pg_notify(:channel, '999999')"), {"channel": FEED_CHANNEL}
            )
        wait_for(lambda: api.hub.notifications > before, 5.0)
        assert reader.events(1, timeout=0.5) == []

        before = api.hub.notifications
        with cluster.writer.session_factory() as session:
            entry = {"case_id": 1, "action": "note", "at": datetime.now(UTC)}
            chain_entries(session, [entry])  # moves the head and queues the notification...
            session.rollback()  # ...which the rollback drops with it
        time.sleep(0.5)
        assert api.hub.notifications == before

        stored = cluster.store_case()
        events = reader.events(2, timeout=BOUND)
        assert [e["json"]["action"] for e in events] == ["register", "dispatch"]
        assert time.monotonic() - stored < BOUND + 0.5
    finally:
        admin.dispose()
        reader.close()


def test_the_hub_listens_on_postgresql_only(database_url: str) -> None:
    with migrated_database(database_url) as (engine, sessions):
        assert FeedHub(sessions, 0.2).listens is (engine.dialect.name == "postgresql")


def test_while_the_listener_cannot_reconnect_the_reader_backs_off_and_still_delivers(
    cluster: Cluster,
) -> None:
    """The database refuses new connections (ALLOW_CONNECTIONS false; pooled ones stay): the
    killed listener's attempts fail and back off, each failed attempt is followed by a read of
    the log (the catch-up), and once connections are allowed again it listens again."""
    api = cluster.apis[0]
    reader = api.feed()
    # Connected to the admin database: one cannot refuse connections to a database one is in.
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = make_url(cluster.url).database
    try:
        wait_for(lambda: api.hub.listener_pid is not None, 5.0)
        cluster.store_case()  # the writer's and the app's pools hold a connection from here on
        assert len(reader.events(2, timeout=BOUND)) == 2
        connects, pid = api.hub.connects, api.hub.listener_pid
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        try:
            wait_for(lambda: api.hub.listener_pid is None, 5.0)
            cluster.store_case()  # no listener anywhere can hear this one
            events = reader.events(2, timeout=5.0)
            assert [e["json"]["action"] for e in events] == ["register", "dispatch"]
            assert api.hub.connects == connects  # it was the catch-up read, not a new listener
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        # Back within the backoff's ceiling (10 s) plus a margin.
        wait_for(lambda: api.hub.connects > connects, timeout=15.0)
        stored = cluster.store_case()
        events = reader.events(2, timeout=BOUND)
        assert [e["json"]["action"] for e in events] == ["register", "dispatch"]
        assert time.monotonic() - stored < BOUND + 0.5
    finally:
        admin.dispose()
        reader.close()
