"""Two ingest workers on one shared subscription and one database: each message stored once,
one case per incident even when the two cameras' sightings land on different workers.

Real Mosquitto (private broker), SQLite and PostgreSQL. Evidence images are small generated
JPEGs (ingest never decodes them).
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import func, select

from contracts.acks import AckOutcome, IngestAck
from contracts.events import Phase, ViolationEvent
from contracts.mqtt import make_client
from contracts.topics import ack_topic
from ingest.config import IngestSettings
from ingest.consumer import IngestConsumer, violation_subscription
from storage.database import SessionFactory
from storage.tables import Case, CaseViolation, Event
from tests.conftest import MosquittoProcess
from tests.factories import T0, migrated_database
from tests.unit.ingest.helpers import (
    GATEWAY,
    NORTH_CAMERA,
    SITE,
    SOUTH_CAMERA,
    ZONE,
    Rig,
    camera_factory,
    make_rig,
    with_plate,
)

TIMEOUT = 30.0
GROUP = "ingest-test"


@pytest.fixture
def sessions(database_url: str) -> Iterator[SessionFactory]:
    with migrated_database(database_url) as (_engine, session_factory):
        yield session_factory


def _start_worker(mosquitto: MosquittoProcess, rig: Rig, number: int) -> IngestConsumer:
    settings = IngestSettings(
        client_id="ingest", shared_group=GROUP, workers=2, session_expiry_seconds=600
    )
    consumer = IngestConsumer(
        mosquitto.settings,
        settings,
        rig.service,
        rig.registry,
        rig.metrics,
        client_id=f"ingest-{number}",
    )
    consumer.start()
    assert consumer.ready.wait(10), "worker did not connect and subscribe"
    return consumer


def test_the_shared_subscription_names_its_group() -> None:
    assert violation_subscription(None) == "civicwatch/v1/+/+/+/violation"
    assert violation_subscription("g1") == "$share/g1/civicwatch/v1/+/+/+/violation"


def test_two_workers_store_each_message_once_and_each_incident_as_one_case(
    mosquitto: MosquittoProcess, sessions: SessionFactory, tmp_path: Path
) -> None:
    # Two workers, as two processes would be: their own service, metrics and client id.
    rigs = [make_rig(sessions, tmp_path / "evidence") for _ in range(2)]
    workers = [_start_worker(mosquitto, rig, number) for number, rig in enumerate(rigs, 1)]
    acks: queue.Queue[IngestAck] = queue.Queue()
    edge = make_client(mosquitto.settings, f"edge-{uuid4().hex[:8]}")
    subscribed: queue.Queue[bool] = queue.Queue()

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        acks.put(IngestAck.model_validate_json(message.payload))

    edge.on_message = on_message
    edge.on_subscribe = lambda *_args: subscribed.put(True)
    edge.connect(mosquitto.settings.host, mosquitto.settings.port)
    edge.loop_start()
    try:
        edge.subscribe(ack_topic(SITE, GATEWAY), qos=1)
        subscribed.get(timeout=10)
        north, south = camera_factory(NORTH_CAMERA, 1), camera_factory(SOUTH_CAMERA, 10_000)
        published: list[ViolationEvent] = []
        incidents = 40
        for number in range(incidents):  # both cameras read the same plate: one incident
            plate = f"浙A{number:05d}"
            at = T0 + timedelta(minutes=number)
            pair = [
                with_plate(north.event(zone_id=ZONE, at=at), plate),
                with_plate(south.event(zone_id=ZONE, at=at), plate),
            ]
            updates = [
                with_plate(
                    factory.event(Phase.UPDATED, opened.violation_id, zone_id=ZONE, at=at),
                    plate,
                )
                for factory, opened in ((north, pair[0]), (south, pair[1]))
            ]
            published += pair + updates
        topics = {NORTH_CAMERA: north.topic, SOUTH_CAMERA: south.topic}
        sent = 0
        for item in published + published[::7]:  # every 7th message resent: duplicates
            edge.publish(topics[item.camera_id], item.to_wire(), qos=1)
            sent += 1

        outcomes = [acks.get(timeout=TIMEOUT) for _ in range(sent)]
        assert {ack.message_id for ack in outcomes} == {item.message_id for item in published}
        assert {ack.outcome for ack in outcomes} <= {AckOutcome.STORED, AckOutcome.DUPLICATE}
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(Event)) == len(published)
            assert session.scalar(select(func.count()).select_from(Case)) == incidents
            assert session.scalar(select(func.count()).select_from(CaseViolation)) == 2 * incidents
        for rig in rigs:  # both took part
            assert rig.metrics.value("civicwatch_ingest_events_received_total") > 0
    finally:
        edge.disconnect()
        edge.loop_stop()
        for worker in workers:
            worker.stop()
