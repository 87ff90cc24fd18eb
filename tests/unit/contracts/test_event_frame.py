"""The binary event frame: the same ViolationEvent as JSON, and every hostile frame refused."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import struct
from typing import Any

import pytest
from PIL import Image

from contracts.event_frame import (
    FRAME_PREFIX,
    MAX_HEADER_BYTES,
    FrameError,
    decode_event,
    decode_event_frame,
    encode_event,
    encode_event_frame,
    split_frame,
)
from contracts.events import EvidenceFrame, EvidenceLabel, Phase, PlateReading, RedactedCopy
from contracts.events import ViolationEvent as Event
from contracts.topics import violation_topic
from ingest.validation import Refusal, RefusalReason, parse_violation
from tests.factories import T0, EventFactory, jpeg_bytes, make_registry

LIMIT = 4 * 1024 * 1024


def real_size_jpeg() -> bytes:
    """A ~150 KB JPEG of noise (no two alike)."""
    noise = Image.frombytes("RGB", (400, 300), os.urandom(400 * 300 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def real_event() -> tuple[Event, str]:
    """An opened event as a gateway sends it: three real-size frames, one with a blurred copy,
    a plate and a close-up."""
    factory = EventFactory()
    event = factory.event(frames=1)
    evidence = []
    for index, label in enumerate(
        (EvidenceLabel.ENTRY, EvidenceLabel.DWELL_CROSSED, EvidenceLabel.CLOSEUP)
    ):
        data = real_size_jpeg()
        redacted = None
        if index == 1:
            copy = jpeg_bytes(77)
            redacted = RedactedCopy(
                sha256=hashlib.sha256(copy).hexdigest(), faces_blurred=2, data=copy
            )
        evidence.append(
            EvidenceFrame(
                label=label,
                captured_at=T0,
                sha256=hashlib.sha256(data).hexdigest(),
                width=400,
                height=300,
                data=data,
                redacted=redacted,
            )
        )
    event = event.model_copy(
        update={"evidence": evidence, "plate": PlateReading(text="京A12345", confidence=0.9)}
    )
    return Event.model_validate_json(event.to_wire()), factory.topic


def test_a_real_event_is_the_same_event_out_of_both_encodings() -> None:
    event, topic = real_event()
    as_json, as_frame = event.to_wire(), encode_event_frame(event)
    assert as_frame.startswith(FRAME_PREFIX)
    assert len(as_frame) < len(as_json) * 0.8  # base64 is a third larger
    registry = make_registry()
    from_json = parse_violation(topic, as_json, registry, LIMIT)
    from_frame = parse_violation(topic, as_frame, registry, LIMIT)
    assert from_frame == from_json == event
    for frame, original in zip(from_frame.evidence, event.evidence, strict=True):
        assert frame.data == original.data  # byte-equal images
    assert from_frame.evidence[1].redacted is not None
    assert event.evidence[1].redacted is not None
    assert from_frame.evidence[1].redacted.data == event.evidence[1].redacted.data
    assert decode_event(as_frame) == decode_event(as_json) == event
    assert encode_event(event, "json") == as_json
    assert encode_event(event, "frame") == as_frame


def test_an_event_without_images_is_a_frame_with_an_empty_blob_section() -> None:
    event = EventFactory().event(frames=0, phase=Phase.CLEARED)
    frame = encode_event_frame(event)
    header, blobs = split_frame(frame)
    assert len(blobs) == 0
    assert json.loads(header)["evidence"] == []
    assert decode_event_frame(frame) == event


def test_the_offsets_survive_a_changed_header() -> None:
    """A resend rewrites only the header (historical): offsets count from the blob section."""
    event, _ = real_event()
    frame = encode_event_frame(event)
    header, blobs = split_frame(frame)
    document = json.loads(header)
    document["historical"] = True
    text = json.dumps(document).encode() + b" " * 100
    again = decode_event_frame(FRAME_PREFIX + struct.pack(">I", len(text)) + text + bytes(blobs))
    assert again == event.model_copy(update={"historical": True})


# --- hostile frames ------------------------------------------------------------------------


def _parts() -> tuple[dict[str, Any], bytes, str]:
    """A valid frame taken apart: its header document, its blob section, its topic."""
    factory = EventFactory()
    event = factory.event(frames=2)
    header, blobs = split_frame(encode_event_frame(event))
    return json.loads(header), bytes(blobs), factory.topic


def _frame(document: dict[str, Any] | bytes, blobs: bytes, length: int | None = None) -> bytes:
    text = document if isinstance(document, bytes) else json.dumps(document).encode()
    size = len(text) if length is None else length
    return FRAME_PREFIX + struct.pack(">I", size) + text + blobs


def _refused(topic: str, payload: bytes, limit: int = LIMIT) -> Refusal:
    with pytest.raises(Refusal) as caught:
        parse_violation(topic, payload, make_registry(), limit)
    return caught.value


def _with_ref(document: dict[str, Any], index: int, ref: object) -> dict[str, Any]:
    document["evidence"][index]["data"] = ref
    return document


def _hostile() -> list[Any]:
    """(id, payload builder, expected reason, detail fragment, whether the message_id is known)"""
    malformed = RefusalReason.MALFORMED_JSON
    cases: list[Any] = [
        ("unknown-version", lambda d, b: b"CWF2" + _frame(d, b)[4:], malformed, "version", True),
        ("no-header-length", lambda d, b: b"CWF1\x00\x01", malformed, "header length", False),
        (
            "header-past-the-end",
            lambda d, b: _frame(d, b, length=len(json.dumps(d)) + len(b) + 1),
            malformed,
            "past the payload",
            True,
        ),
        (
            "header-over-its-limit",
            lambda d, b: _frame(d, b, length=MAX_HEADER_BYTES + 1),
            malformed,
            "limit",
            True,
        ),
        ("header-not-json", lambda d, b: _frame(b"{not json", b), malformed, "not JSON", False),
        ("header-an-array", lambda d, b: _frame(b"[1, 2]", b), malformed, "JSON object", False),
        (
            "header-nested-too-deep",
            lambda d, b: _frame(b'{"a":' * 40 + b"1" + b"}" * 40, b),
            RefusalReason.NESTING,
            "nested",
            False,
        ),
        (
            "reference-out-of-range",
            lambda d, b: _frame(
                _with_ref(d, 1, {"offset": d["evidence"][1]["data"]["offset"], "length": len(b)}),
                b,
            ),
            malformed,
            "past the blob section",
            True,
        ),
        (
            "references-overlap",
            lambda d, b: _frame(_with_ref(d, 1, {"offset": 0, "length": len(b)}), b),
            malformed,
            "without overlap",
            True,
        ),
        (
            "reference-skips-bytes",
            lambda d, b: _frame(
                _with_ref(d, 0, {"offset": 1, "length": d["evidence"][0]["data"]["length"] - 1}),
                b,
            ),
            malformed,
            "without overlap",
            True,
        ),
        ("trailing-bytes", lambda d, b: _frame(d, b + b"\xff\xd8"), malformed, "after the", True),
        (
            "negative-offset",
            lambda d, b: _frame(_with_ref(d, 0, {"offset": -1, "length": 5}), b),
            malformed,
            "non-negative",
            True,
        ),
        (
            "boolean-length",
            lambda d, b: _frame(_with_ref(d, 0, {"offset": 0, "length": True}), b),
            malformed,
            "non-negative integer",
            True,
        ),
        (
            "empty-reference",
            lambda d, b: _frame(_with_ref(d, 0, {"offset": 0, "length": 0}), b),
            malformed,
            "empty",
            True,
        ),
        (
            "extra-key-in-reference",
            lambda d, b: _frame(_with_ref(d, 0, {"offset": 0, "length": 5, "sha": "x"}), b),
            malformed,
            "reference",
            True,
        ),
        (
            "base64-inside-a-frame",
            lambda d, b: _frame(_with_ref(d, 0, "/9j/4AAQ"), b),
            malformed,
            "reference",
            True,
        ),
        (
            "image-bytes-altered",
            lambda d, b: _frame(d, b[:100] + bytes([b[100] ^ 1]) + b[101:]),
            RefusalReason.EVIDENCE_HASH,
            "sha256 mismatch",
            True,
        ),
        (
            "images-swapped",
            lambda d, b: _frame(
                _swap_images(d),
                b[d["evidence"][0]["data"]["length"] :] + b[: d["evidence"][0]["data"]["length"]],
            ),
            RefusalReason.EVIDENCE_HASH,
            "sha256 mismatch",
            True,
        ),
        (
            "schema-major-2",
            lambda d, b: _frame({**d, "schema_version": "2.0"}, b),
            RefusalReason.SCHEMA_VERSION,
            "2.0",
            True,
        ),
        (
            "event-invalid",
            lambda d, b: _frame({**d, "sequence": -1}, b),
            RefusalReason.INVALID,
            "sequence",
            True,
        ),
    ]
    return [pytest.param(*case[1:], id=case[0]) for case in cases]


def _swap_images(document: dict[str, Any]) -> dict[str, Any]:
    """The references in order again, for the blobs swapped: each hash now names the other."""
    first, second = (frame["data"]["length"] for frame in document["evidence"])
    document["evidence"][0]["data"] = {"offset": 0, "length": second}
    document["evidence"][1]["data"] = {"offset": second, "length": first}
    return document


@pytest.mark.parametrize(("build", "reason", "fragment", "named"), _hostile())
def test_a_hostile_frame_is_refused_with_its_reason(
    build: Any, reason: RefusalReason, fragment: str, named: bool
) -> None:
    document, blobs, topic = _parts()
    message_id = document["message_id"]
    refusal = _refused(topic, build(document, blobs))
    assert refusal.reason is reason, refusal.detail
    assert fragment in refusal.detail
    assert (str(refusal.message_id) if refusal.message_id else None) == (
        message_id if named else None
    )


def test_a_frame_over_the_payload_limit_is_refused_as_oversize_with_its_message_id() -> None:
    event, topic = real_event()
    refusal = _refused(topic, encode_event_frame(event), limit=100_000)
    assert refusal.reason is RefusalReason.OVERSIZE
    assert refusal.message_id == event.message_id


def test_a_payload_that_is_neither_json_nor_a_frame_is_malformed() -> None:
    document, blobs, topic = _parts()
    refusal = _refused(topic, b"CWX1" + _frame(document, blobs)[4:])
    assert refusal.reason is RefusalReason.MALFORMED_JSON


def test_the_frame_decoder_alone_names_frame_errors() -> None:
    document, blobs, _ = _parts()
    with pytest.raises(FrameError, match="version"):
        decode_event_frame(b"CWF9" + _frame(document, blobs)[4:])
    with pytest.raises(FrameError, match="does not start"):
        split_frame(b'{"a": 1}')


def test_no_cut_or_flipped_byte_escapes_as_anything_but_a_refusal() -> None:
    """Every truncation and 300 random single-byte changes of a frame: an event or a Refusal,
    never another exception (which ingest would count as a bug)."""
    event = EventFactory().event(frames=2)
    frame = encode_event_frame(event)
    registry = make_registry()
    rng = random.Random(15)
    variants = [frame[:cut] for cut in range(0, len(frame), 7)]
    for _ in range(300):
        position = rng.randrange(len(frame))
        variants.append(frame[:position] + bytes([rng.randrange(256)]) + frame[position + 1 :])
    outcomes: dict[str, int] = {}
    for payload in variants:
        try:
            parsed = parse_violation(event_topic(event), payload, registry, LIMIT)
        except Refusal as refusal:
            outcomes[refusal.reason.value] = outcomes.get(refusal.reason.value, 0) + 1
        else:  # a change that leaves an event valid (e.g. another hex digit in an id)
            assert isinstance(parsed, Event)
    assert outcomes.get("malformed_json", 0) > 0
    assert outcomes.get("evidence_hash", 0) > 0


def event_topic(event: Event) -> str:
    return violation_topic(event.site_id, event.gateway_id, event.camera_id)
