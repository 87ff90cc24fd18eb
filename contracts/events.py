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

SCHEMA_VERSION = "1.0"
"""Major.minor. A server accepts every minor version of its major and ignores unknown fields."""

SUPPORTED_MAJOR = "1"

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


def _decode_base64(value: object) -> object:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
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


class ViolationKind(StrEnum):
    ILLEGAL_PARKING = "illegal_parking"
    FIRE_LANE_BLOCKING = "fire_lane_blocking"
    ILLEGAL_STRUCTURE = "illegal_structure"


class Phase(StrEnum):
    OPENED = "opened"  # dwell crossed, evidence attached
    UPDATED = "updated"  # still there, more evidence
    CLEARED = "cleared"  # gone


class EvidenceLabel(StrEnum):
    ENTRY = "entry"  # the object first seen in the zone
    MIDWAY = "midway"  # halfway through the dwell: shows it stayed put
    DWELL_CROSSED = "dwell_crossed"  # the moment the dwell threshold was crossed
    LATEST = "latest"  # the most recent frame when the event was built
    CLEARED = "cleared"  # the zone after the object left


class _WireModel(BaseModel):
    # Forward compatibility: a server ignores fields a newer minor version adds.
    model_config = ConfigDict(extra="ignore", frozen=True)


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


class ObservedObject(_WireModel):
    class_name: str = Field(max_length=64)
    confidence: float = Field(ge=0.0, le=1.0)
    box: BoundingBox


class EvidenceFrame(_WireModel):
    """One JPEG, annotated with the zone and the box, carried inline and addressed by hash."""

    label: EvidenceLabel
    captured_at: AwareDatetime
    sha256: Sha256Hex
    content_type: str = "image/jpeg"
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    data: InlineBytes = Field(description="the image bytes, base64 on the wire")

    @model_validator(mode="after")
    def _hash_matches(self) -> EvidenceFrame:
        actual = hashlib.sha256(self.data).hexdigest()
        if actual != self.sha256:
            raise ValueError(f"evidence sha256 mismatch: declared {self.sha256}, actual {actual}")
        return self


class ModelInfo(_WireModel):
    name: str = Field(max_length=128)
    version: str = Field(max_length=64)


class ViolationEvent(_WireModel):
    """One phase of one violation, minted at the edge.

    ``violation_id`` names the incident (one case); ``message_id`` is the idempotency key;
    ``sequence`` increases by one per message per camera so the server can see gaps.
    """

    schema_version: str = Field(default=SCHEMA_VERSION, pattern=r"^\d+\.\d+$")
    message_id: UUID
    violation_id: UUID
    sequence: int = Field(ge=0)
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
    historical: bool = Field(default=False, description="replayed from the outbox after a delay")

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

    def to_wire(self) -> bytes:
        return self.model_dump_json().encode()


__all__ = [
    "SCHEMA_VERSION",
    "BoundingBox",
    "EvidenceFrame",
    "EvidenceLabel",
    "ModelInfo",
    "ObservedObject",
    "Phase",
    "Sha256Hex",
    "ViolationEvent",
    "ViolationKind",
]
