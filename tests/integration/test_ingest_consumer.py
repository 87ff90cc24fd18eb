"""The consumer against a private Mosquitto: stored, acked, refusals survived, session kept."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from contracts.acks import AckOutcome, IngestAck
from contracts.mqtt import make_client
from contracts.status import CameraHealth, CameraStatus
from contracts.topics import ack_topic, camera_status_topic
from ingest.config import IngestSettings
from ingest.consumer import IngestConsumer
from ingest.validation import RefusalReason
from storage.tables import CameraStatusRow, Event
from tests.conftest import MosquittoProcess
from tests.factories import (
    CAMERA,
    GATEWAY,
    SITE,
    T0,
    EventFactory,
    IngestRig,
    make_ingest,
    migrated_database,
)
from tests.waiting import wait_for

TIMEOUT = 10.0


@dataclass
class Edge:
    """A plain paho client playing the gateway: publishes events, collects ingest's acks."""

    client: mqtt.Client
    acks: queue.Queue[IngestAck]

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(TIMEOUT)

    def next_ack(self) -> IngestAck:
        return self.acks.get(timeout=TIMEOUT)


@pytest.fixture
def rig(database_url: str, tmp_path: Path) -> Iterator[IngestRig]:
    with migrated_database(database_url) as (_engine, sessions):
        yield make_ingest(sessions, tmp_path / "evidence")


@pytest.fixture
def edge(mosquitto: MosquittoProcess) -> Iterator[Edge]:
    acks: queue.Queue[IngestAck] = queue.Queue()
    subscribed = queue.Queue[bool]()
    client = make_client(mosquitto.settings, f"edge-{uuid4().hex[:8]}")

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        acks.put(IngestAck.model_validate_json(message.payload))

    client.on_message = on_message
    client.on_subscribe = lambda *_args: subscribed.put(True)
    client.connect(mosquitto.settings.host, mosquitto.settings.port)
    client.loop_start()
    client.subscribe(ack_topic(SITE, GATEWAY), qos=1)
    subscribed.get(timeout=TIMEOUT)
    yield Edge(client, acks)
    client.disconnect()
    client.loop_stop()


def start_consumer(mosquitto: MosquittoProcess, rig: IngestRig, client_id: str) -> IngestConsumer:
    consumer = IngestConsumer(
        mosquitto.settings,
        IngestSettings(client_id=client_id, session_expiry_seconds=600),
        rig.service,
        rig.registry,
        rig.metrics,
    )
    consumer.start()
    assert consumer.ready.wait(TIMEOUT), "ingest did not connect and subscribe"
    return consumer


ROOMY_PAGES = 1_000_000


