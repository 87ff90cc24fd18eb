"""Binary event frames end to end: a gateway configured ``frame`` -> a real Mosquitto -> real
ingest on SQLite and PostgreSQL -> a stored case with readable evidence, and the gateway acked;
hostile frames refused, counted, and nothing of them stored."""

from __future__ import annotations

import hashlib
import struct
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import func, select

from contracts.acks import AckOutcome
from contracts.event_frame import FRAME_CONTENT_TYPE, FRAME_PREFIX, encode_event_frame
from contracts.events import Phase
from contracts.mqtt import make_client
from contracts.topics import VIOLATION_SUBSCRIPTION
from edge.outbox import Outbox
from edge.publisher import EdgePublisher
from ingest.validation import RefusalReason
from storage.evidence_packs import PackedAt
from storage.tables import Case, CaseEvidence, Event, Evidence
from tests.conftest import MosquittoProcess
from tests.factories import GATEWAY, SITE, EventFactory, IngestRig, make_ingest, migrated_database
from tests.integration import test_ingest_consumer as consumer_tests
from tests.unit.contracts.test_event_frame import real_size_jpeg
from tests.waiting import wait_for

TIMEOUT = 15.0
edge = consumer_tests.edge
Edge = consumer_tests.Edge


@pytest.fixture
def rig(database_url: str, tmp_path: Path) -> Iterator[IngestRig]:
    with migrated_database(database_url) as (_engine, sessions):
        yield make_ingest(sessions, tmp_path / "evidence", max_payload_bytes=4 * 1024 * 1024)


class Spy:
    """Records every violation message's payload and MQTT 5 content type as the broker sends."""

    def __init__(self, mosquitto: MosquittoProcess) -> None:
        self.seen: list[tuple[bytes, str | None]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = make_client(mosquitto.settings, f"spy-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_args: subscribed.set()
        self.client.connect(mosquitto.settings.host, mosquitto.settings.port)
        self.client.loop_start()
        self.client.subscribe(VIOLATION_SUBSCRIPTION, qos=1)
        assert subscribed.wait(TIMEOUT)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        content_type = getattr(message.properties, "ContentType", None)
        with self._lock:
            self.seen.append((bytes(message.payload), content_type))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def real_size_event(factory: EventFactory, frames: int = 3) -> Any:
    """An opened event with ``frames`` ~150 KB JPEGs."""
    event = factory.event(frames=frames)
    evidence = []
    for frame in event.evidence:
        data = real_size_jpeg()
        evidence.append(
            frame.model_copy(update={"data": data, "sha256": hashlib.sha256(data).hexdigest()})
        )
    return event.model_copy(update={"evidence": evidence})


def test_a_gateway_publishing_frames_gets_its_cases_stored_and_acked(
    mosquitto: MosquittoProcess, rig: IngestRig, tmp_path: Path
) -> None:
    factory = EventFactory()
    opened = real_size_event(factory)
    cleared = factory.event(phase=Phase.CLEARED, violation_id=opened.violation_id, frames=1)
    outbox = Outbox(tmp_path / "outbox.sqlite", event_encoding="frame")
    outbox.add(factory.topic, opened)
    # An hour old: published as historical, re-marked inside the frame.
    outbox.add(factory.topic, cleared, now=datetime.now(UTC) - timedelta(hours=1))
    spy = Spy(mosquitto)
    consumer = consumer_tests.start_consumer(mosquitto, rig, "ingest-frames")
    publisher = EdgePublisher(mosquitto.settings, SITE, GATEWAY, outbox, resend_after_seconds=60)
    publisher.start()
    try:
        wait_for(lambda: publisher.connected, TIMEOUT)
        assert publisher.flush_due() == 2
        wait_for(lambda: outbox.pending_count() == 0, TIMEOUT, what="ingest acked both")
        assert publisher.confirmed == 2
        assert publisher.rejected == 0
    finally:
        publisher.stop()
        consumer.stop()
        spy.close()
        outbox.close()
    assert [payload[:4] for payload, _ in spy.seen] == [FRAME_PREFIX, FRAME_PREFIX]
    assert {content_type for _, content_type in spy.seen} == {FRAME_CONTENT_TYPE}
    with rig.session_factory() as session:
        case = session.scalars(select(Case).where(Case.violation_id == opened.violation_id)).one()
        events = {e.message_id: e for e in session.scalars(select(Event))}
        rows = session.scalars(
            select(Evidence)
            .join(CaseEvidence, CaseEvidence.sha256 == Evidence.sha256)
            .where(CaseEvidence.case_id == case.id)
        ).all()
        stored = {
            row.sha256: rig.evidence_store.read(
                row.sha256, PackedAt.of(row.pack, row.pack_offset, row.size)
            )
            for row in rows
        }
    assert events[opened.message_id].historical is False
    assert events[cleared.message_id].historical is True
    assert "data" not in str(events[opened.message_id].payload["evidence"][0].keys())
    images = {frame.sha256: frame.data for frame in (*opened.evidence, *cleared.evidence)}
    assert stored == images  # every image readable, byte for byte


def _hostile_frames(valid: bytes) -> dict[str, bytes]:
    (length,) = struct.unpack(">I", valid[4:8])
    header, blobs = valid[8 : 8 + length], valid[8 + length :]
    return {
        "trailing": valid + b"\x00" * 10,
        "short-blobs": valid[:-10],
        "bad-version": b"CWF7" + valid[4:],
        "altered-image": valid[:-20] + bytes(b ^ 0xFF for b in valid[-20:]),
        "header-past-end": FRAME_PREFIX + struct.pack(">I", len(valid)) + header + blobs,
    }


def test_hostile_frames_are_refused_counted_and_store_nothing(
    mosquitto: MosquittoProcess, rig: IngestRig, edge: Edge
) -> None:
    factory = EventFactory()
    target = factory.event(frames=2)
    good = factory.event(frames=2)
    hostile = _hostile_frames(encode_event_frame(target))
    consumer = consumer_tests.start_consumer(mosquitto, rig, "ingest-frames")
    try:
        for payload in hostile.values():
            edge.publish(factory.topic, payload)
        edge.publish(factory.topic, encode_event_frame(good))
        # Every hostile one names the target (its message_id is read from the header's start
        # even where the frame is refused before its header is parsed), then the good one.
        acks = [edge.next_ack() for _ in range(len(hostile) + 1)]
        wait_for(
            lambda: (
                sum(
                    rig.metrics.refusal_count(reason)
                    for reason in (RefusalReason.MALFORMED_JSON, RefusalReason.EVIDENCE_HASH)
                )
                == len(hostile)
            ),
            TIMEOUT,
        )
    finally:
        consumer.stop()
    assert rig.metrics.refusal_count(RefusalReason.MALFORMED_JSON) == len(hostile) - 1
    assert rig.metrics.refusal_count(RefusalReason.EVIDENCE_HASH) == 1
    outcomes = {(ack.message_id, ack.outcome) for ack in acks}
    assert (good.message_id, AckOutcome.STORED) in outcomes
    assert (target.message_id, AckOutcome.REJECTED) in outcomes
    assert (target.message_id, AckOutcome.STORED) not in outcomes
    reasons = sorted(
        ack.reason.split(": ")[0] for ack in acks if ack.outcome is AckOutcome.REJECTED
    )
    assert reasons == ["evidence_hash"] + ["malformed_json"] * (len(hostile) - 1)
    with rig.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 1
        assert session.scalar(select(func.count()).select_from(Case)) == 1
        kept = set(session.scalars(select(Evidence.sha256)))
    assert kept == {frame.sha256 for frame in good.evidence}  # nothing of the hostile ones
