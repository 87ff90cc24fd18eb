"""A case as a batch folds messages into it: plain rows, folded in Python, no ORM bookkeeping."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from contracts.events import Phase, ViolationEvent
from contracts.sites import ZoneConfig
from storage.routing import OpenedCase
from storage.tables import Base, Case, CaseState, CaseViolation

CASES = Base.metadata.tables[Case.__tablename__]
_GONE = (Phase.CLEARED, Phase.COMPLIED)
VIOLATION_LINKS = Base.metadata.tables[CaseViolation.__tablename__]

# The case columns ingest reads to match incidents and writes when it folds a message in.
_IDENTITY_COLUMNS = (
    "id",
    "violation_id",
    "kind",
    "site_id",
    "gateway_id",
    "camera_id",
    "zone_id",
    "zone_kind",
    "location",
    "state",
)
FOLDED_COLUMNS = (
    "started_at",
    "opened_at",
    "cleared_at",
    "last_observed_at",
    "dwell_seconds",
    "object_class",
    "object_confidence",
    "box_x1",
    "box_y1",
    "box_x2",
    "box_y2",
    "blocked_share",
    "plate_text",
    "plate_confidence",
    "plate_votes",
    "updated_at",
)


CASE_FIELDS = (*_IDENTITY_COLUMNS, *FOLDED_COLUMNS)


def case_columns() -> list[Any]:
    """The cases columns CaseRow is built from, in its field order."""
    return [CASES.c[name] for name in CASE_FIELDS]


@dataclass(slots=True, eq=False)
class CaseRow:
    """A case as one batch folds messages into it: plain attributes, no ORM bookkeeping."""

    id: int | None  # None until a new case is flushed
    violation_id: UUID
    kind: str
    site_id: str
    gateway_id: str
    camera_id: str
    zone_id: str
    zone_kind: str
    location: str | None
    state: str
    started_at: datetime
    opened_at: datetime
    cleared_at: datetime | None
    last_observed_at: datetime
    dwell_seconds: float
    object_class: str | None
    object_confidence: float | None
    box_x1: float | None
    box_y1: float | None
    box_x2: float | None
    box_y2: float | None
    blocked_share: float | None
    plate_text: str | None
    plate_confidence: float | None
    plate_votes: int | None
    updated_at: datetime
    transitions: list[tuple[str | None, str, str, dict[str, Any]]] = field(default_factory=list)
    """Audit-trail entries this batch adds: (from state, to state, reason, detail); the detail
    holds the reason's facts, which the console tells in the page's language."""
    changed: bool = False

    def require_id(self) -> int:
        if self.id is None:
            raise RuntimeError(f"case of violation {self.violation_id} has no id before its flush")
        return self.id

    def to_route(self) -> OpenedCase:
        return OpenedCase(
            self.violation_id,
            self.kind,
            self.zone_kind,
            self.zone_id,
            self.site_id,
            opened_at=self.opened_at,
            received_at=self.updated_at,
        )


def new_case(event: ViolationEvent, zone: ZoneConfig, now: datetime) -> CaseRow:
    case = CaseRow(
        id=None,
        violation_id=event.violation_id,
        kind=event.kind.value,
        site_id=event.site_id,
        gateway_id=event.gateway_id,
        camera_id=event.camera_id,
        zone_id=event.zone_id,
        zone_kind=zone.kind.value,
        location=zone.location,
        state=CaseState.NEW,
        started_at=event.started_at,
        opened_at=event.observed_at,
        cleared_at=event.observed_at if event.phase in _GONE else None,
        last_observed_at=event.observed_at,
        dwell_seconds=event.dwell_seconds,
        object_class=None,
        object_confidence=None,
        box_x1=None,
        box_y1=None,
        box_x2=None,
        box_y2=None,
        blocked_share=event.blocked_share,
        plate_text=None,
        plate_confidence=None,
        plate_votes=None,
        updated_at=now,
    )
    _set_object(case, event)
    _keep_best_plate(case, event)
    reason = f"violation {event.violation_id} {event.phase} on camera {event.camera_id}"
    facts: dict[str, Any] = {
        "why": "opened",
        "violation_id": str(event.violation_id),
        "phase": event.phase.value,
        "camera_id": event.camera_id,
    }
    case.transitions.append((None, CaseState.NEW, reason, facts))
    if event.phase is Phase.WARNED and event.warning is not None:
        # The warning stage: no department before the grace ends (ingest.writer.warnings).
        warned = f"warned by rule {event.warning.rule_id} until {event.warning.grace_until}"
        facts = {
            "why": "warned",
            "violation_id": str(event.violation_id),
            "rule_id": event.warning.rule_id,
            "warned_at": event.warning.warned_at.isoformat(),
            "grace_until": event.warning.grace_until.isoformat(),
            "announced": event.warning.announced,
        }
        case.transitions.append((CaseState.NEW, CaseState.WARNED, warned, facts))
    return case


def note_merge(case: CaseRow, event: ViolationEvent, reason: str, now: datetime) -> None:
    """Fold a second camera's violation into ``case`` and say so in its audit trail."""
    fold_phase(case, event, now)
    merged = f"merged violation {event.violation_id} from camera {event.camera_id} (same {reason})"
    facts = {
        "why": "merged_violation",
        "violation_id": str(event.violation_id),
        "camera_id": event.camera_id,
        "link": reason,
    }
    case.transitions.append((case.state, case.state, merged, facts))


def fold_phase(case: CaseRow, event: ViolationEvent, now: datetime) -> bool:
    """Phases may arrive in any order (outbox replay): keep the earliest start, the latest sight.

    Returns True when the case's best plate reading changed.
    """
    case.changed = True
    case.started_at = min(case.started_at, event.started_at)
    if event.phase is Phase.OPENED:
        case.opened_at = event.observed_at
    else:
        case.opened_at = min(case.opened_at, event.observed_at)
    if event.phase in _GONE:
        case.cleared_at = event.observed_at
    if event.observed_at >= case.last_observed_at:
        case.last_observed_at = event.observed_at
        _set_object(case, event)
        if event.blocked_share is not None:
            case.blocked_share = event.blocked_share  # the lane as it is now
    case.dwell_seconds = max(case.dwell_seconds, event.dwell_seconds)
    case.updated_at = now
    return _keep_best_plate(case, event)


def _keep_best_plate(case: CaseRow, event: ViolationEvent) -> bool:
    """Keep the most confident reading (more votes break a tie); True when the text changed."""
    plate = event.plate
    if plate is None:
        return False
    current = (case.plate_confidence, case.plate_votes or 0)
    if case.plate_confidence is not None and (plate.confidence, plate.votes) <= current:
        return False
    changed = case.plate_text != plate.text
    case.plate_text = plate.text
    case.plate_confidence = plate.confidence
    case.plate_votes = plate.votes
    return changed


def _set_object(case: CaseRow, event: ViolationEvent) -> None:
    if event.object is None:
        return
    case.object_class = event.object.class_name
    case.object_confidence = event.object.confidence
    case.box_x1, case.box_y1 = event.object.box.x1, event.object.box.y1
    case.box_x2, case.box_y2 = event.object.box.x2, event.object.box.y2
