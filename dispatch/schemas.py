"""What the API shows and takes. ``XPublic`` flows out, ``CaseAction`` flows in."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.events import ViolationKind
from dispatch.config import Department
from dispatch.workflow import Action, CloseReason, Command


class _FromRow(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class EvidencePublic(_FromRow):
    sha256: str
    label: str
    captured_at: datetime
    width: int
    height: int
    url: str = Field(description="where to download the image; its SHA-256 is the file name")
    redacted_sha256: str | None = Field(
        default=None, description="the copy with bystanders' faces blurred, for the console"
    )
    redacted_url: str | None = Field(default=None, description="where to download that copy")


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


class CaseSummary(BaseModel):
    """A case as a list shows it: its facts and links, not its frames."""

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
    location: str | None = Field(default=None, description="the zone's site location")
    plate_text: str | None = Field(default=None, description="the best plate reading")
    plate_confidence: float | None = None
    blocked_share: float | None = Field(
        default=None, description="fire lanes: the share of the lane blocked when last seen"
    )
    chain_broken: bool = Field(
        default=False, description="an evidence hash chain did not verify: frames missing/altered"
    )
    violation_ids: list[UUID] = Field(
        default_factory=list, description="the camera violations merged into this incident"
    )
    related_case_ids: list[int] = Field(
        default_factory=list, description="other cases of the same plate (repeat offender)"
    )
    assignee: str | None = Field(default=None, description="the person in the department on it")
    ack_due_at: datetime | None = Field(default=None, description="the accept deadline")
    evidence_count: int = Field(default=0, description="how many frames the case holds")
    evidence_url: str = Field(default="", description="where its frames are listed")


class CasePublic(CaseSummary):
    """A case with every frame it holds."""

    evidence: list[EvidencePublic]


class CaseDetail(CasePublic):
    object_box: ObjectBoxPublic | None
    transitions: list[TransitionPublic]
    evidence_removed_at: datetime | None = Field(
        default=None,
        description="when its evidence was removed, the case having been closed for the "
        "retention period (server.retention.evidence_days); it holds none since",
    )


class CaseAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Action
    reason: str = Field(default="", max_length=2000)
    department: Department | None = Field(
        default=None, description="for dispatch: the department to send (or transfer) it to"
    )
    duplicate_of: int | None = Field(
        default=None, ge=1, description="for merge: the case this one repeats"
    )
    close_reason: CloseReason | None = Field(
        default=None,
        description="for close: why; false_alarm sends the case's frames to the training data",
    )
    kind: ViolationKind | None = Field(
        default=None, description="for reclassify: the kind of violation it really is"
    )
    assignee: str | None = Field(
        default=None,
        max_length=64,
        description="for assign: a username of the case's department; empty unassigns",
    )

    def command(self) -> Command:
        """The workflow command this request asks for."""
        return Command(
            action=self.action,
            reason=self.reason,
            department=self.department,
            duplicate_of=self.duplicate_of,
            close_reason=self.close_reason,
            kind=self.kind,
            assignee=self.assignee,
        )


MAX_BULK = 200


class BulkAction(CaseAction):
    """One action on many cases; each case is its own transaction."""

    case_ids: list[Annotated[int, Field(ge=1, le=2_147_483_647)]] = Field(
        min_length=1, max_length=MAX_BULK, description=f"at most {MAX_BULK} cases"
    )


class BulkResult(BaseModel):
    case_id: int
    ok: bool
    code: str | None = Field(default=None, description="the refusal's code (error.<code>)")
    detail: str | None = Field(default=None, description="the refusal in English")
    params: dict[str, Any] = Field(default_factory=dict)


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
    problems: list[str] = Field(default_factory=list, description="CameraProblem values")
    detection_path: str | None = Field(
        default=None, description="detector, or foreground_only when weights failed to load"
    )


class ActionProblem(BaseModel):
    """A 422 answer: FastAPI's validation issues, or one sentence naming the missing input."""

    detail: str | list[dict[str, Any]]
