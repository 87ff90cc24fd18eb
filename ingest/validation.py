"""Turn an MQTT message into a ViolationEvent, or refuse it with a reason the edge can act on."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from contracts.event_frame import (
    FrameError,
    attach_blobs,
    is_event_frame,
    parse_header,
    split_frame,
)
from contracts.events import EVIDENCE_TYPE_ERROR, SUPPORTED_MAJOR, ViolationEvent
from contracts.sites import CameraConfig, SiteRegistry, ZoneConfig
from contracts.topics import parse_camera_topic


class RefusalReason(StrEnum):
    OVERSIZE = "oversize"
    # Not a readable document: not JSON, not a JSON object, or a binary event frame whose
    # envelope is wrong (unknown version, a header length past the end, image references out
    # of range, overlapping or leaving bytes unreferenced; the detail starts "event frame").
    MALFORMED_JSON = "malformed_json"
    SCHEMA_VERSION = "schema_version"
    INVALID = "invalid"
    UNKNOWN_CAMERA = "unknown_camera"
    TOPIC_MISMATCH = "topic_mismatch"
    UNKNOWN_ZONE = "unknown_zone"
    ZONE_KIND = "zone_kind"  # e.g. a fire-lane violation reported in a no-parking zone
    EVIDENCE_HASH = "evidence_hash"
    STORE_FAILED = "store_failed"  # valid, but the database refuses it for good (a poison message)
    NESTING = "nesting"  # JSON nested deeper than MAX_JSON_DEPTH, or with too many containers
    SEQUENCE_JUMP = "sequence_jump"  # further ahead of the camera's last than MAX_SEQUENCE_JUMP
    EVIDENCE_TYPE = "evidence_type"  # an evidence image that is not the JPEG or PNG it says
    # The warning stage (ingest.writer.warnings): its messages in the wrong order.
    WARNING_UNKNOWN = "warning_unknown"  # complied for a violation never warned
    WARNING_ORDER = "warning_order"  # warned twice, complied after opened, anything after complied
    WARNING_GRACE = "warning_grace"  # a warned violation opened before its grace ended


class Refusal(Exception):  # noqa: N818 - an outcome of validation, named as the design names it
    """A message that will never be stored. ``message_id`` is set when the payload names one."""

    def __init__(self, reason: RefusalReason, detail: str, message_id: UUID | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.message_id = message_id
        super().__init__(f"{reason}: {detail}")


MAX_JSON_DEPTH = 32
"""Deepest nesting of objects and arrays a message may have; a real event nests 4 deep.

