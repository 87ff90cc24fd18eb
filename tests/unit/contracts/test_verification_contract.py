"""The verification request and answer on the wire: shape, round trip, and what is refused."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.topics import (
    VERIFY_RESULT_SUBSCRIPTION,
    parse_camera_topic,
    verify_result_topic,
    verify_topic,
)
from contracts.verification import VerificationRequest, VerificationResult

JPEG = b"\xff\xd8\xff\xe0 a verification frame \xff\xd9"


def _request_json(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "schema_version": "1.1",
        "request_id": "9c1d2e3f-4a5b-4c6d-8e7f-001122334455",
        "case_id": 42,
        "site_id": "compound-a",
        "gateway_id": "gw-1",
        "camera_id": "cam-1",
        "zone_id": "fire-lane-north",
        "kind": "fire_lane_blocking",
        "requested_at": "2026-11-27T08:00:00Z",
        "deadline_seconds": 90,
    }
    request.update(overrides)
    return request


def _result_json(**overrides: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "schema_version": "1.1",
        "request_id": "9c1d2e3f-4a5b-4c6d-8e7f-001122334455",
        "site_id": "compound-a",
        "gateway_id": "gw-1",
        "camera_id": "cam-1",
        "zone_id": "fire-lane-north",
        "checked_at": "2026-11-27T08:00:05Z",
        "clear": False,
        "blocked_share": 0.25,
        "objects": [
            {
                "class_name": "car",
                "confidence": 0.8,
                "box": {"x1": 1, "y1": 2, "x2": 30, "y2": 40},
            }
        ],
        "frames_checked": 5,
        "detail": "still in the zone",
        "evidence": {
            "label": "latest",
            "captured_at": "2026-11-27T08:00:04Z",
            "sha256": hashlib.sha256(JPEG).hexdigest(),
            "width": 640,
            "height": 360,
            "data": base64.b64encode(JPEG).decode(),
        },
    }
    result.update(overrides)
    return result


def test_request_round_trips_with_a_pinned_shape() -> None:
    request = VerificationRequest.model_validate(_request_json())
    wire = json.loads(request.to_wire())
    assert sorted(wire) == sorted(_request_json())
    assert VerificationRequest.model_validate_json(request.to_wire()) == request
    assert request.case_id == 42
    assert request.deadline_seconds == 90.0


def test_result_round_trips_with_its_frame() -> None:
    result = VerificationResult.model_validate(_result_json())
    again = VerificationResult.model_validate_json(result.to_wire())
    assert again == result
    assert again.evidence is not None
    assert again.evidence.data == JPEG
    wire = json.loads(result.to_wire())
    assert sorted(wire) == sorted(_result_json())
    assert wire["objects"][0]["class_name"] == "car"


def test_unknown_fields_of_a_newer_minor_version_are_ignored() -> None:
    request = VerificationRequest.model_validate(_request_json(schema_version="1.9", extra=1))
    assert request.schema_version == "1.9"
    result = VerificationResult.model_validate(_result_json(schema_version="1.7", future="x"))
    assert not result.clear


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"schema_version": "2.0"}, "unsupported schema_version"),
        ({"request_id": "not-a-uuid"}, "request_id"),
        ({"case_id": 0}, "case_id"),
        ({"camera_id": "cam 1/../x"}, "camera_id"),
        ({"kind": "littering"}, "kind"),
        ({"requested_at": "2026-11-27T08:00:00"}, "requested_at"),  # no time zone
        ({"deadline_seconds": 0}, "deadline_seconds"),
    ],
)
def test_bad_requests_are_refused(overrides: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        VerificationRequest.model_validate(_request_json(**overrides))


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"schema_version": "0.9"}, "unsupported schema_version"),
        ({"clear": True}, "a clear zone cannot list objects"),
        ({"clear": True, "objects": [], "frames_checked": 0}, "without a frame checked"),
        ({"blocked_share": 1.5}, "blocked_share"),
        ({"frames_checked": -1}, "frames_checked"),
        ({"detail": "x" * 501}, "detail"),
        ({"evidence": {**_result_json()["evidence"], "sha256": "0" * 64}}, "sha256 mismatch"),
        ({"objects": [{"class_name": "car", "confidence": 2, "box": {}}]}, "objects"),
    ],
)
def test_bad_results_are_refused(overrides: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        VerificationResult.model_validate(_result_json(**overrides))


def test_bad_json_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"json_invalid|Invalid JSON"):
        VerificationResult.model_validate_json(b"{not json")


def test_verify_topics_name_the_camera() -> None:
    for topic, channel in (
        (verify_topic("site-a", "gw-1", "cam-9"), "verify"),
        (verify_result_topic("site-a", "gw-1", "cam-9"), "verify_result"),
    ):
        parsed = parse_camera_topic(topic)
        assert parsed is not None
        assert (parsed.site_id, parsed.gateway_id, parsed.camera_id, parsed.channel) == (
            "site-a",
            "gw-1",
            "cam-9",
            channel,
        )
    assert VERIFY_RESULT_SUBSCRIPTION == "civicwatch/v1/+/+/+/verify_result"
