"""Gateway and camera status: retained messages; the gateway's is also its last will."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, Field

from contracts.events import SCHEMA_VERSION, Identifier, _WireModel


class GatewayState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"  # published by the broker as the last will, or on clean shutdown


class CameraHealth(StrEnum):
    OK = "ok"
    CONNECTING = "connecting"
    OFFLINE = "offline"
    DEGRADED = "degraded"


class CameraProblem(StrEnum):
    """What is wrong with a camera's picture; several may hold at once."""

    OFFLINE = "offline"  # no frames arrive
    FROZEN = "frozen"  # frames arrive but the picture does not change
    COVERED = "covered"  # lens covered or the picture black / uniform
    BLURRED = "blurred"  # out of focus, fogged or smeared
    MOVED = "moved"  # the view no longer matches its baseline: zones point at the wrong place
    NO_DETECTOR = "no_detector"  # model weights could not load; class-agnostic path only


class DetectionPath(StrEnum):
    DETECTOR = "detector"  # the object detector, plus the class-agnostic path on fire lanes
    FOREGROUND_ONLY = "foreground_only"  # fallback: stationary-foreground analysis alone


class GatewayStatus(_WireModel):
    schema_version: str = SCHEMA_VERSION
    site_id: Identifier
    gateway_id: Identifier
    state: GatewayState
    at: AwareDatetime | None = Field(default=None, description="absent in the last will")
    outbox_pending: int = Field(default=0, ge=0)
    rules_version: int | None = Field(
        default=None,
        ge=1,
        le=2**63 - 1,
        description="the version of the signed rule document the gateway runs; None: none",
    )
    ack_batch: bool = Field(
        default=False,
        description=(
            "the gateway reads IngestAckBatch on its ack topic; ingest sends it batched acks "
            "only then (absent: an older gateway, which gets one IngestAck per message)"
        ),
    )

    def to_wire(self) -> bytes:
        return self.model_dump_json().encode()


class CameraStatus(_WireModel):
    schema_version: str = SCHEMA_VERSION
    site_id: Identifier
    gateway_id: Identifier
    camera_id: Identifier
    health: CameraHealth
    at: AwareDatetime
    detail: str = Field(default="", max_length=500)
    frames_read: int = Field(default=0, ge=0)
    detection_fps: float = Field(default=0.0, ge=0.0)
    detector: str = Field(default="", max_length=128)
    problems: list[CameraProblem] = Field(default_factory=list, max_length=8)
    detection_path: DetectionPath = DetectionPath.DETECTOR

    def to_wire(self) -> bytes:
        return self.model_dump_json().encode()
