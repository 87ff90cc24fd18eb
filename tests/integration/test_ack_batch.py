"""Batched acks through a real Mosquitto: ingest answers a committed batch with one message per
gateway that announced ``ack_batch``, singles to any other; the edge settles either form."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from contracts.mqtt import make_client
from contracts.status import GatewayState, GatewayStatus
from contracts.topics import VIOLATION_SUBSCRIPTION, ack_topic, gateway_status_topic
from edge.outbox import Outbox
from edge.publisher import EdgePublisher
from ingest.config import IngestSettings
from ingest.consumer import IngestConsumer
from tests.conftest import MosquittoProcess
from tests.factories import (
    GATEWAY,
    OTHER_CAMERA,
    OTHER_GATEWAY,
    OTHER_SITE,
    SITE,
    EventFactory,
    IngestRig,
    make_ingest,
    migrated_database,
)
from tests.waiting import wait_for

TIMEOUT = 15.0
N = 25


class Spy:
    """A plain client that records every raw payload on the given topics, in arrival order."""

    def __init__(self, mosquitto: MosquittoProcess, topics: list[str]) -> None:
        self.payloads: dict[str, list[bytes]] = {topic: [] for topic in topics}
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = make_client(mosquitto.settings, f"spy-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.connect(mosquitto.settings.host, mosquitto.settings.port)
        self.client.loop_start()
        self.client.subscribe([(topic, 1) for topic in topics])
        assert subscribed.wait(TIMEOUT), "the spy could not subscribe"

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            for topic in self.payloads:
                if mqtt.topic_matches_sub(topic, message.topic):
                    self.payloads[topic].append(bytes(message.payload))

    def count(self, topic: str) -> int:
        with self._lock:
            return len(self.payloads[topic])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def rig(database_url: str, tmp_path: Path) -> Iterator[IngestRig]:
    with migrated_database(database_url) as (_engine, sessions):
        yield make_ingest(sessions, tmp_path / "evidence")


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.sqlite")
    yield box
    box.close()


def make_consumer(mosquitto: MosquittoProcess, rig: IngestRig) -> IngestConsumer:
    # A long batch wait: the whole backlog lands in one transaction, whatever the machine's load.
    settings = IngestSettings(
        client_id="ingest-ack-batch", session_expiry_seconds=600, batch_max_wait_ms=1_500
    )
    return IngestConsumer(mosquitto.settings, settings, rig.service, rig.registry, rig.metrics)


def queue_backlog(mosquitto: MosquittoProcess, rig: IngestRig, publish: Callable[[], None]) -> None:
    """Make ingest's persistent session, then ``publish`` while ingest is away: the backlog
    arrives at once when ingest comes back."""
    consumer = make_consumer(mosquitto, rig)
    consumer.start()
    assert consumer.ready.wait(TIMEOUT)
    consumer.stop()
    publish()


def test_a_batch_from_one_gateway_is_settled_by_one_ack_message(
    mosquitto: MosquittoProcess, rig: IngestRig, outbox: Outbox
) -> None:
    factory = EventFactory()
    events = [factory.event(frames=1) for _ in range(N)]
    for event in events:
        outbox.add(factory.topic, event)
    spy = Spy(mosquitto, [ack_topic(SITE, GATEWAY), VIOLATION_SUBSCRIPTION])
    publisher = EdgePublisher(mosquitto.settings, SITE, GATEWAY, outbox, resend_after_seconds=60)

    def publish() -> None:
        publisher.start()
        wait_for(lambda: publisher.connected, TIMEOUT)
        assert publisher.flush_due() == N
        wait_for(
            lambda: spy.count(VIOLATION_SUBSCRIPTION) == N, TIMEOUT, what="events at the broker"
        )

    queue_backlog(mosquitto, rig, publish)
    consumer = make_consumer(mosquitto, rig)
    consumer.start()
    try:
        wait_for(lambda: outbox.pending_count() == 0, TIMEOUT, what="the outbox settled")
        assert publisher.confirmed == N
        assert publisher.bad_acks == 0
        time.sleep(0.5)  # nothing more arrives
        acks = spy.payloads[ack_topic(SITE, GATEWAY)]
        assert len(acks) == 1, f"{len(acks)} ack messages for one batch"
        items = json.loads(acks[0])["acks"]
        assert [item["message_id"] for item in items] == [str(e.message_id) for e in events]
        assert {item["outcome"] for item in items} == {"stored"}
    finally:
        consumer.stop()
        publisher.stop()
        spy.close()


def test_a_gateway_that_does_not_announce_batches_gets_one_ack_per_message(
    mosquitto: MosquittoProcess, rig: IngestRig
) -> None:
    """An older gateway's status has no ack_batch: it is answered as before."""
    factory = EventFactory()
    events = [factory.event(frames=1) for _ in range(N)]
    spy = Spy(mosquitto, [ack_topic(SITE, GATEWAY)])
    old = GatewayStatus(site_id=SITE, gateway_id=GATEWAY, state=GatewayState.ONLINE)
    assert b"ack_batch" in old.to_wire()  # absent on an older gateway's wire: remove it
    old_wire = json.dumps(
        {k: v for k, v in json.loads(old.to_wire()).items() if k != "ack_batch"}
    ).encode()

    def publish() -> None:
        gateway = make_client(mosquitto.settings, f"old-gw-{uuid.uuid4().hex[:6]}")
        gateway.connect(mosquitto.settings.host, mosquitto.settings.port)
        gateway.loop_start()
        status_topic = gateway_status_topic(SITE, GATEWAY)
        gateway.publish(status_topic, old_wire, qos=1, retain=True).wait_for_publish(TIMEOUT)
        for event in events:
            gateway.publish(factory.topic, event.to_wire(), qos=1).wait_for_publish(TIMEOUT)
        gateway.disconnect()
        gateway.loop_stop()

    queue_backlog(mosquitto, rig, publish)
    consumer = make_consumer(mosquitto, rig)
    consumer.start()
    try:
        wait_for(lambda: spy.count(ack_topic(SITE, GATEWAY)) == N, TIMEOUT, what="one ack each")
        acks = [json.loads(p) for p in spy.payloads[ack_topic(SITE, GATEWAY)]]
        assert [a["message_id"] for a in acks] == [str(e.message_id) for e in events]
        assert rig.metrics.value("civicwatch_ingest_batch_messages_count") <= 2  # still batched
    finally:
        consumer.stop()
        spy.close()


