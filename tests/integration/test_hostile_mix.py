"""10,000 valid and hostile messages through a real broker into a real server.

Every valid event must be stored exactly once; every hostile message must be refused with its
reason and counted, or (a conflicting duplicate) kept out and counted; nothing may stall ingest
or make the server unready.
"""

from __future__ import annotations

import json
import queue
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from civicwatch.config import CivicwatchConfig, ServerSettings
from civicwatch.server import Server, build_server
from contracts.acks import AckOutcome, IngestAck
from contracts.events import Phase, ViolationEvent
from contracts.mqtt import make_client
from contracts.status import CameraHealth, CameraStatus, GatewayState, GatewayStatus
from contracts.topics import ack_topic, camera_status_topic, gateway_status_topic
from ingest.config import IngestSettings
from ingest.validation import RefusalReason
from storage.tables import CameraStatusRow, Event, GatewayStatusRow
from tests.conftest import MosquittoProcess
from tests.factories import (
    CAMERA,
    GATEWAY,
    OTHER_CAMERA,
    OTHER_GATEWAY,
    OTHER_SITE,
    SITE,
    T0,
    EventFactory,
    make_registry,
)
from tests.integration.test_ingest_hostile import NESTED, SCRIPT, _with_frame

TOTAL = 10_000
MAX_PAYLOAD = 64 * 1024
SETTLE_TIMEOUT = 150.0
PHASES_PER_VIOLATION = 10  # messages of one violation (one case) per camera

# Hostile messages of each kind, and what they must end as (the rest of TOTAL is valid).
HOSTILE: dict[str, tuple[int, str]] = {
    "nested": (1000, RefusalReason.NESTING),
    "oversize": (100, RefusalReason.OVERSIZE),
    "wrong_types": (1200, RefusalReason.INVALID),
    "garbage": (700, RefusalReason.MALFORMED_JSON),
    "huge_sequence": (800, RefusalReason.SEQUENCE_JUMP),
    "bad_content_type": (800, RefusalReason.EVIDENCE_TYPE),
    "forged_violation_topic": (400, RefusalReason.TOPIC_MISMATCH),
    "forged_status": (600, RefusalReason.TOPIC_MISMATCH),
    "conflicting_duplicate": (400, "duplicate_conflict"),
}
VALID = TOTAL - sum(count for count, _ in HOSTILE.values())


