"""The gateway's wire encoding: configured, stored in the outbox as sent, kept on a resend."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from contracts.event_frame import (
    FRAME_CONTENT_TYPE,
    FRAME_PREFIX,
    EventEncoding,
    decode_event,
    split_frame,
)
from contracts.sites import CameraConfig, GatewayConfig, SiteConfig, ZoneConfig
from contracts.topics import violation_topic
from edge.config import EdgeSettings
from edge.outbox import Outbox
from edge.publisher import _as_historical, _properties_for
from ingest.validation import parse_violation
from tests.factories import CAMERA, GATEWAY, SITE, EventFactory, make_registry


def test_json_is_the_default_and_frame_is_taken_and_anything_else_refused() -> None:
    assert EdgeSettings().publish.event_encoding == "json"
    assert EdgeSettings.model_validate({"publish": {"event_encoding": "frame"}}).publish
    with pytest.raises(ValidationError, match="event_encoding"):
        EdgeSettings.model_validate({"publish": {"event_encoding": "cbor"}})
    with pytest.raises(ValidationError, match="extra"):
        EdgeSettings.model_validate({"publish": {"encoding": "frame"}})


def test_the_outbox_stores_the_configured_encoding(tmp_path: Path) -> None:
    factory = EventFactory()
    json_event, frame_event = factory.event(), factory.event()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    outbox.add(factory.topic, json_event)
    outbox.event_encoding = "frame"
    outbox.add(factory.topic, frame_event)
    try:
        first, second = outbox.due(10, datetime.now(UTC) + timedelta(seconds=1))
    finally:
        outbox.close()
    assert first.payload == json_event.to_wire()
    assert second.payload.startswith(FRAME_PREFIX)
    assert decode_event(second.payload) == frame_event


@pytest.mark.parametrize("encoding", ["json", "frame"])
def test_a_late_event_is_marked_historical_in_its_own_encoding(
    tmp_path: Path, encoding: EventEncoding
) -> None:
    factory = EventFactory()
    event = factory.event(frames=2)
    outbox = Outbox(tmp_path / "outbox.sqlite", event_encoding=encoding)
    outbox.add(factory.topic, event)
    [message] = outbox.due(10, datetime.now(UTC) + timedelta(seconds=1))
    outbox.close()
    late = _as_historical(message.payload)
    assert late.startswith(FRAME_PREFIX) is (encoding == "frame")
    parsed = parse_violation(factory.topic, late, make_registry(), 1024 * 1024)
    assert parsed == event.model_copy(update={"historical": True})
    assert [f.data for f in parsed.evidence] == [f.data for f in event.evidence]
    if encoding == "frame":  # the image bytes are carried over as they were
        assert bytes(split_frame(late)[1]) == bytes(split_frame(message.payload)[1])
        assert json.loads(split_frame(late)[0])["historical"] is True


def test_a_frame_is_published_with_its_content_type_and_json_without_properties() -> None:
    event = EventFactory().event()
    properties = _properties_for(FRAME_PREFIX + b"\x00\x00\x00\x02{}")
    assert properties is not None
    assert getattr(properties, "ContentType") == FRAME_CONTENT_TYPE  # noqa: B009 - untyped
    assert _properties_for(event.to_wire()) is None


def test_the_gateway_built_from_its_config_stores_frames(tmp_path: Path) -> None:
    from civicwatch.gateway import build_gateway
    from contracts.mqtt import BrokerSettings

    lane = ZoneConfig(id="lane", kind="fire_lane", polygon=[[0, 0], [100, 0], [100, 100]])
    camera = CameraConfig(id=CAMERA, source="pkg://ultralytics/assets/bus.jpg", zones=[lane])
    gateway = GatewayConfig(id=GATEWAY, cameras=[camera])
    site = SiteConfig(id=SITE, gateways=[gateway])
    settings = EdgeSettings.model_validate(
        {"data_dir": str(tmp_path / "edge"), "publish": {"event_encoding": "frame"}}
    )
    worker = build_gateway(site, gateway, settings, BrokerSettings(), None)
    try:
        worker.outbox.add(violation_topic(SITE, GATEWAY, CAMERA), EventFactory().event())
        [message] = worker.outbox.due(10, datetime.now(UTC) + timedelta(seconds=1))
    finally:
        worker.outbox.close()
    assert message.payload.startswith(FRAME_PREFIX)
