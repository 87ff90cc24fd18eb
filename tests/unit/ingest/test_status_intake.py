"""Status messages are bounded before they are parsed, like violations."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from contracts.status import CameraHealth, CameraStatus
from contracts.topics import camera_status_topic
from ingest.status_intake import MAX_STATUS_BYTES, parse_status
from ingest.validation import Refusal, RefusalReason
from tests.factories import CAMERA, GATEWAY, SITE, make_registry

TOPIC = camera_status_topic(SITE, GATEWAY, CAMERA)


def _status_document() -> dict[str, object]:
    status = CameraStatus(
        site_id=SITE,
        gateway_id=GATEWAY,
        camera_id=CAMERA,
        health=CameraHealth.OK,
        at=datetime(2026, 12, 3, 8, 0, tzinfo=UTC),
    )
    return json.loads(status.model_dump_json())  # type: ignore[no-any-return]


def test_a_valid_status_passes() -> None:
    status = parse_status(TOPIC, json.dumps(_status_document()).encode(), make_registry())

    assert isinstance(status, CameraStatus)
    assert status.camera_id == CAMERA


def test_an_oversized_status_is_refused_before_parsing() -> None:
    # Unknown fields are ignored for forward compatibility, so only a size bound stops this.
    document = _status_document() | {"padding": "x" * MAX_STATUS_BYTES}

    with pytest.raises(Refusal) as refused:
        parse_status(TOPIC, json.dumps(document).encode(), make_registry())

    assert refused.value.reason is RefusalReason.OVERSIZE


def test_a_deeply_nested_status_is_refused_before_parsing() -> None:
    payload = (
        json.dumps(_status_document())[:-1].encode() + b', "x": ' + b"[" * 1100 + b"]" * 1100 + b"}"
    )

    with pytest.raises(Refusal) as refused:
        parse_status(TOPIC, payload, make_registry())

    assert refused.value.reason is RefusalReason.NESTING
