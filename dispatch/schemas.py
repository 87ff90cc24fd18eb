"""What the API shows and takes. ``XPublic`` flows out, ``CaseAction`` flows in."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from dispatch.config import Department
from dispatch.workflow import Action


class _FromRow(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class EvidencePublic(_FromRow):
    sha256: str
    label: str
    captured_at: datetime
    width: int
    height: int
    url: str = Field(description="where to download the image; its SHA-256 is the file name")


class TransitionPublic(_FromRow):
    from_state: str | None
    to_state: str
    actor: str
    reason: str
    at: datetime


class ObjectBoxPublic(BaseModel):
    x1: float
    y1: float
    x2: float
    y2: float


class CasePublic(BaseModel):
    id: int
    violation_id: UUID
    kind: str
    state: str
    department: str | None
    tier: str | None
    priority: str | None
    sla_due_at: datetime | None
    overdue: bool
    site_id: str
    gateway_id: str
    camera_id: str
    zone_id: str
    zone_kind: str
    started_at: datetime
    opened_at: datetime
    last_observed_at: datetime
    cleared_at: datetime | None
    dwell_seconds: float
    object_class: str | None
    object_confidence: float | None
    created_at: datetime
    updated_at: datetime
    evidence: list[EvidencePublic]


class CaseDetail(CasePublic):
    object_box: ObjectBoxPublic | None
    transitions: list[TransitionPublic]


class CaseAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Action
    reason: str = Field(default="", max_length=2000)
    department: Department | None = Field(
        default=None, description="for dispatch: the department to send (or transfer) it to"
    )


class CameraPublic(BaseModel):
    site_id: str
    gateway_id: str
    camera_id: str
    name: str
    health: str | None = Field(description="the last health it reported; null if never heard")
    detail: str
    reported_at: datetime | None
    frames_read: int
    detection_fps: float
    gateway_state: str | None
    gateway_reported_at: datetime | None
    gateway_outbox_pending: int | None