Checked on the bytes before any parser runs: Python's json recurses once per level and raised
RecursionError at about 1,000 levels."""

MAX_JSON_CONTAINERS = 4_096
"""Most objects and arrays in one message (a real event has under 200); bounds the depth scan."""

MAX_JSON_STRINGS = 16_384
"""Most strings, keys included, in one message (a real event has under 1,000)."""

# The depth scan, each step at C speed: drop escaped backslashes, then escaped quotes (a quote
# after a backslash is text), keep only quotes and brackets (base64 images hold neither), then
# drop what strings enclose; the counts are bounded before the one regex and the Python loop.
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in b'{}[]"')
_STRING = re.compile(rb'"[^"]*"?')
_DEPTH_STEP = {ord("{"): 1, ord("["): 1, ord("}"): -1, ord("]"): -1}

# The edge serialises message_id near the start; lets an oversize message still be answered.
_MESSAGE_ID_PREFIX = re.compile(rb'"message_id"\s*:\s*"([0-9a-fA-F-]{36})"')


def parse_violation(
    topic: str, payload: bytes, registry: SiteRegistry, max_payload_bytes: int
) -> ViolationEvent:
    """Validate one violation message against the contract, its topic and the site registry.

    The payload is JSON or a binary event frame (contracts.event_frame), told apart by the
    frame's magic bytes; either gives the same event, checked the same way after the parse.
    """
    if len(payload) > max_payload_bytes:
        raise Refusal(
            RefusalReason.OVERSIZE,
            f"payload is {len(payload)} bytes, the limit is {max_payload_bytes}",
            _message_id_from_prefix(payload),
        )
    if is_event_frame(payload):
        event = _parse_frame(payload)
    else:
        check_nesting(payload)
        try:  # fast path: pydantic parses the JSON itself
            event = ViolationEvent.model_validate_json(payload)
        except ValidationError:
            event = _diagnose(payload)  # raises the refusal that explains what is wrong
    message_id = event.message_id

    claimed = parse_camera_topic(topic)
    if claimed is None or claimed.channel != "violation":
        raise Refusal(RefusalReason.TOPIC_MISMATCH, f"not a violation topic: {topic!r}", message_id)
    payload_identity = (event.site_id, event.gateway_id, event.camera_id)
    topic_identity = (claimed.site_id, claimed.gateway_id, claimed.camera_id)
    if payload_identity != topic_identity:
        raise Refusal(
            RefusalReason.TOPIC_MISMATCH,
            f"payload site/gateway/camera {'/'.join(payload_identity)} "
            f"differs from topic {topic!r}",
            message_id,
        )
    zone_of_camera(registry, event)
    return event


def check_nesting(payload: bytes) -> None:
    """Refuse JSON nested deeper than MAX_JSON_DEPTH, from a scan of the bytes (no parsing)."""
    # Escapes matter only where a backslash is: a memchr says whether there is one, and a
    # real event has none (base64 holds none), so the two replace passes over its 0.5 MB, a
    # third of the parse, are skipped; a payload with a backslash takes them as before.
    unescaped = payload.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in payload else payload
    structure = unescaped.translate(None, _NOT_STRUCTURE)
    quotes = structure.count(b'"')
    if len(structure) - quotes > 2 * MAX_JSON_CONTAINERS or quotes > 2 * MAX_JSON_STRINGS:
        raise Refusal(
            RefusalReason.NESTING,
            f"more than {MAX_JSON_CONTAINERS} JSON objects and arrays "
            f"or {MAX_JSON_STRINGS} strings",
            _message_id_from_prefix(payload),
        )
    brackets = _STRING.sub(b"", structure)
    depth = 0
    for byte in brackets:
        depth += _DEPTH_STEP[byte]
        if depth > MAX_JSON_DEPTH:
            raise Refusal(
                RefusalReason.NESTING,
                f"JSON nested deeper than {MAX_JSON_DEPTH} levels",
                _message_id_from_prefix(payload),
            )


def _parse_frame(payload: bytes) -> ViolationEvent:
    """A binary event frame: its envelope, then its small JSON header under JSON's rules (the
    nesting scan, the same refusals), then the images' bytes attached without base64."""
    try:
        header, blobs = split_frame(payload)
    except FrameError as exc:
        raise _frame_refusal(exc, _message_id_from_prefix(payload)) from exc
    check_nesting(header)
    document = _json_object(header, parse_header)
    try:
        attach_blobs(document, blobs)
        return ViolationEvent.model_validate(document)
    except (FrameError, ValidationError) as exc:
        # The refusal's precise reason, as _diagnose finds it: the version first.
        message_id = _message_id_of(document)
        _check_schema_version(document, message_id)
        if isinstance(exc, FrameError):
            raise _frame_refusal(exc, message_id) from exc
        raise _refusal_from_validation(exc, message_id) from exc


def _frame_refusal(exc: FrameError, message_id: UUID | None) -> Refusal:
    return Refusal(RefusalReason.MALFORMED_JSON, f"event frame: {exc}"[:400], message_id)


def _json_object(payload: bytes, parse: Callable[[bytes], Any] = json.loads) -> dict[str, Any]:
    try:
        document = parse(payload)
    except ValueError as exc:  # also bad UTF-8 and integers longer than Python converts
        raise Refusal(RefusalReason.MALFORMED_JSON, f"not JSON: {exc}"[:400]) from exc
    if not isinstance(document, dict):
        raise Refusal(
            RefusalReason.MALFORMED_JSON, f"expected a JSON object, got {type(document).__name__}"
        )
    return document


