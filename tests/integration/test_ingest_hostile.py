"""Hostile messages against the real consumer and store: none may stall, overflow or hide."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import insert, text

from civicwatch.config import CivicwatchConfig, ServerSettings
from civicwatch.server import build_server, ingest_readiness
from contracts.acks import AckOutcome
from contracts.topics import verify_result_topic
from ingest.config import IngestSettings
from ingest.consumer import FAILING_AFTER
from ingest.store import MAX_SEQUENCE_JUMP
from ingest.validation import MAX_JSON_DEPTH, Refusal, RefusalReason
from ingest.verification import parse_verification_result
from storage.routing import OpenedCase, RouteDecision
from storage.tables import Event, Evidence, SequenceGap
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
    IngestRig,
    jpeg_bytes,
    make_ingest,
    make_registry,
    migrated_database,
)
from tests.integration import test_ingest_consumer as consumer_tests
from tests.waiting import wait_for

# The consumer tests' fixtures: a migrated database with ingest wired, and a gateway client.
rig = consumer_tests.rig
edge = consumer_tests.edge
Edge = consumer_tests.Edge
start_consumer = consumer_tests.start_consumer
stored_events = consumer_tests.stored_events

MAX_PAYLOAD = 1024 * 1024
NESTED = b'{"a":' * 1100 + b"1" + b"}" * 1100


def test_a_deeply_nested_message_is_refused_alone_and_never_stalls_ingest(
    mosquitto: MosquittoProcess, rig: IngestRig, edge: Edge
) -> None:
    start_consumer(mosquitto, rig, "ingest-poison").stop()  # the broker now keeps a session
    factory = EventFactory()
    before, after = factory.event(frames=1), factory.event(frames=1)
    # Queued while ingest is away, so the poison and its neighbours arrive as one batch.
    edge.publish(factory.topic, before.to_wire())
    edge.publish(factory.topic, NESTED)
    edge.publish(factory.topic, b"[" * 40 + b"]" * 40)  # just past the bound, not past json's
    edge.publish(factory.topic, after.to_wire())
    consumer = start_consumer(mosquitto, rig, "ingest-poison")
    try:
        acked = {edge.next_ack().message_id for _ in range(2)}
        assert acked == {before.message_id, after.message_id}
        assert stored_events(rig) == 2
        wait_for(
            lambda: rig.metrics.refusal_count(RefusalReason.NESTING) == 2,
            consumer_tests.TIMEOUT,
            "2 refusals",
        )
        assert rig.metrics.value("civicwatch_ingest_store_failures_total", {"kind": "bug"}) == 0
    finally:
        consumer.stop()
    received = rig.metrics.value("civicwatch_ingest_events_received_total")
    again = start_consumer(mosquitto, rig, "ingest-poison")  # nothing left to redeliver
    try:
        time.sleep(1.0)
        assert rig.metrics.value("civicwatch_ingest_events_received_total") == received
    finally:
        again.stop()


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"[" * 5000, id="unclosed-arrays"),
        pytest.param(b'{"message_id": "' + b"\\" * 10 + b'"' + b"{" * 3000, id="escapes"),
        pytest.param(b'{"sequence": ' + b"9" * 5000 + b"}", id="huge-integer"),
        pytest.param(b"\xff\xfe" + NESTED, id="not-utf8"),
    ],
)
def test_no_payload_escapes_the_per_message_guard(rig: IngestRig, payload: bytes) -> None:
    factory = EventFactory()
    valid = factory.event(frames=1)
    acks = rig.handler.handle_batch([(factory.topic, payload), (factory.topic, valid.to_wire())])
    assert acks[0] is None  # no message_id to answer
    second = acks[1]
    assert second is not None
    assert second.outcome is AckOutcome.STORED
    refused = sum(
        rig.metrics.refusal_count(reason)
        for reason in (RefusalReason.NESTING, RefusalReason.MALFORMED_JSON, RefusalReason.INVALID)
    )
    assert refused == 1


def test_the_depth_bound_admits_every_real_event(rig: IngestRig) -> None:
    factory = EventFactory()
    event = factory.event(frames=3)
    wire = event.to_wire()
    assert MAX_JSON_DEPTH >= 8  # a real event nests about 4 deep
    ack = rig.handler.handle(factory.topic, wire)
    assert ack is not None
    assert ack.outcome is AckOutcome.STORED


def _server_config(tmp_path: Path, mosquitto: MosquittoProcess, name: str) -> CivicwatchConfig:
    return CivicwatchConfig(
        sites=make_registry().sites,
        broker=mosquitto.settings,
        server=ServerSettings(
            database_url=f"sqlite:///{tmp_path / f'{name}.db'}",
            ingest=IngestSettings(client_id=name, evidence_dir=tmp_path / "ev"),
        ),
    )


def test_readyz_says_503_with_the_reason_while_the_writer_keeps_failing(
    tmp_path: Path, mosquitto: MosquittoProcess, edge: Edge
) -> None:
    server = build_server(_server_config(tmp_path, mosquitto, "ingest-failing"))
    client = TestClient(server.app)
    server.start()
    try:
        assert server.consumer.ready.wait(10)
        assert client.get("/readyz").status_code == 200
        limit = consumer_tests.fill_up(server.engine)  # every write now fails: SQLITE_FULL
        factory = EventFactory()
        events = [factory.event() for _ in range(5)]  # more than the pages' free room holds
        for event in events:
            edge.publish(factory.topic, event.to_wire())
        deadline = time.monotonic() + 20
        while (answer := client.get("/readyz")).status_code != 503:
            assert time.monotonic() < deadline, "still ready while nothing can be stored"
            time.sleep(0.1)
        assert "cannot store" in answer.json()["detail"]
        assert "full" in answer.json()["detail"]
        limit["pages"] = consumer_tests.ROOMY_PAGES
        acks = [edge.next_ack() for _ in events]
        assert {ack.message_id for ack in acks} == {event.message_id for event in events}
        assert {ack.outcome for ack in acks} == {AckOutcome.STORED}
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "not ready again after the writer recovered"
            time.sleep(0.1)
    finally:
        server.stop()


def test_absurd_sequence_jumps_are_refused_and_never_break_later_batches(
    rig: IngestRig,
) -> None:
    """SQLite's sum() raised 'integer overflow' after 0 then 2**62 / 2**63-1 on two cameras."""
    ours = EventFactory()
    theirs = EventFactory(site_id=OTHER_SITE, gateway_id=OTHER_GATEWAY, camera_id=OTHER_CAMERA)
    for factory in (ours, theirs):
        first = rig.handler.handle(factory.topic, factory.event(frames=1).to_wire())
        assert first is not None
        assert first.outcome is AckOutcome.STORED
    for factory, sequence in ((ours, 2**62), (theirs, 2**63 - 1)):
        factory.next_sequence = sequence
        ack = rig.handler.handle(factory.topic, factory.event(frames=1).to_wire())
        assert ack is not None
        assert ack.outcome is AckOutcome.REJECTED
        assert ack.reason.startswith(RefusalReason.SEQUENCE_JUMP)
    assert rig.metrics.refusal_count(RefusalReason.SEQUENCE_JUMP) == 2

    ours.next_sequence = 5  # a plain gap of 4 is still tracked
    later = rig.handler.handle(ours.topic, ours.event(frames=1).to_wire())
    assert later is not None
    assert later.outcome is AckOutcome.STORED
    assert rig.metrics.value("civicwatch_ingest_sequence_missing") == 4
    rig.service.refresh_missing_gauge()  # as start() does after a restart
    assert rig.metrics.value("civicwatch_ingest_sequence_missing") == 4
    assert stored_events(rig) == 3