def test_the_edge_applies_a_batch_whole_or_not_at_all(
    mosquitto: MosquittoProcess, outbox: Outbox
) -> None:
    """A batch with one malformed item is one bad ack that settles nothing; then a good batch
    settles all, and an old-style single still settles."""
    factory = EventFactory()
    events = [factory.event(frames=1) for _ in range(4)]
    for event in events:
        outbox.add(factory.topic, event)
    publisher = EdgePublisher(mosquitto.settings, SITE, GATEWAY, outbox, resend_after_seconds=60)
    server = make_client(mosquitto.settings, f"server-{uuid.uuid4().hex[:6]}")
    server.connect(mosquitto.settings.host, mosquitto.settings.port)
    server.loop_start()

    def send(payload: bytes) -> None:
        server.publish(ack_topic(SITE, GATEWAY), payload, qos=1).wait_for_publish(TIMEOUT)

    def item(message_id: uuid.UUID, outcome: str = "stored") -> dict[str, str]:
        return {"message_id": str(message_id), "outcome": outcome, "reason": ""}

    publisher.start()
    try:
        wait_for(lambda: publisher.connected, TIMEOUT)
        ids = [event.message_id for event in events]
        bad = {"acks": [item(ids[0]), item(ids[1]), {"message_id": str(ids[2]), "outcome": 5}]}
        send(json.dumps(bad).encode())
        send(b'{"acks": [' + b"[" * 1000 + b"]" * 1000 + b"]}")
        wait_for(lambda: publisher.bad_acks == 2, TIMEOUT)
        assert outbox.pending_count() == 4, "nothing of a bad batch is applied"
        assert publisher.confirmed == 0

        send(json.dumps({"acks": [item(ids[0]), item(ids[1], "rejected"), item(ids[2])]}).encode())
        wait_for(lambda: outbox.pending_count() == 1, TIMEOUT)
        assert (publisher.confirmed, publisher.rejected) == (2, 1)
        assert [message_id for message_id, _ in outbox.rejected()] == [ids[1]]
        send(json.dumps(item(ids[3], "duplicate")).encode())  # a single, as old servers send
        wait_for(lambda: outbox.pending_count() == 0, TIMEOUT)
        assert (publisher.confirmed, publisher.bad_acks) == (3, 2)
    finally:
        publisher.stop()
        server.disconnect()
        server.loop_stop()


def test_each_gateway_of_a_batch_is_answered_in_its_own_form(
    mosquitto: MosquittoProcess, rig: IngestRig
) -> None:
    """One transaction holds two gateways' events, interleaved, one rejected: the gateway that
    announced ack_batch gets one message with its acks in arrival order (the rejection in
    place), the other one ack per message."""
    new = EventFactory()
    old = EventFactory(site_id=OTHER_SITE, gateway_id=OTHER_GATEWAY, camera_id=OTHER_CAMERA)
    new_events = [new.event(frames=1) for _ in range(6)]
    new_events[3] = new_events[3].model_copy(update={"schema_version": "2.0"})  # rejected
    old_events = [old.event(frames=1) for _ in range(4)]
    new_ack, old_ack = ack_topic(SITE, GATEWAY), ack_topic(OTHER_SITE, OTHER_GATEWAY)
    spy = Spy(mosquitto, [new_ack, old_ack])

    def publish() -> None:
        client = make_client(mosquitto.settings, f"gateways-{uuid.uuid4().hex[:6]}")
        client.connect(mosquitto.settings.host, mosquitto.settings.port)
        client.loop_start()
        announced = GatewayStatus(
            site_id=SITE, gateway_id=GATEWAY, state=GatewayState.ONLINE, ack_batch=True
        )
        infos = [client.publish(gateway_status_topic(SITE, GATEWAY), announced.to_wire(), 1, True)]
        for index, event in enumerate(new_events):
            infos.append(client.publish(new.topic, event.to_wire(), qos=1))
            if index < len(old_events):
                infos.append(client.publish(old.topic, old_events[index].to_wire(), qos=1))
        for info in infos:
            info.wait_for_publish(TIMEOUT)
        client.disconnect()
        client.loop_stop()

    queue_backlog(mosquitto, rig, publish)
    consumer = make_consumer(mosquitto, rig)
    consumer.start()
    try:
        wait_for(lambda: spy.count(new_ack) >= 1 and spy.count(old_ack) == 4, TIMEOUT)
        time.sleep(0.5)
        assert rig.metrics.value("civicwatch_ingest_batch_messages_count") == 1, "one batch"
        [batched] = [json.loads(p)["acks"] for p in spy.payloads[new_ack]]
        assert [a["message_id"] for a in batched] == [str(e.message_id) for e in new_events]
        assert [a["outcome"] for a in batched] == ["stored"] * 3 + ["rejected"] + ["stored"] * 2
        singles = [json.loads(p) for p in spy.payloads[old_ack]]
        assert [a["message_id"] for a in singles] == [str(e.message_id) for e in old_events]
    finally:
        consumer.stop()
        spy.close()
