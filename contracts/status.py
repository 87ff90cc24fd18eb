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


class GatewayStatus(_WireModel):
    schema_version: str = SCHEMA_VERSION
    site_id: Identifier
    gateway_id: Identifier
    state: GatewayState
    at: AwareDatetime | None = Field(default=None, description="absent in the last will")
    outbox_pending: int = Field(default=0, ge=0)

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

    def to_wire(self) -> bytes:
        return self.model_dump_json().encode()
