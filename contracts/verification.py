"""Verification by camera: the server asks a camera to re-check a resolved case's zone.

The server publishes a VerificationRequest on civicwatch/v1/{site}/{gateway}/{camera}/verify;
the gateway watches the zone over the next frames it processes and answers with a
VerificationResult on .../verify_result. Both at QoS 1; ``request_id`` ties them together and
makes a redelivered request or answer harmless.
"""

from __future__ import annotations

from uuid import UUID

from pydantic import AwareDatetime, Field, model_validator

from contracts.events import (
    SCHEMA_VERSION,
    SUPPORTED_MAJOR,
    EvidenceFrame,
    Identifier,
    ObservedObject,
    ViolationKind,
    _WireModel,
)


def _check_major(version: str) -> None:
    if version.split(".")[0] != SUPPORTED_MAJOR:
        raise ValueError(
            f"unsupported schema_version {version!r}: "
            f"this build reads major version {SUPPORTED_MAJOR}"
        )


class VerificationRequest(_WireModel):
    """Server -> gateway: check ``zone_id`` of ``camera_id`` and say whether it is clear."""

    schema_version: str = Field(default=SCHEMA_VERSION, pattern=r"^\d+\.\d+$")
    request_id: UUID
    case_id: int = Field(ge=1, description="the case being verified (for the gateway's logs)")
    site_id: Identifier
    gateway_id: Identifier
    camera_id: Identifier
    zone_id: Identifier
    kind: ViolationKind
    requested_at: AwareDatetime
    deadline_seconds: float = Field(
        default=60.0, gt=0.0, le=3600.0, description="answer within this long of receipt"
    )

    @model_validator(mode="after")
    def _supported_version(self) -> VerificationRequest:
        _check_major(self.schema_version)
        return self

    def to_wire(self) -> bytes:
        return self.model_dump_json().encode()


class VerificationResult(_WireModel):
    """Gateway -> server: the zone was clear on every frame checked, or what is still there."""

    schema_version: str = Field(default=SCHEMA_VERSION, pattern=r"^\d+\.\d+$")
    request_id: UUID
    site_id: Identifier
    gateway_id: Identifier
    camera_id: Identifier
    zone_id: Identifier
    checked_at: AwareDatetime
    clear: bool
    blocked_share: float | None = Field(
        default=None, ge=0.0, le=1.0, description="fire lanes: the share of the lane blocked"
    )
    objects: list[ObservedObject] = Field(
        default_factory=list, max_length=64, description="what is still in the zone"
    )
    frames_checked: int = Field(default=0, ge=0)
    detail: str = Field(default="", max_length=500)
    evidence: EvidenceFrame | None = Field(
        default=None, description="one frame of the zone as checked; absent when none was seen"
    )

    @model_validator(mode="after")
    def _supported_version(self) -> VerificationResult:
        _check_major(self.schema_version)
        return self

    @model_validator(mode="after")
    def _clear_means_empty(self) -> VerificationResult:
        if self.clear and self.objects:
            raise ValueError("a clear zone cannot list objects still in it")
        if self.clear and self.frames_checked == 0:
            raise ValueError("a zone cannot be clear without a frame checked")
        return self

    def to_wire(self) -> bytes:
        return self.model_dump_json().encode()


__all__ = ["VerificationRequest", "VerificationResult"]