def test_a_gauge_refresh_over_old_huge_gaps_neither_overflows_nor_stops_the_start(
    mosquitto: MosquittoProcess, rig: IngestRig
) -> None:
    """Gaps an older version stored (before jumps were refused) must not keep ingest down."""
    with rig.session_factory.begin() as session:
        for camera in (CAMERA, OTHER_CAMERA):
            session.execute(
                insert(SequenceGap).values(camera_id=camera, first=1, last=2**63 - 2, opened_at=T0)
            )
    consumer = start_consumer(mosquitto, rig, "ingest-huge-gaps")  # start() refreshes the gauge
    consumer.stop()
    # Each old gap counts as the most a gap can now be: bounded, no overflow, no crash.
    assert rig.metrics.value("civicwatch_ingest_sequence_missing") == 2 * MAX_SEQUENCE_JUMP
    failures = {"metric": "sequence_missing"}
    assert rig.metrics.value("civicwatch_ingest_metric_refresh_failures_total", failures) == 0

    with rig.session_factory.begin() as session:  # now the refresh itself fails
        session.execute(text("DROP TABLE sequence_gaps"))
    consumer = start_consumer(mosquitto, rig, "ingest-huge-gaps")  # still starts
    consumer.stop()
    assert rig.metrics.value("civicwatch_ingest_metric_refresh_failures_total", failures) == 1
    assert rig.metrics.value("civicwatch_ingest_sequence_missing") == 2 * MAX_SEQUENCE_JUMP


def test_a_conflicting_duplicate_keeps_the_first_and_is_counted_and_logged(
    rig: IngestRig, caplog: pytest.LogCaptureFixture
) -> None:
    factory = EventFactory()
    first = factory.event(frames=1)
    same_again = first.model_copy(update={"historical": True})  # a resend from the outbox
    forged = first.model_copy(update={"dwell_seconds": 1.0})
    assert rig.handler.handle(factory.topic, first.to_wire()) is not None
    with caplog.at_level(logging.WARNING, logger="ingest.store"):
        acks = rig.handler.handle_batch(
            [(factory.topic, same_again.to_wire()), (factory.topic, forged.to_wire())]
        )
    assert [ack.outcome for ack in acks if ack is not None] == [AckOutcome.DUPLICATE] * 2
    assert rig.metrics.value("civicwatch_ingest_duplicate_conflicts_total") == 1
    assert rig.metrics.value("civicwatch_ingest_duplicates_total") == 2
    conflicts = [record for record in caplog.records if "conflict" in record.getMessage()]
    assert len(conflicts) == 1
    assert str(first.message_id) in conflicts[0].getMessage()
    with rig.session_factory() as session:
        kept = session.get(Event, first.message_id)
        assert kept is not None
        assert kept.payload["dwell_seconds"] == first.dwell_seconds
    # Two different payloads under one new message_id inside one batch: the first wins.
    fresh = factory.event(frames=1)
    twin = fresh.model_copy(update={"dwell_seconds": 2.0})
    outcomes = rig.handler.handle_batch(
        [(factory.topic, fresh.to_wire()), (factory.topic, twin.to_wire())]
    )
    assert [ack.outcome for ack in outcomes if ack is not None] == [
        AckOutcome.STORED,
        AckOutcome.DUPLICATE,
    ]
    assert rig.metrics.value("civicwatch_ingest_duplicate_conflicts_total") == 2


