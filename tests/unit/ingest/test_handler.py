"""Refused messages: counted, answered when they name a message_id, and never half stored."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from sqlalchemy import func, select

from contracts.acks import AckOutcome
from contracts.topics import violation_topic
from ingest.database import SessionFactory
from ingest.tables import Base
from ingest.validation import RefusalReason
from tests.factories import CAMERA, GATEWAY, OTHER_SITE, SITE, EventFactory, jpeg_bytes, make_ingest


def _row_counts(sessions: SessionFactory) -> dict[str, int]:
    with sessions() as session:
        return {
            table.name: session.scalar(select(func.count()).select_from(table)) or 0
            for table in Base.metadata.sorted_tables
        }


def test_each_refusal_stores_nothing_and_counts_its_reason(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    rig = make_ingest(session_factory, tmp_path / "evidence", max_payload_bytes=64 * 1024)
    edge = EventFactory()
    good = json.loads(edge.event().to_wire())
    bad_hash = json.loads(edge.event().to_wire())
    bad_hash["evidence"][1]["data"] = base64.b64encode(jpeg_bytes(4242)).decode()
    cases: list[tuple[RefusalReason, str, bytes]] = [
        (RefusalReason.MALFORMED_JSON, edge.topic, b"{nope"),
        (
            RefusalReason.SCHEMA_VERSION,
            edge.topic,
            json.dumps({**good, "schema_version": "2.0"}).encode(),
        ),
        (RefusalReason.OVERSIZE, edge.topic, json.dumps({**good, "pad": "x" * 70_000}).encode()),
        (RefusalReason.INVALID, edge.topic, json.dumps({**good, "phase": "parked"}).encode()),
        (
            RefusalReason.UNKNOWN_CAMERA,
            violation_topic(SITE, GATEWAY, "cam-x"),
            json.dumps({**good, "camera_id": "cam-x"}).encode(),
        ),
        (
            RefusalReason.TOPIC_MISMATCH,
            violation_topic(OTHER_SITE, GATEWAY, CAMERA),
            json.dumps(good).encode(),
        ),
        (RefusalReason.UNKNOWN_ZONE, edge.topic, json.dumps({**good, "zone_id": "roof"}).encode()),
        (
            RefusalReason.ZONE_KIND,
            edge.topic,
            json.dumps({**good, "kind": "fire_lane_blocking"}).encode(),
        ),
        (RefusalReason.EVIDENCE_HASH, edge.topic, json.dumps(bad_hash).encode()),
    ]
    for reason, topic, payload in cases:
        ack = rig.handler.handle(topic, payload)
        assert rig.metrics.refusal_count(reason) == 1, reason
        if reason is RefusalReason.MALFORMED_JSON:
            assert ack is None  # nothing to name: the edge cannot be told
        else:
            assert ack is not None
            assert ack.outcome is AckOutcome.REJECTED
            assert ack.reason.startswith(reason.value)
    assert set(_row_counts(session_factory).values()) == {0}
    assert not list((tmp_path / "evidence").rglob("*.jpg"))

    # The service is unharmed: a valid message is still stored.
    ack = rig.handler.handle(edge.topic, json.dumps(good).encode())
    assert ack is not None
    assert ack.outcome is AckOutcome.STORED
    assert _row_counts(session_factory)["events"] == 1
