"""The binary event frame: a ``ViolationEvent`` with its images as raw bytes, not base64 JSON.

A second, versioned encoding of the same event (docs/schema/event_frame.md). One MQTT message
per event, as with JSON; which encoding a payload is comes from its first bytes, never from an
MQTT property (a JSON event starts with ``{``, a frame with ``CWF``)::

    offset 0   4 bytes   magic and version: b"CWF1"
    offset 4   4 bytes   N, the header's length, unsigned big-endian
    offset 8   N bytes   the header: the event as UTF-8 JSON, each image's ``data`` replaced by
                         a reference {"offset": o, "length": n} into the blob section
    offset 8+N           the blob section: the images' bytes, concatenated in the order the
                         header references them (evidence[0].data, evidence[0].redacted.data,
                         evidence[1].data, ...)

Offsets count from the start of the blob section, so a changed header (e.g. ``historical``
set on a resend) leaves them valid. A reader refuses a frame whose references do not tile the
blob section exactly: each starts where the one before ended, the first at 0, none is empty,
and the last ends at the payload's end (no overlap, no gap, no unreferenced trailing bytes).
Every image is checked against the SHA-256 the header carries, as in JSON.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Literal

from pydantic_core import from_json

from contracts.events import ViolationEvent

EventEncoding = Literal["json", "frame"]
"""How a gateway encodes its events on the wire: base64 JSON (every server) or binary frames."""

FRAME_MAGIC = b"CWF"
"""The first three bytes of every frame; the fourth is the frame format's version."""
FRAME_VERSION = 1
FRAME_PREFIX = FRAME_MAGIC + str(FRAME_VERSION).encode()
FRAME_CONTENT_TYPE = "application/vnd.civicwatch.event+frame"
"""The MQTT 5 content type a frame is published with (informative: the magic decides)."""
_LENGTH = struct.Struct(">I")
HEADER_START = len(FRAME_PREFIX) + _LENGTH.size
MAX_HEADER_BYTES = 1_048_576
"""The most header a frame may have; a real event's header is 2-5 KB."""
_REFERENCE_KEYS = frozenset({"offset", "length"})


class FrameError(ValueError):
    """A payload that starts like a frame but breaks the frame's rules (not its event's)."""


def is_event_frame(payload: bytes) -> bool:
    """Whether a payload claims to be a frame (any version): decided by its magic bytes."""
    return payload[: len(FRAME_MAGIC)] == FRAME_MAGIC


def encode_event_frame(event: ViolationEvent) -> bytes:
    """The event as a frame: the JSON header with references, then the images' bytes."""
    header = event.model_dump(
        mode="json",
        exclude={"evidence": {"__all__": {"data": True, "redacted": {"data": True}}}},
    )
    blobs: list[bytes] = []
    offset = 0

    def reference(data: bytes) -> dict[str, int]:
        nonlocal offset
        blobs.append(data)
        ref = {"offset": offset, "length": len(data)}
        offset += len(data)
        return ref

    for frame, described in zip(event.evidence, header["evidence"], strict=True):
        described["data"] = reference(frame.data)
        if frame.redacted is not None:
            described["redacted"]["data"] = reference(frame.redacted.data)
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    return b"".join([FRAME_PREFIX, _LENGTH.pack(len(text)), text, *blobs])


def split_frame(payload: bytes) -> tuple[bytes, memoryview]:
    """(the header's JSON bytes, the blob section) of a frame; FrameError for a bad envelope."""
    if not is_event_frame(payload):
        raise FrameError("not an event frame: the payload does not start with b'CWF'")
    version = payload[len(FRAME_MAGIC) : len(FRAME_PREFIX)]
    if version != FRAME_PREFIX[len(FRAME_MAGIC) :]:
        raise FrameError(
            f"unsupported frame version {version!r}: this build reads version {FRAME_VERSION}"
        )
    if len(payload) < HEADER_START:
        raise FrameError(f"a frame of {len(payload)} bytes has no header length")
    (length,) = _LENGTH.unpack_from(payload, len(FRAME_PREFIX))
    if length > MAX_HEADER_BYTES:
        raise FrameError(f"a header of {length} bytes, the limit is {MAX_HEADER_BYTES}")
    end = HEADER_START + length
    if end > len(payload):
        raise FrameError(f"the header's length {length} runs past the payload's end")
    view = memoryview(payload)
    return bytes(view[HEADER_START:end]), view[end:]


