"""Violation events: the phases of one incident seen by one camera."""

from __future__ import annotations

import base64
import binascii
import hashlib
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from contracts.images import ImageType, image_type
from contracts.kinds import ViolationKind

SCHEMA_VERSION = "1.1"
"""Major.minor. A server accepts every minor version of its major and ignores unknown fields."""

SUPPORTED_MAJOR = "1"

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


def _decode_base64(value: object) -> object:
    if isinstance(value, str):
        try:
            # Strict mode checks the alphabet and the padding in the same C pass that decodes,
            # where b64decode(validate=True) ran a regex over the text first (a fifth of it).
            return binascii.a2b_base64(value, strict_mode=True)
        except binascii.Error as exc:
            raise ValueError(f"not valid base64: {exc}") from exc
    return value


InlineBytes = Annotated[
    bytes,
    BeforeValidator(_decode_base64),
    PlainSerializer(
        lambda data: base64.b64encode(data).decode(), return_type=str, when_used="json"
    ),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]
"""Raw bytes in Python, base64 text on the wire."""

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class Phase(StrEnum):
    OPENED = "opened"  # dwell crossed, evidence attached
    UPDATED = "updated"  # still there, more evidence
    CLEARED = "cleared"  # gone
    # The warning stage (docs/exemptions.md): the dwell crossed where a warning comes first.
    WARNED = "warned"  # warned, not enforced: the dwell-crossed frames are the "before"
    COMPLIED = "complied"  # gone within the grace period after a warning: closes the item


class EvidenceLabel(StrEnum):
    ENTRY = "entry"  # the object first seen in the zone
    MIDWAY = "midway"  # halfway through the dwell: shows it stayed put
    DWELL_CROSSED = "dwell_crossed"  # the moment the dwell threshold was crossed
    LATEST = "latest"  # the most recent frame when the event was built
    CLEARED = "cleared"  # the zone after the object left
    CLOSEUP = "closeup"  # a crop of the vehicle, big enough to read its plate
    BASELINE = "baseline"  # structures: the registered view the current one is compared to
    CURRENT = "current"  # structures: the view as it is now
    CHANGE_MASK = "change_mask"  # structures: the changed area drawn over the current view


# How the edge lays out an evidence picture; the server maps boxes into it (training data).
CAPTION_HEIGHT = 22
"""Rows of the caption band the edge puts above every evidence picture."""

CLOSEUP_MARGIN = 0.15
"""A close-up crops the object's box plus this share of its size on each side."""


class _WireModel(BaseModel):
    # Forward compatibility: a server ignores fields a newer minor version adds.
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


class BoundingBox(_WireModel):
    """Pixel box in the camera's frame, (x1, y1) top-left, (x2, y2) bottom-right."""

    x1: float
    y1: float
    x2: float
    y2: float

    @model_validator(mode="after")
    def _ordered(self) -> BoundingBox:
        if self.x2 < self.x1 or self.y2 < self.y1:
            raise ValueError("box corners must be ordered: x2 >= x1 and y2 >= y1")
        return self

    @property
    def area(self) -> float:
        return (self.x2 - self.x1) * (self.y2 - self.y1)

    def iou(self, other: BoundingBox) -> float:
        """Intersection over union: 0 for boxes apart (or without area), 1 for the same box."""
        width = max(0.0, min(self.x2, other.x2) - max(self.x1, other.x1))
        height = max(0.0, min(self.y2, other.y2) - max(self.y1, other.y1))
        overlap = width * height
        union = self.area + other.area - overlap
        return overlap / union if union > 0 else 0.0


class ObservedObject(_WireModel):
    class_name: str = Field(max_length=64)
    confidence: float = Field(ge=0.0, le=1.0)
    box: BoundingBox


GENESIS_CHAIN = "0" * 64
"""The chain value before a violation's first frame."""


def chain_link(previous_chain: str, sha256: str) -> str:
    """The chain value after a frame: SHA-256 of the previous chain value and the frame's hash."""
    return hashlib.sha256(f"{previous_chain}{sha256}".encode()).hexdigest()