def fill_up(engine: Engine) -> dict[str, int]:
    """Cap the SQLite file at its current size, so the next write fails with SQLITE_FULL.

    The cap is applied on every checkout; set ``pages`` to ROOMY_PAGES to give space back.
    """
    limit = {"pages": ROOMY_PAGES}

    @sa_event.listens_for(engine, "checkout")
    def _cap_size(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA max_page_count = {limit['pages']}")
        cursor.close()

    with engine.connect() as connection:
        limit["pages"] = int(connection.exec_driver_sql("PRAGMA page_count").scalar() or 0)
    return limit


def stored_events(rig: IngestRig) -> int:
    with rig.session_factory() as session:
        return session.scalar(select(func.count()).select_from(Event)) or 0


def test_valid_event_is_stored_and_acked_garbage_is_survived(
    mosquitto: MosquittoProcess, rig: IngestRig, edge: Edge
) -> None:
    consumer = start_consumer(mosquitto, rig, "ingest-test")
    try:
        factory = EventFactory()
        first = factory.event()
        edge.publish(factory.topic, first.to_wire())
        ack = edge.next_ack()
        assert (ack.message_id, ack.outcome) == (first.message_id, AckOutcome.STORED)
        assert stored_events(rig) == 1  # the ack came after the commit

        edge.publish(factory.topic, b"\x00garbage{")
        wait_for(
            lambda: rig.metrics.refusal_count(RefusalReason.MALFORMED_JSON) == 1,
            TIMEOUT,
            "the refusal",
        )

        second = factory.event()
        edge.publish(factory.topic, second.to_wire())
        edge.publish(factory.topic, second.to_wire())  # the edge resent it: no ack seen in time
        acks = {edge.next_ack().outcome, edge.next_ack().outcome}
        assert acks == {AckOutcome.STORED, AckOutcome.DUPLICATE}
        assert stored_events(rig) == 2

        wrong_version = factory.event().model_copy(update={"schema_version": "2.0"})
        edge.publish(factory.topic, wrong_version.to_wire())
        rejected = edge.next_ack()
        assert rejected.message_id == wrong_version.message_id
        assert rejected.outcome is AckOutcome.REJECTED
        assert not rejected.settled
    finally:
        consumer.stop()


def test_messages_sent_while_ingest_is_down_arrive_after_restart(
    mosquitto: MosquittoProcess, rig: IngestRig, edge: Edge
) -> None:
    start_consumer(mosquitto, rig, "ingest-durable").stop()  # the broker now keeps a session
    factory = EventFactory()
    events = [factory.event() for _ in range(3)]
    for event in events:
        edge.publish(factory.topic, event.to_wire())
    consumer = start_consumer(mosquitto, rig, "ingest-durable")
    try:
        received = {edge.next_ack().message_id for _ in events}
        assert received == {event.message_id for event in events}
        assert stored_events(rig) == 3
    finally:
        consumer.stop()


def test_camera_status_is_kept_as_the_health_view(
    mosquitto: MosquittoProcess, rig: IngestRig, edge: Edge
) -> None:
    status = CameraStatus(
        site_id=SITE, gateway_id=GATEWAY, camera_id=CAMERA, health=CameraHealth.DEGRADED, at=T0
    )
    edge.publish(camera_status_topic(SITE, GATEWAY, CAMERA), status.to_wire(), retain=True)
    consumer = start_consumer(mosquitto, rig, "ingest-status")  # gets the retained status

    def health() -> str | None:
        with rig.session_factory() as session:
            row = session.get(CameraStatusRow, CAMERA)
            return row.health if row else None

    try:
        wait_for(lambda: health() == "degraded", TIMEOUT, "the camera status row")
    finally:
        consumer.stop()


def test_a_full_database_acks_nothing_until_space_returns(
    mosquitto: MosquittoProcess, edge: Edge, tmp_path: Path
) -> None:
    """SQLite's max_page_count makes the database 'full' for real (SQLITE_FULL on write)."""
    url = f"sqlite:///{tmp_path / 'small.db'}"
    with migrated_database(url) as (engine, sessions):
        limit = fill_up(engine)
        rig = make_ingest(sessions, tmp_path / "evidence")
        consumer = start_consumer(mosquitto, rig, "ingest-full")
        try:
            factory = EventFactory()
            events = [factory.event() for _ in range(5)]
            for item in events:
                edge.publish(factory.topic, item.to_wire())
            failures = {"kind": "transient"}
            wait_for(
                lambda: rig.metrics.value("civicwatch_ingest_store_failures_total", failures) >= 2,
                TIMEOUT,
                "retries against the full database",
            )
            assert edge.acks.empty()  # nothing confirmed that was not stored
            assert stored_events(rig) == 0

            limit["pages"] = ROOMY_PAGES  # space is back; the next retry gets a fresh checkout
            received = {edge.next_ack().message_id for _ in events}
            assert received == {item.message_id for item in events}
            assert stored_events(rig) == 5
        finally:
            consumer.stop()


def test_a_burst_is_stored_in_batches_and_every_message_is_acked(
    mosquitto: MosquittoProcess, rig: IngestRig, edge: Edge
) -> None:
    start_consumer(mosquitto, rig, "ingest-burst").stop()  # the broker now keeps a session
    factory = EventFactory()
    events = [factory.event(frames=1) for _ in range(300)]
    for item in events:  # queued at the broker while ingest is away: one backlog
        edge.client.publish(factory.topic, item.to_wire(), qos=1)
    consumer = start_consumer(mosquitto, rig, "ingest-burst")
    try:
        received = {edge.next_ack().message_id for _ in events}
        assert received == {item.message_id for item in events}
        assert stored_events(rig) == 300
        batches = rig.metrics.value("civicwatch_ingest_batch_messages_count")
        assert 0 < batches < 300  # several messages per transaction
    finally:
        consumer.stop()


def test_a_broker_restart_while_the_database_is_full_loses_and_misacks_nothing(
    mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    """The writer holds a batch it cannot commit, the broker restarts under it, space returns.

    The old connection's message ids mean nothing on the new one, so ingest must not ack them
    there; the broker redelivers the batch, which is then a set of duplicates, all settled.
    """
    url = f"sqlite:///{tmp_path / 'small.db'}"
    with migrated_database(url) as (engine, sessions):
        limit = fill_up(engine)
        rig = make_ingest(sessions, tmp_path / "evidence")
        consumer = start_consumer(mosquitto, rig, "ingest-restart")
        try:
            publisher = make_client(mosquitto.settings, "edge-restart")
            publisher.connect(mosquitto.settings.host, mosquitto.settings.port)
            publisher.loop_start()
            factory = EventFactory()
            events = [factory.event() for _ in range(5)]
            for item in events:
                publisher.publish(factory.topic, item.to_wire(), qos=1).wait_for_publish(TIMEOUT)
            publisher.disconnect()
            publisher.loop_stop()
            failures = {"kind": "transient"}
            wait_for(
                lambda: rig.metrics.value("civicwatch_ingest_store_failures_total", failures) >= 1,
                TIMEOUT,
                "the writer stuck on the full database",
            )

            mosquitto.stop()
            mosquitto.start()
            wait_for(consumer.ready.is_set, TIMEOUT, "ingest back on the restarted broker")
            limit["pages"] = ROOMY_PAGES
            wait_for(lambda: stored_events(rig) == 5, TIMEOUT, "the stuck batch stored")
            wait_for(
                lambda: rig.metrics.value("civicwatch_ingest_duplicates_total") == 5,
                TIMEOUT,
                "the redelivered batch settled as duplicates",
            )
        finally:
            consumer.stop()
        received = rig.metrics.value("civicwatch_ingest_events_received_total")
        again = start_consumer(mosquitto, rig, "ingest-restart")  # nothing left unacked
        try:
            time.sleep(1.0)
            assert rig.metrics.value("civicwatch_ingest_events_received_total") == received
            assert stored_events(rig) == 5
        finally:
            again.stop()