def parse_header(header: bytes) -> Any:
    """The header's JSON (pydantic's parser: a fifth of json.loads's time on a 2 KB header);
    ValueError for what is not JSON, NaN and infinities included."""
    return from_json(header, allow_inf_nan=False)


def attach_blobs(document: dict[str, Any], blobs: memoryview) -> None:
    """Replace every image reference in a parsed header by its bytes, in place.

    FrameError where a ``data`` is not a reference, or the references do not tile ``blobs``
    exactly (out of range, overlapping, out of order, empty, or bytes left unreferenced).
    Anything else wrong with the document is left to the event's own validation.
    """
    cursor = 0
    evidence = document.get("evidence")
    for index, frame in enumerate(evidence if isinstance(evidence, list) else []):
        if not isinstance(frame, dict):
            continue
        holders = [(f"evidence.{index}", frame)]
        redacted = frame.get("redacted")
        if isinstance(redacted, dict):
            holders.append((f"evidence.{index}.redacted", redacted))
        for where, holder in holders:
            offset, length = _reference(holder.get("data"), where)
            if offset != cursor:
                raise FrameError(
                    f"{where}.data starts at {offset}; the blob section's next byte is {cursor}"
                    " (references must follow each other, without overlap or gap)"
                )
            if offset + length > len(blobs):
                raise FrameError(
                    f"{where}.data ends at {offset + length}, past the blob section's"
                    f" {len(blobs)} bytes"
                )
            holder["data"] = bytes(blobs[offset : offset + length])
            cursor = offset + length
    if cursor != len(blobs):
        raise FrameError(f"{len(blobs) - cursor} bytes after the last referenced image")


def _reference(value: object, where: str) -> tuple[int, int]:
    if not isinstance(value, dict) or value.keys() != _REFERENCE_KEYS:
        raise FrameError(f"{where}.data must be a reference {{offset, length}} in a frame")
    offset, length = value["offset"], value["length"]
    for name, number in (("offset", offset), ("length", length)):
        if type(number) is not int or number < 0:
            raise FrameError(f"{where}.data.{name} must be a non-negative integer")
    if length == 0:
        raise FrameError(f"{where}.data is empty")
    return offset, length


def decode_event_frame(payload: bytes) -> ViolationEvent:
    """The event a frame carries. FrameError for the frame's rules, ValueError for a header that
    is not a JSON object, pydantic's ValidationError for the event's (hashes included)."""
    header, blobs = split_frame(payload)
    document = parse_header(header)
    if not isinstance(document, dict):
        raise FrameError(f"the header is a JSON {type(document).__name__}, not an object")
    attach_blobs(document, blobs)
    return ViolationEvent.model_validate(document)


def encode_event(event: ViolationEvent, encoding: EventEncoding) -> bytes:
    """The event's payload in ``encoding``."""
    return encode_event_frame(event) if encoding == "frame" else event.to_wire()


def decode_event(payload: bytes) -> ViolationEvent:
    """The event in a payload of either encoding, told apart by the frame's magic bytes."""
    if is_event_frame(payload):
        return decode_event_frame(payload)
    return ViolationEvent.model_validate_json(payload)


def encoding_of(payload: bytes) -> EventEncoding:
    return "frame" if is_event_frame(payload) else "json"


__all__ = [
    "FRAME_CONTENT_TYPE",
    "FRAME_MAGIC",
    "FRAME_PREFIX",
    "FRAME_VERSION",
    "MAX_HEADER_BYTES",
    "EventEncoding",
    "FrameError",
    "attach_blobs",
    "decode_event",
    "decode_event_frame",
    "encode_event",
    "encode_event_frame",
    "encoding_of",
    "is_event_frame",
    "parse_header",
    "split_frame",
]