SCRIPT = b"<html><script>alert(document.cookie)</script></html>"


def _with_frame(event_json: bytes, content_type: str, data: bytes, redacted: bytes | None) -> bytes:
    """The event with its first frame replaced: declared type, bytes, and a redacted copy."""
    document = json.loads(event_json)
    frame = document["evidence"][0]
    frame.update(
        content_type=content_type,
        data=base64.b64encode(data).decode(),
        sha256=hashlib.sha256(data).hexdigest(),
        chain_sha256=None,
    )
    if redacted is not None:
        frame["redacted"] = {
            "sha256": hashlib.sha256(redacted).hexdigest(),
            "faces_blurred": 1,
            "data": base64.b64encode(redacted).decode(),
        }
    return json.dumps(document).encode()


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content_type", "data", "redacted"),
    [
        pytest.param("text/html", SCRIPT, None, id="html-declared-html"),
        pytest.param("image/jpeg", SCRIPT, None, id="html-declared-jpeg"),
        pytest.param("image/png", jpeg_bytes(7), None, id="jpeg-declared-png"),
        pytest.param("image/svg+xml", jpeg_bytes(7), None, id="jpeg-declared-svg"),
        pytest.param("image/jpeg", jpeg_bytes(7), SCRIPT, id="html-redacted-copy"),
        pytest.param("image/jpeg", jpeg_bytes(7), _png(), id="png-redacted-of-a-jpeg"),
    ],
)
def test_evidence_that_is_not_the_jpeg_or_png_it_says_is_refused(
    rig: IngestRig, content_type: str, data: bytes, redacted: bytes | None
) -> None:
    factory = EventFactory()
    event = factory.event(frames=1)
    payload = _with_frame(event.to_wire(), content_type, data, redacted)
    ack = rig.handler.handle(factory.topic, payload)
    assert ack is not None
    assert ack.outcome is AckOutcome.REJECTED
    assert ack.reason.startswith(RefusalReason.EVIDENCE_TYPE)
    assert rig.metrics.refusal_count(RefusalReason.EVIDENCE_TYPE) == 1
    assert stored_events(rig) == 0


def test_a_png_frame_declared_png_is_stored_as_png(rig: IngestRig) -> None:
    factory = EventFactory()
    png = _png()
    payload = _with_frame(factory.event(frames=1).to_wire(), "image/png", png, None)
    ack = rig.handler.handle(factory.topic, payload)
    assert ack is not None
    assert ack.outcome is AckOutcome.STORED
    with rig.session_factory() as session:
        row = session.get(Evidence, hashlib.sha256(png).hexdigest())
        assert row is not None
        assert row.content_type == "image/png"


def test_a_nested_verification_answer_is_refused_before_parsing() -> None:
    topic = verify_result_topic(SITE, GATEWAY, CAMERA)
    with pytest.raises(Refusal) as refused:
        parse_verification_result(topic, NESTED, make_registry(), MAX_PAYLOAD)
    assert refused.value.reason is RefusalReason.NESTING


def test_a_writer_that_refuses_every_message_as_poison_is_not_ready(
    mosquitto: MosquittoProcess, database_url: str, tmp_path: Path, edge: Edge
) -> None:
    """Not transient, so nothing is retried: each message is refused alone (store_failed).
    One such message is its own fault; every message, batch after batch, is the writer's."""

    def broken_routing(_cases: Sequence[OpenedCase]) -> list[RouteDecision]:
        raise RuntimeError("routing is broken")

    with migrated_database(database_url) as (_engine, sessions):
        broken = make_ingest(sessions, tmp_path / "evidence", route_cases=broken_routing)
        consumer = start_consumer(mosquitto, broken, "ingest-poisoned")
        try:
            factory = EventFactory()
            for _ in range(FAILING_AFTER):  # one batch each: the ack comes after the batch
                event = factory.event(frames=1)
                edge.publish(factory.topic, event.to_wire())
                ack = edge.next_ack()
                assert ack.message_id == event.message_id
                assert ack.reason.startswith(RefusalReason.STORE_FAILED)
            problems = ingest_readiness([consumer])
            assert len(problems) == 1
            assert "cannot store" in problems[0]
            assert "routing is broken" in problems[0]
        finally:
            consumer.stop()