def _diagnose(payload: bytes) -> ViolationEvent:
    """Parse step by step, to refuse with the most precise reason and the message_id if any."""
    document = _json_object(payload)
    message_id = _message_id_of(document)
    _check_schema_version(document, message_id)
    try:
        return ViolationEvent.model_validate(document)
    except ValidationError as exc:
        raise _refusal_from_validation(exc, message_id) from exc


def registered_camera(
    registry: SiteRegistry,
    site_id: str,
    gateway_id: str,
    camera_id: str,
    message_id: UUID | None = None,
) -> CameraConfig:
    """The registry's camera, after checking it sits at the site and gateway a message claims."""
    found = registry.camera(camera_id)
    if found is None:
        raise Refusal(
            RefusalReason.UNKNOWN_CAMERA,
            f"camera {camera_id!r} is not in the site registry",
            message_id,
        )
    site, gateway, camera = found
    if (site.id, gateway.id) != (site_id, gateway_id):
        raise Refusal(
            RefusalReason.TOPIC_MISMATCH,
            f"camera {camera_id!r} belongs to {site.id}/{gateway.id}, not {site_id}/{gateway_id}",
            message_id,
        )
    return camera


def zone_of_camera(registry: SiteRegistry, event: ViolationEvent) -> ZoneConfig:
    """The registered zone the event names, after checking the camera sits where it claims."""
    camera = registered_camera(
        registry, event.site_id, event.gateway_id, event.camera_id, event.message_id
    )
    zone = camera.zone(event.zone_id)
    if zone is None:
        raise Refusal(
            RefusalReason.UNKNOWN_ZONE,
            f"camera {camera.id!r} has no zone {event.zone_id!r}",
            event.message_id,
        )
    if zone.kind.violation_kind is not event.kind:
        raise Refusal(
            RefusalReason.ZONE_KIND,
            f"zone {zone.id!r} is a {zone.kind} zone; it cannot hold a {event.kind} violation",
            event.message_id,
        )
    return zone


def _check_schema_version(document: dict[str, Any], message_id: UUID | None) -> None:
    version = document.get("schema_version")
    if version is None:
        return  # absent means the model's default
    if not isinstance(version, str) or version.split(".")[0] != SUPPORTED_MAJOR:
        raise Refusal(
            RefusalReason.SCHEMA_VERSION,
            f"unsupported schema_version {version!r}: this server reads major {SUPPORTED_MAJOR}",
            message_id,
        )


def _refusal_from_validation(exc: ValidationError, message_id: UUID | None) -> Refusal:
    errors = exc.errors(include_url=False, include_input=False)
    problems = describe_errors(exc)
    hash_errors = [
        err
        for err in errors
        if err["loc"][:1] == ("evidence",)
        and ("sha256 mismatch" in err["msg"] or err["loc"][-1] == "sha256")
    ]
    type_errors = [
        err
        for err in errors
        if err["loc"][:1] == ("evidence",)
        and (EVIDENCE_TYPE_ERROR in err["msg"] or err["loc"][-1] == "content_type")
    ]
    reason = (
        RefusalReason.EVIDENCE_HASH
        if hash_errors
        else RefusalReason.EVIDENCE_TYPE
        if type_errors
        else RefusalReason.INVALID
    )
    return Refusal(reason, problems, message_id)


def describe_errors(exc: ValidationError) -> str:
    """Pydantic errors as one line: ``field.path: message; ...`` (capped for logs and acks)."""
    text = "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or '(message)'}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False)
    )
    return text[:1000]


def _message_id_of(document: dict[str, Any]) -> UUID | None:
    raw = document.get("message_id")
    if not isinstance(raw, str):
        return None
    try:
        return UUID(raw)
    except ValueError:
        return None


def _message_id_from_prefix(payload: bytes) -> UUID | None:
    match = _MESSAGE_ID_PREFIX.search(payload[:512])
    if match is None:
        return None
    try:
        return UUID(match.group(1).decode("ascii"))
    except ValueError:
        return None
