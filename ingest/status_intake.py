"""Gateway and camera status messages: parsed, and checked against their topic and the registry.

The broker's ACL lets a gateway publish only under its own topic prefix, but the payload is
the gateway's own words: without these checks gateway A could set gateway B's state or
camera B's health from A's own topics.
"""

from __future__ import annotations

from pydantic import ValidationError

from contracts.sites import SiteRegistry
from contracts.status import CameraStatus, GatewayStatus
from contracts.topics import ROOT, parse_camera_topic
from ingest.validation import (
    Refusal,
    RefusalReason,
    check_nesting,
    describe_errors,
    registered_camera,
)

MAX_STATUS_BYTES = 16_384
"""A status is a few hundred bytes; anything near this is not one (checked before parsing)."""


def parse_status(
    topic: str, payload: bytes, registry: SiteRegistry
) -> GatewayStatus | CameraStatus:
    """The status a message carries; raises Refusal when it is malformed or claims another
    identity than its topic, or one the site registry does not know there."""
    if len(payload) > MAX_STATUS_BYTES:
        raise Refusal(
            RefusalReason.OVERSIZE,
            f"status is {len(payload)} bytes, the limit is {MAX_STATUS_BYTES}",
        )
    check_nesting(payload)
    camera_topic = parse_camera_topic(topic)
    try:
        if camera_topic is None:  # civicwatch/v1/{site}/{gateway}/status
            gateway_status = GatewayStatus.model_validate_json(payload)
        else:
            camera_status = CameraStatus.model_validate_json(payload)
    except ValidationError as exc:
        reason = (
            RefusalReason.MALFORMED_JSON
            if any(e["type"] == "json_invalid" for e in exc.errors())
            else RefusalReason.INVALID
        )
        raise Refusal(reason, describe_errors(exc)) from exc
    if camera_topic is None:
        _check_gateway(topic, gateway_status, registry)
        return gateway_status
    claimed = (camera_topic.site_id, camera_topic.gateway_id, camera_topic.camera_id)
    _check_camera(topic, claimed, camera_status, registry)
    return camera_status


def _check_gateway(topic: str, status: GatewayStatus, registry: SiteRegistry) -> None:
    parts = topic.removeprefix(ROOT + "/").split("/")
    said = (status.site_id, status.gateway_id)
    if len(parts) != 3 or (parts[0], parts[1]) != said:
        raise Refusal(
            RefusalReason.TOPIC_MISMATCH,
            f"payload site/gateway {'/'.join(said)} differs from topic {topic!r}",
        )
    found = registry.gateway(status.gateway_id)
    if found is None:
        raise Refusal(
            RefusalReason.UNKNOWN_CAMERA,
            f"gateway {status.gateway_id!r} is not in the site registry",
        )
    if found[0].id != status.site_id:
        raise Refusal(
            RefusalReason.TOPIC_MISMATCH,
            f"gateway {status.gateway_id!r} belongs to site {found[0].id}, not {status.site_id}",
        )


def _check_camera(
    topic: str, claimed: tuple[str, str, str], status: CameraStatus, registry: SiteRegistry
) -> None:
    said = (status.site_id, status.gateway_id, status.camera_id)
    if said != claimed:
        raise Refusal(
            RefusalReason.TOPIC_MISMATCH,
            f"payload site/gateway/camera {'/'.join(said)} differs from topic {topic!r}",
        )
    registered_camera(registry, status.site_id, status.gateway_id, status.camera_id)