@dataclass
class Mix:
    """The messages in publishing order, and what each should become."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)
    valid: set[UUID] = field(default_factory=set)
    rejected: set[UUID] = field(default_factory=set)  # hostile messages that name an id
    conflicting: set[UUID] = field(default_factory=set)


def _build_mix(rng: random.Random) -> tuple[list[tuple[str, bytes]], Mix]:
    """(seed messages, the mix): one valid event per camera first, so jumps have a base."""
    cameras = [
        EventFactory(),
        EventFactory(site_id=OTHER_SITE, gateway_id=OTHER_GATEWAY, camera_id=OTHER_CAMERA),
    ]
    # One tiny real JPEG for every valid event: the point is the ingest path, not the disk.
    templates = [factory.event(frames=1) for factory in cameras]
    mix = Mix()

    violations = [uuid4(), uuid4()]

    def valid_event(index: int) -> tuple[str, ViolationEvent]:
        factory = cameras[index % 2]
        opens = factory.next_sequence % PHASES_PER_VIOLATION == 0  # opened, then updates
        if opens:
            violations[index % 2] = uuid4()
        event = templates[index % 2].model_copy(
            update={
                "phase": Phase.OPENED if opens else Phase.UPDATED,
                "message_id": uuid4(),
                "violation_id": violations[index % 2],
                "sequence": factory.next_sequence,
            }
        )
        factory.next_sequence += 1
        return factory.topic, event

    seeds = []
    for index in range(2):
        topic, event = valid_event(index)
        seeds.append((topic, event.to_wire()))
        mix.valid.add(event.message_id)
    body: list[tuple[str, bytes]] = []
    originals: list[tuple[str, ViolationEvent]] = []
    for index in range(VALID - 2):
        topic, event = valid_event(index)
        body.append((topic, event.to_wire()))
        mix.valid.add(event.message_id)
        originals.append((topic, event))

    def hostile_event(index: int) -> tuple[str, ViolationEvent]:
        factory = cameras[index % 2]
        event = templates[index % 2].model_copy(
            update={"message_id": uuid4(), "violation_id": uuid4()}
        )
        mix.rejected.add(event.message_id)
        return factory.topic, event

    for index in range(HOSTILE["nested"][0]):
        body.append((cameras[index % 2].topic, NESTED))
    for index in range(HOSTILE["oversize"][0]):
        topic, event = hostile_event(index)
        document = json.loads(event.to_wire())
        document["padding"] = "x" * MAX_PAYLOAD
        body.append((topic, json.dumps(document).encode()))
    for index in range(HOSTILE["wrong_types"][0]):
        topic, event = hostile_event(index)
        document = json.loads(event.to_wire())
        field_name, value = rng.choice(
            [("sequence", "seven"), ("dwell_seconds", [1]), ("object", 3), ("evidence", {})]
        )
        document[field_name] = value
        body.append((topic, json.dumps(document).encode()))
    for index in range(HOSTILE["garbage"][0]):
        body.append((cameras[index % 2].topic, rng.randbytes(64)))
    for index in range(HOSTILE["huge_sequence"][0]):
        topic, event = hostile_event(index)
        jump = event.model_copy(update={"sequence": rng.choice([2**62, 2**63 - 1, 10**12])})
        body.append((topic, jump.to_wire()))
    for index in range(HOSTILE["bad_content_type"][0]):
        topic, event = hostile_event(index)
        declared = rng.choice(["text/html", "image/jpeg", "image/png"])
        body.append((topic, _with_frame(event.to_wire(), declared, SCRIPT, None)))
    for index in range(HOSTILE["forged_violation_topic"][0]):
        _topic, event = hostile_event(index)
        body.append((cameras[(index + 1) % 2].topic, event.to_wire()))  # the other's topic
    for index in range(HOSTILE["forged_status"][0]):
        if index % 2:  # gw-a1, on its own topic, says it is gw-b1
            forged: GatewayStatus | CameraStatus = GatewayStatus(
                site_id=OTHER_SITE, gateway_id=OTHER_GATEWAY, state=GatewayState.OFFLINE, at=T0
            )
            body.append((gateway_status_topic(SITE, GATEWAY), forged.to_wire()))
        else:  # and sets cam-b1's health from its own camera's topic
            forged = CameraStatus(
                site_id=OTHER_SITE,
                gateway_id=OTHER_GATEWAY,
                camera_id=OTHER_CAMERA,
                health=CameraHealth.OFFLINE,
                at=T0,
            )
            body.append((camera_status_topic(SITE, GATEWAY, CAMERA), forged.to_wire()))
    rng.shuffle(body)
    # Last, so their originals (published earlier on the same connection) are stored first.
    for topic, original in rng.sample(originals, HOSTILE["conflicting_duplicate"][0]):
        changed = original.model_copy(update={"dwell_seconds": original.dwell_seconds + 1})
        body.append((topic, changed.to_wire()))
        mix.conflicting.add(original.message_id)
    mix.messages = body
    return seeds, mix


@dataclass
class Gateway:
    client: mqtt.Client
    acks: queue.SimpleQueue[IngestAck]

    def publish_all(self, messages: list[tuple[str, bytes]]) -> None:
        sent = [self.client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in sent:
            info.wait_for_publish(60)

    def drain(self) -> dict[UUID, list[AckOutcome]]:
        answers: dict[UUID, list[AckOutcome]] = defaultdict(list)
        while True:
            try:
                ack = self.acks.get_nowait()
            except queue.Empty:
                return answers
            answers[ack.message_id].append(ack.outcome)


@pytest.fixture
def gateway(mosquitto: MosquittoProcess) -> Iterator[Gateway]:
    """One client standing in for both gateways (the private broker has no ACL)."""
    acks: queue.SimpleQueue[IngestAck] = queue.SimpleQueue()
    subscribed: queue.SimpleQueue[bool] = queue.SimpleQueue()
    client = make_client(mosquitto.settings, f"hostile-{uuid4().hex[:8]}")
    client.max_inflight_messages_set(500)
    client.max_queued_messages_set(0)

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        acks.put(IngestAck.model_validate_json(message.payload))

    client.on_message = on_message
    client.on_subscribe = lambda *_args: subscribed.put(True)
    client.connect(mosquitto.settings.host, mosquitto.settings.port)
    client.loop_start()
    client.subscribe([(ack_topic(SITE, GATEWAY), 1), (ack_topic(OTHER_SITE, OTHER_GATEWAY), 1)])
    subscribed.get(timeout=10)
    yield Gateway(client, acks)
    client.disconnect()
    client.loop_stop()


def _metrics(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _settled(server: Server) -> float:
    metrics = server.metrics
    refused = sum(metrics.refusal_count(reason) for reason in RefusalReason)
    return (
        metrics.value("civicwatch_ingest_events_stored_total")
        + metrics.value("civicwatch_ingest_duplicates_total")
        + refused
    )


def test_ten_thousand_valid_and_hostile_messages(
    tmp_path: Path, mosquitto: MosquittoProcess, gateway: Gateway
) -> None:
    seeds, mix = _build_mix(random.Random(10))
    assert len(seeds) + len(mix.messages) == TOTAL
    config = CivicwatchConfig(
        sites=make_registry().sites,
        broker=mosquitto.settings,
        server=ServerSettings(
            database_url=f"sqlite:///{tmp_path / 'mix.db'}",
            ingest=IngestSettings(
                client_id="ingest-hostile-mix",
                evidence_dir=tmp_path / "evidence",
                max_payload_bytes=MAX_PAYLOAD,
            ),
        ),
    )
    server = build_server(config)
    client = TestClient(server.app)
    server.start()
    try:
        assert server.consumer.ready.wait(10)
        honest = GatewayStatus(
            site_id=OTHER_SITE, gateway_id=OTHER_GATEWAY, state=GatewayState.ONLINE, at=T0
        )
        gateway.publish_all([(gateway_status_topic(OTHER_SITE, OTHER_GATEWAY), honest.to_wire())])
        gateway.publish_all(seeds)
        deadline = time.monotonic() + 20
        while server.metrics.value("civicwatch_ingest_events_stored_total") < len(seeds):
            assert time.monotonic() < deadline, "the seed events were not stored"
            time.sleep(0.05)

        started = time.monotonic()
        gateway.publish_all(mix.messages)
        published = time.monotonic() - started
        while _settled(server) < TOTAL:  # each message stored, a duplicate, or refused
            assert time.monotonic() - started < SETTLE_TIMEOUT, (
                f"only {_settled(server)} of {TOTAL} messages settled"
            )
            time.sleep(0.2)
        elapsed = time.monotonic() - started

        samples = _metrics(client)
        refusals = "civicwatch_ingest_refusals_total"
        expected_refusals: Counter[str] = Counter()
        for count, reason in HOSTILE.values():
            if reason in set(RefusalReason):
                expected_refusals[reason] += count
        for reason, count in expected_refusals.items():
            assert _value(samples, refusals, reason=reason) == count, reason
        total_refused = sum(v for (name, _), v in samples.items() if name == refusals)
        assert total_refused == sum(expected_refusals.values())  # nothing else refused
        assert _value(samples, "civicwatch_ingest_events_stored_total") == VALID
        conflicts = HOSTILE["conflicting_duplicate"][0]
        assert _value(samples, "civicwatch_ingest_duplicates_total") == conflicts
        assert _value(samples, "civicwatch_ingest_duplicate_conflicts_total") == conflicts
        assert _value(samples, "civicwatch_ingest_store_failures_total", kind="bug") == 0
        assert _value(samples, "civicwatch_ingest_sequence_missing") == 0

        with server.session_factory() as session:
            stored = session.execute(select(Event.message_id)).scalars().all()
            assert len(stored) == len(set(stored)) == VALID
            assert set(stored) == mix.valid
            gateway_row = session.get(GatewayStatusRow, OTHER_GATEWAY)
            assert gateway_row is not None
            assert gateway_row.state == GatewayState.ONLINE  # the forgeries changed nothing
            assert (
                session.scalar(
                    select(func.count())
                    .select_from(CameraStatusRow)
                    .where(CameraStatusRow.camera_id == OTHER_CAMERA)
                )
                == 0
            )

        # The edge was told: stored once each, conflicts as duplicates, hostile ids rejected.
        deadline = time.monotonic() + 20
        answers: dict[UUID, list[AckOutcome]] = defaultdict(list)
        wanted = len(mix.valid) + conflicts + len(mix.rejected)
        while sum(len(outcomes) for outcomes in answers.values()) < wanted:
            assert time.monotonic() < deadline, "acks missing"
            for message_id, outcomes in gateway.drain().items():
                answers[message_id] += outcomes
            time.sleep(0.05)
        for message_id in mix.valid:
            expected_acks = [AckOutcome.STORED]
            if message_id in mix.conflicting:
                expected_acks.append(AckOutcome.DUPLICATE)
            assert answers[message_id] == expected_acks, message_id
        assert all(answers[message_id] == [AckOutcome.REJECTED] for message_id in mix.rejected)
        assert client.get("/readyz").status_code == 200
        print(
            f"{len(mix.messages)} messages published in {published:.1f}s, settled in {elapsed:.1f}s"
        )
    finally:
        server.stop()
