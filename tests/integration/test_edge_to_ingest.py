"""The edge's outbox and publisher against the real server over a real Mosquitto.

"Delivered" means stored by ingest: the outbox empties only when ingest's ack (sent after its
database commit) comes back. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from civicwatch.config import CivicwatchConfig, ServerSettings
from civicwatch.server import Server, build_server
from contracts.events import Phase
from edge.outbox import Outbox
from edge.publisher import EdgePublisher
from ingest.config import IngestSettings
from storage.tables import Case, Event
from tests.conftest import MosquittoProcess
from tests.factories import (
    GATEWAY,
    SITE,
    EventFactory,
    make_registry,
    start_from_migrated_template,
)


@pytest.fixture
def server(database_url: str, mosquitto: MosquittoProcess, tmp_path: Path) -> Iterator[Server]:
    config = CivicwatchConfig(
        sites=make_registry().sites,
        broker=mosquitto.settings,
        server=ServerSettings(
            database_url=database_url,
            ingest=IngestSettings(client_id="ingest-edge-test", evidence_dir=tmp_path / "ev"),
        ),
    )
    start_from_migrated_template(database_url)
    server = build_server(config)
    server.start()
    assert server.consumer.ready.wait(10)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def publisher(mosquitto: MosquittoProcess, tmp_path: Path) -> Iterator[EdgePublisher]:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    publisher = EdgePublisher(mosquitto.settings, SITE, GATEWAY, outbox, resend_after_seconds=2)
    publisher.start()
    try:
        yield publisher
    finally:
        publisher.stop()
        outbox.close()


def _flush_until_settled(publisher: EdgePublisher, outbox: Outbox, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while outbox.pending_count() and time.monotonic() < deadline:
        publisher.flush_due()
        time.sleep(0.1)


def test_events_are_confirmed_only_once_stored(
    server: Server, publisher: EdgePublisher, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")  # a second handle on the same file: what survives
    factory = EventFactory()
    opened = factory.event(frames=3)
    updated = factory.event(phase=Phase.UPDATED, violation_id=opened.violation_id)
    for event in (opened, updated):
        outbox.add(factory.topic, event)

    _flush_until_settled(publisher, outbox, timeout=20)

    assert outbox.pending_count() == 0
    assert publisher.confirmed == 2
    with server.session_factory() as session:
        stored = set(session.scalars(select(Event.message_id)))
        assert stored == {opened.message_id, updated.message_id}
        assert session.scalar(select(func.count()).select_from(Case)) == 1
    outbox.close()


def test_an_event_ingest_refuses_is_dead_lettered_not_resent(
    server: Server, publisher: EdgePublisher, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    factory = EventFactory()
    wrong_zone = factory.event().model_copy(update={"zone_id": "not-a-zone"})
    outbox.add(factory.topic, wrong_zone)

    _flush_until_settled(publisher, outbox, timeout=20)

    assert outbox.pending_count() == 0
    assert [message_id for message_id, _ in outbox.rejected()] == [wrong_zone.message_id]
    assert "unknown_zone" in outbox.rejected()[0][1]
    with server.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0
    outbox.close()