def broken_link(frames: list[EvidenceFrame]) -> int | None:
    """The index of the first frame whose chain value is wrong, or None when the chain holds.

    ``frames`` are one violation's frames in capture order, across its events.
    """
    chain = GENESIS_CHAIN
    for index, frame in enumerate(frames):
        chain = chain_link(chain, hashlib.sha256(frame.data).hexdigest())
        if frame.chain_sha256 != chain:
            return index
    return None


def _check_sha256(data: bytes, declared: str, what: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != declared:
        raise ValueError(f"{what} sha256 mismatch: declared {declared}, actual {actual}")


EVIDENCE_TYPE_ERROR = "evidence type"
"""Starts every error about an image's bytes not being the JPEG or PNG declared."""


def _check_image_type(data: bytes, declared: ImageType, what: str) -> None:
    actual = image_type(data)
    if actual is None:
        raise ValueError(f"{EVIDENCE_TYPE_ERROR}: the {what} bytes are not a JPEG or PNG image")
    if actual != declared:
        raise ValueError(
            f"{EVIDENCE_TYPE_ERROR}: the {what} is declared {declared} but is {actual}"
        )


class RedactedCopy(_WireModel):
    """The copy of an evidence frame shown at the console: bystanders' faces blurred."""

    sha256: Sha256Hex
    faces_blurred: int = Field(ge=0)
    data: InlineBytes = Field(
        description="the image bytes (the frame's content_type), base64 on the wire"
    )

    @model_validator(mode="after")
    def _hash_matches(self) -> RedactedCopy:
        _check_sha256(self.data, self.sha256, "redacted copy")
        if image_type(self.data) is None:
            raise ValueError(
                f"{EVIDENCE_TYPE_ERROR}: the redacted copy bytes are not a JPEG or PNG image"
            )
        return self


class EvidenceFrame(_WireModel):
    """One JPEG, annotated with the zone and the box, carried inline and addressed by hash.

    ``chain_sha256`` links the frames of one violation in the order they were captured, across
    all its events: chain_link(previous frame's chain, this frame's sha256), starting from
    GENESIS_CHAIN. A removed, reordered or altered frame breaks every link after it.
    """

    label: EvidenceLabel
    captured_at: AwareDatetime
    sha256: Sha256Hex
    content_type: ImageType = Field(
        default="image/jpeg", description="must be what the bytes are (checked by magic number)"
    )
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    data: InlineBytes = Field(description="the image bytes, base64 on the wire")
    chain_sha256: Sha256Hex | None = Field(
        default=None, description="hash chain over the violation's frames (absent before 1.1)"
    )
    redacted: RedactedCopy | None = Field(
        default=None, description="the console's copy with faces blurred; absent when none"
    )

    @model_validator(mode="after")
    def _hash_matches(self) -> EvidenceFrame:
        _check_sha256(self.data, self.sha256, "evidence")
        _check_image_type(self.data, self.content_type, "frame")
        if self.redacted is not None:  # stored and served under the frame's type
            _check_image_type(self.redacted.data, self.content_type, "redacted copy")
        return self


class ModelInfo(_WireModel):
    name: str = Field(max_length=128)
    version: str = Field(max_length=64)


_PROVINCE = "[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼使领]"
PLATE_PATTERN = (
    rf"^(?:{_PROVINCE}[A-HJ-NP-Z]"
    r"(?:[A-HJ-NP-Z0-9]{4}[A-HJ-NP-Z0-9挂学警港澳领]|[A-HJ-NP-Z0-9]{6})"
    r"|使[0-9]{6}"
    rf"|WJ{_PROVINCE}?[0-9]{{4}}[0-9A-HJ-NP-Z])$"
)
"""A mainland plate, one of:

- province, issuing-office letter, 5 letters/digits (blue, yellow, white, black plates; double-row
  plates read top row then bottom row); the last may be 挂 (trailer), 学 (learner), 警 (police),
  港 / 澳 (Hong Kong / Macau cross-border) or 领 (consulate);
- province, letter, 6 letters/digits (green new-energy plates);
- 使 and 6 digits (embassy);
- WJ (armed police), an optional province, 4 digits and a digit or a letter (the branch).
"""


class PlateReading(_WireModel):
    """The vehicle's plate, voted across frames; the best reading and its confidence."""

    text: str = Field(pattern=PLATE_PATTERN)
    confidence: float = Field(ge=0.0, le=1.0)
    votes: int = Field(default=1, ge=1, description="frames that agreed on this text")


class WarningNotice(_WireModel):
    """The warning a gateway gave before enforcing: on ``warned``, ``complied`` and the
    ``opened`` that follows a warning (the warning time on the department's record)."""

    rule_id: Identifier = Field(description="the rule document's warning_stage rule")
    warned_at: AwareDatetime
    grace_until: AwareDatetime = Field(description="no case before this; then the camera looks")
    announced: bool = Field(description="an announcement went to the gateway's announce topic")

    @model_validator(mode="after")
    def _grace_after_warning(self) -> WarningNotice:
        if self.grace_until <= self.warned_at:
            raise ValueError("grace_until must be after warned_at")
        return self


class ViolationEvent(_WireModel):
    """One phase of one violation, minted at the edge.

    ``violation_id`` names the incident (one case); ``message_id`` is the idempotency key;
    ``sequence`` increases by one per message per camera so the server can see gaps.
    """

    schema_version: str = Field(default=SCHEMA_VERSION, pattern=r"^\d+\.\d+$")
    message_id: UUID
    violation_id: UUID
    sequence: int = Field(ge=0, le=2**63 - 1, description="fits a database BIGINT")
    phase: Phase
    kind: ViolationKind
    site_id: Identifier
    gateway_id: Identifier
    camera_id: Identifier
    zone_id: Identifier
    started_at: AwareDatetime = Field(description="when the object was first seen in the zone")
    observed_at: AwareDatetime = Field(description="when this phase was observed")
    dwell_seconds: float = Field(ge=0.0)
    object: ObservedObject | None = None
    evidence: list[EvidenceFrame] = Field(default_factory=list, max_length=32)
    model: ModelInfo | None = None
    plate: PlateReading | None = None
    blocked_share: float | None = Field(
        default=None, ge=0.0, le=1.0, description="fire lanes: the share of the lane blocked"
    )
    historical: bool = Field(default=False, description="replayed from the outbox after a delay")
    warning: WarningNotice | None = Field(
        default=None, description="the warning stage: required on warned and complied"
    )

    @model_validator(mode="after")
    def _supported_version(self) -> ViolationEvent:
        if self.schema_version.split(".")[0] != SUPPORTED_MAJOR:
            raise ValueError(
                f"unsupported schema_version {self.schema_version!r}: "
                f"this build reads major version {SUPPORTED_MAJOR}"
            )
        return self

    @model_validator(mode="after")
    def _opened_has_evidence(self) -> ViolationEvent:
        if self.phase is Phase.OPENED and not self.evidence:
            raise ValueError("an opened violation must carry evidence")
        return self

    @model_validator(mode="after")
    def _warning_phases(self) -> ViolationEvent:
        if self.phase in (Phase.WARNED, Phase.COMPLIED) and self.warning is None:
            raise ValueError(f"a {self.phase} event must carry its warning")
        if self.phase is Phase.WARNED and not self.evidence:
            raise ValueError("a warned violation must carry its dwell-crossed frames")
        return self

    def to_wire(self) -> bytes:
        return self.model_dump_json().encode()


__all__ = [
    "GENESIS_CHAIN",
    "PLATE_PATTERN",
    "SCHEMA_VERSION",
    "BoundingBox",
    "EvidenceFrame",
    "EvidenceLabel",
    "ImageType",
    "ModelInfo",
    "ObservedObject",
    "Phase",
    "PlateReading",
    "RedactedCopy",
    "Sha256Hex",
    "ViolationEvent",
    "ViolationKind",
    "WarningNotice",
    "broken_link",
    "chain_link",
    "image_type",
]
