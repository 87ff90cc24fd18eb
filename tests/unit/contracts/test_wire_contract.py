"""The wire contract's JSON shape is pinned: a change here is a change to every deployed gateway."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.acks import AckOutcome, IngestAck
from contracts.events import (
    GENESIS_CHAIN,
    BoundingBox,
    EvidenceFrame,
    EvidenceLabel,
    ObservedObject,
    Phase,
    ViolationEvent,
    ViolationKind,
    chain_link,
)
from contracts.schema import json_schemas
from contracts.topics import parse_camera_topic, violation_topic

DOCS_SCHEMA = Path(__file__).resolve().parents[3] / "docs" / "schema"
JPEG = b"\xff\xd8\xff\xe0 not really a jpeg but bytes are bytes \xff\xd9"


def _frame(label: EvidenceLabel = EvidenceLabel.ENTRY, data: bytes = JPEG) -> dict[str, Any]:
    return {
        "label": label.value,
        "captured_at": "2026-11-26T08:00:00Z",
        "sha256": hashlib.sha256(data).hexdigest(),
        "width": 640,
        "height": 360,
        "data": base64.b64encode(data).decode(),
    }


def _event_json(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "schema_version": "1.0",
        "message_id": "6f1f0a53-3d38-4f5e-9a43-0c2f54a3b001",
        "violation_id": "0b7e6a10-9d7b-4c1e-8a4f-2f0d7f3c2002",
        "sequence": 7,
        "phase": "opened",
        "kind": "illegal_parking",
        "site_id": "compound-a",
        "gateway_id": "gw-1",
        "camera_id": "cam-1",
        "zone_id": "no-parking-1",
        "started_at": "2026-11-26T07:59:00Z",
        "observed_at": "2026-11-26T08:00:00Z",
        "dwell_seconds": 60.0,
        "object": {
            "class_name": "car",
            "confidence": 0.8,
            "box": {"x1": 1, "y1": 2, "x2": 30, "y2": 40},
        },
        "evidence": [_frame()],
        "model": {"name": "yolo11n", "version": "8.4"},
        "historical": False,
    }
    event.update(overrides)
    return event


def test_event_json_shape_is_pinned() -> None:
    event = ViolationEvent.model_validate(_event_json())
    wire = json.loads(event.to_wire())
    assert sorted(wire) == sorted(
        [
            "schema_version",
            "message_id",
            "violation_id",
            "sequence",
            "phase",
            "kind",
            "site_id",
            "gateway_id",
            "camera_id",
            "zone_id",
            "started_at",
            "observed_at",
            "dwell_seconds",
            "object",
            "evidence",
            "model",
            "plate",
            "blocked_share",
            "historical",
            "warning",
        ]
    )
    assert sorted(wire["evidence"][0]) == [
        "captured_at",
        "chain_sha256",
        "content_type",
        "data",
        "height",
        "label",
        "redacted",
        "sha256",
        "width",
    ]
    assert wire["evidence"][0]["data"] == base64.b64encode(JPEG).decode()
    assert wire["phase"] == "opened"
    assert wire["kind"] == "illegal_parking"
    assert wire["message_id"] == "6f1f0a53-3d38-4f5e-9a43-0c2f54a3b001"


def test_event_round_trips_through_the_wire() -> None:
    event = ViolationEvent.model_validate(_event_json())
    again = ViolationEvent.model_validate_json(event.to_wire())
    assert again == event
    assert again.evidence[0].data == JPEG


def test_a_newer_minor_version_with_unknown_fields_is_read() -> None:
    event = ViolationEvent.model_validate(_event_json(schema_version="1.7", plate_colour="blue"))
    assert event.schema_version == "1.7"
    assert "plate_colour" not in json.loads(event.to_wire())


@pytest.mark.parametrize("version", ["2.0", "0.9", "one"])
def test_another_major_version_is_refused(version: str) -> None:
    with pytest.raises(ValidationError, match="schema_version"):
        ViolationEvent.model_validate(_event_json(schema_version=version))


def test_evidence_whose_hash_does_not_match_is_refused() -> None:
    frame = _frame()
    frame["sha256"] = hashlib.sha256(b"other bytes").hexdigest()
    with pytest.raises(ValidationError, match="sha256 mismatch"):
        ViolationEvent.model_validate(_event_json(evidence=[frame]))


def test_an_opened_violation_without_evidence_is_refused() -> None:
    with pytest.raises(ValidationError, match="must carry evidence"):
        ViolationEvent.model_validate(_event_json(evidence=[]))


def test_timestamps_must_carry_a_zone() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        ViolationEvent.model_validate(_event_json(observed_at="2026-11-26T08:00:00"))


def test_models_build_from_python_objects() -> None:
    frame = EvidenceFrame(
        label=EvidenceLabel.LATEST,
        captured_at=datetime(2026, 11, 26, tzinfo=UTC),
        sha256=hashlib.sha256(JPEG).hexdigest(),
        width=10,
        height=10,
        data=JPEG,
    )
    event = ViolationEvent(
        message_id=uuid.uuid4(),
        violation_id=uuid.uuid4(),
        sequence=0,
        phase=Phase.UPDATED,
        kind=ViolationKind.FIRE_LANE_BLOCKING,
        site_id="s",
        gateway_id="g",
        camera_id="c",
        zone_id="z",
        started_at=datetime(2026, 11, 26, tzinfo=UTC),
        observed_at=datetime(2026, 11, 26, tzinfo=UTC),
        dwell_seconds=1.0,
        object=ObservedObject(
            class_name="car", confidence=0.5, box=BoundingBox(x1=0, y1=0, x2=1, y2=1)
        ),
        evidence=[frame],
    )
    assert ViolationEvent.model_validate_json(event.to_wire()).evidence[0].data == JPEG


def test_ack_settles_only_stored_or_duplicate() -> None:
    message_id = uuid.uuid4()
    assert IngestAck(message_id=message_id, outcome=AckOutcome.STORED).settled
    assert IngestAck(message_id=message_id, outcome=AckOutcome.DUPLICATE).settled
    assert not IngestAck(message_id=message_id, outcome=AckOutcome.REJECTED).settled


def test_topic_names_the_camera() -> None:
    topic = violation_topic("site-a", "gw-1", "cam-9")
    parsed = parse_camera_topic(topic)
    assert parsed is not None
    assert (parsed.site_id, parsed.gateway_id, parsed.camera_id, parsed.channel) == (
        "site-a",
        "gw-1",
        "cam-9",
        "violation",
    )
    assert parse_camera_topic("civicwatch/v1/site-a/gw-1/status") is None
    assert parse_camera_topic("other/v1/a/b/c/violation") is None


def test_published_json_schema_matches_the_models() -> None:
    """Integrators read docs/schema: regenerate it with `civicwatch schema --out docs/schema`."""
    for stem, schema in json_schemas().items():
        published = json.loads((DOCS_SCHEMA / f"{stem}.json").read_text(encoding="utf-8"))
        assert published == schema, f"docs/schema/{stem}.json is stale"


@pytest.mark.parametrize(
    "plate",
    ["皖A12345", "苏B1234D", "粤BD12345", "京AF12345", "沪A1234学"],
)
def test_mainland_plates_are_read(plate: str) -> None:
    event = ViolationEvent.model_validate(
        _event_json(plate={"text": plate, "confidence": 0.9, "votes": 3})
    )
    assert event.plate is not None
    assert event.plate.text == plate


@pytest.mark.parametrize(
    "plate", ["A12345", "皖12345", "皖I12345", "皖A1234", "皖A1234567", "皖a12345"]
)
def test_malformed_plates_are_refused(plate: str) -> None:
    with pytest.raises(ValidationError, match="plate"):
        ViolationEvent.model_validate(_event_json(plate={"text": plate, "confidence": 0.9}))


def test_redacted_copy_whose_hash_does_not_match_is_refused() -> None:
    frame = _frame()
    frame["redacted"] = {
        "sha256": hashlib.sha256(b"blurred").hexdigest(),
        "faces_blurred": 1,
        "data": base64.b64encode(b"not the blurred bytes").decode(),
    }
    with pytest.raises(ValidationError, match="redacted copy sha256 mismatch"):
        ViolationEvent.model_validate(_event_json(evidence=[frame]))


def test_chain_links_depend_on_every_earlier_frame() -> None:
    first, second = hashlib.sha256(b"a").hexdigest(), hashlib.sha256(b"b").hexdigest()
    chain = chain_link(chain_link(GENESIS_CHAIN, first), second)
    assert chain != chain_link(chain_link(GENESIS_CHAIN, second), first)
    assert chain != chain_link(GENESIS_CHAIN, second)
    assert len(chain) == 64


@pytest.mark.parametrize(
    "overrides",
    [{"sequence": 2**63}, {"dwell_seconds": float("inf")}, {"dwell_seconds": float("nan")}],
)
def test_numbers_no_database_can_hold_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ViolationEvent.model_validate(_event_json(**overrides))


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        ((0, 0, 10, 10), 1.0),  # the same box
        ((5, 0, 15, 10), 50 / 150),  # half of each overlaps
        ((20, 20, 30, 30), 0.0),  # apart
        ((10, 0, 20, 10), 0.0),  # touching edges share no area
    ],
)
def test_box_iou(other: tuple[float, float, float, float], expected: float) -> None:
    box = BoundingBox(x1=0, y1=0, x2=10, y2=10)
    x1, y1, x2, y2 = other
    assert box.iou(BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2)) == pytest.approx(expected)


def test_boxes_without_area_have_no_overlap() -> None:
    point = BoundingBox(x1=5, y1=5, x2=5, y2=5)
    assert point.iou(point) == 0.0
