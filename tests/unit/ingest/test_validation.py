"""Each refusal reason, from the raw bytes a gateway (or an attacker) could publish."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from contracts.events import Phase
from contracts.topics import violation_topic
from ingest.validation import Refusal, RefusalReason, parse_violation
from tests.factories import (
    CAMERA,
    GATEWAY,
    OTHER_CAMERA,
    OTHER_GATEWAY,
    OTHER_SITE,
    SITE,
    EventFactory,
    jpeg_bytes,
    make_registry,
)

LIMIT = 256 * 1024


def _document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(EventFactory().event().to_wire())
    document.update(changes)
    return document


def _refuse(topic: str, payload: bytes, limit: int = LIMIT) -> Refusal:
    with pytest.raises(Refusal) as caught:
        parse_violation(topic, payload, make_registry(), limit)
    return caught.value


TOPIC = violation_topic(SITE, GATEWAY, CAMERA)


def test_valid_event_parses_with_its_evidence() -> None:
    event = EventFactory().event(phase=Phase.OPENED, frames=3)
    parsed = parse_violation(TOPIC, event.to_wire(), make_registry(), LIMIT)
    assert parsed == event
    assert [frame.data for frame in parsed.evidence] == [frame.data for frame in event.evidence]


def test_unknown_fields_of_a_newer_minor_version_are_ignored() -> None:
    payload = json.dumps(_document(schema_version="1.7", plate_text="A12345")).encode()
    assert parse_violation(TOPIC, payload, make_registry(), LIMIT).schema_version == "1.7"


def test_malformed_json_is_not_a_schema_error() -> None:
    refusal = _refuse(TOPIC, b'{"message_id": "broken')
    assert refusal.reason is RefusalReason.MALFORMED_JSON
    assert refusal.message_id is None
    assert _refuse(TOPIC, b"\xff\xfe not utf-8").reason is RefusalReason.MALFORMED_JSON
    assert _refuse(TOPIC, b"[1, 2]").reason is RefusalReason.MALFORMED_JSON


def test_other_major_schema_version_is_refused_with_its_message_id() -> None:
    document = _document(schema_version="2.0")
    refusal = _refuse(TOPIC, json.dumps(document).encode())
    assert refusal.reason is RefusalReason.SCHEMA_VERSION
    assert str(refusal.message_id) == document["message_id"]
    assert "2.0" in refusal.detail


def test_oversize_payload_is_refused_before_parsing_but_keeps_message_id() -> None:
    event = EventFactory().event()
    refusal = _refuse(TOPIC, event.to_wire(), limit=100)
    assert refusal.reason is RefusalReason.OVERSIZE
    assert refusal.message_id == event.message_id
    assert str(len(event.to_wire())) in refusal.detail


def test_schema_violation_names_the_field() -> None:
    refusal = _refuse(TOPIC, json.dumps(_document(sequence=-1)).encode())
    assert refusal.reason is RefusalReason.INVALID
    assert "sequence" in refusal.detail


def test_evidence_hash_mismatch_has_its_own_reason() -> None:
    document = _document()
    document["evidence"][0]["data"] = base64.b64encode(jpeg_bytes(999)).decode()
    refusal = _refuse(TOPIC, json.dumps(document).encode())
    assert refusal.reason is RefusalReason.EVIDENCE_HASH
    assert "evidence.0" in refusal.detail


def test_unknown_camera_is_refused() -> None:
    payload = json.dumps(_document(camera_id="cam-nowhere")).encode()
    refusal = _refuse(violation_topic(SITE, GATEWAY, "cam-nowhere"), payload)
    assert refusal.reason is RefusalReason.UNKNOWN_CAMERA


@pytest.mark.parametrize(
    "topic",
    [
        violation_topic(SITE, GATEWAY, "cam-other"),  # another camera
        violation_topic(OTHER_SITE, GATEWAY, CAMERA),  # another site
        f"civicwatch/v1/{SITE}/{GATEWAY}/{CAMERA}/status",  # not a violation topic
    ],
)
def test_payload_identity_must_match_its_topic(topic: str) -> None:
    refusal = _refuse(topic, json.dumps(_document()).encode())
    assert refusal.reason is RefusalReason.TOPIC_MISMATCH


def test_camera_claimed_under_a_gateway_it_does_not_belong_to() -> None:
    # Topic and payload agree, but the registry puts cam-b1 on another site's gateway.
    document = _document(camera_id=OTHER_CAMERA)
    refusal = _refuse(violation_topic(SITE, GATEWAY, OTHER_CAMERA), json.dumps(document).encode())
    assert refusal.reason is RefusalReason.TOPIC_MISMATCH
    assert OTHER_GATEWAY in refusal.detail


def test_unknown_zone_is_refused() -> None:
    refusal = _refuse(TOPIC, json.dumps(_document(zone_id="roof")).encode())
    assert refusal.reason is RefusalReason.UNKNOWN_ZONE


def test_a_violation_kind_its_zone_cannot_hold_is_refused() -> None:
    refusal = _refuse(TOPIC, json.dumps(_document(kind="fire_lane_blocking")).encode())
    assert refusal.reason is RefusalReason.ZONE_KIND
    assert "no_parking" in refusal.detail


def test_every_reason_has_a_test_above() -> None:
    # STORE_FAILED is not a validation outcome: test_handler.py covers it (poison messages);
    # SEQUENCE_JUMP needs stored history: the hostile-input integration tests cover it; so
    # do the warning stage's order refusals (test_ingest_warnings.py).
    here = Path(__file__)
    hostile = here.parents[2] / "integration" / "test_ingest_hostile.py"
    warnings = here.parents[2] / "integration" / "test_ingest_warnings.py"
    text = "".join(
        path.read_text(encoding="utf-8")
        for path in (here, here.parent / "test_handler.py", hostile, warnings)
    )
    missing = [reason for reason in RefusalReason if f"RefusalReason.{reason.name}" not in text]
    assert missing == []
