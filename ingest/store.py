"""Idempotent storage of violation events and the case each violation becomes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contracts.acks import AckOutcome
from contracts.events import Phase, ViolationEvent
from contracts.sites import SiteRegistry, ZoneConfig
from contracts.status import CameraStatus, GatewayStatus
from ingest.database import SessionFactory
from ingest.evidence_store import EvidenceStore
from ingest.metrics import IngestMetrics
from ingest.tables import (
    CameraStatusRow,
    Case,
    CaseEvidence,
    CaseState,
    CaseTransition,
    Event,
    Evidence,
    GatewayStatusRow,
    utcnow,
)
from ingest.validation import zone_of_camera

log = logging.getLogger(__name__)

CaseOpenedHook = Callable[[Session, Case], None]
"""Called inside the storing transaction when a violation first becomes a case."""

INGEST_ACTOR = "ingest"


class IngestService:
    def __init__(
        self,
        session_factory: SessionFactory,
        evidence_store: EvidenceStore,
        registry: SiteRegistry,
        metrics: IngestMetrics,
        on_case_opened: CaseOpenedHook,
    ) -> None:
        self._sessions = session_factory
        self._evidence = evidence_store
        self._registry = registry
        self._metrics = metrics
        self._on_case_opened = on_case_opened

    def store(self, event: ViolationEvent) -> AckOutcome:
        """Store ``event`` in one transaction; returns only after the commit.

        Raises Refusal for an event the registry does not place, and lets database errors
        through so that nothing is confirmed to the edge.
        """
        zone = zone_of_camera(self._registry, event)
        try:
            with self._sessions.begin() as session:
                if session.get(Event, event.message_id) is not None:
                    self._metrics.duplicates.inc()
                    return AckOutcome.DUPLICATE
                gap = self._sequence_gap(session, event)
                now = utcnow()
                session.add(_event_row(event, now))
                session.flush()  # the primary key settles a concurrent twin here
                self._store_evidence(session, event, now)
                opened = self._merge_case(session, event, zone, now)
        except IntegrityError:
            with self._sessions() as session:
                if session.get(Event, event.message_id) is None:
                    raise
            self._metrics.duplicates.inc()
            return AckOutcome.DUPLICATE
        self._metrics.events_stored.inc()
        if opened:
            self._metrics.cases_opened.inc()
        if gap:
            self._metrics.sequence_gaps.inc(gap)
            log.warning(
                "sequence gap on camera %s: %d message(s) missing before sequence %d",
                event.camera_id,
                gap,
                event.sequence,
            )
        return AckOutcome.STORED

    def record_gateway_status(self, status: GatewayStatus) -> None:
        with self._sessions.begin() as session:
            row = session.get(GatewayStatusRow, status.gateway_id)
            if row is None:
                row = GatewayStatusRow(gateway_id=status.gateway_id)
                session.add(row)
            row.site_id = status.site_id
            row.state = status.state
            row.outbox_pending = status.outbox_pending
            row.at = status.at
            row.received_at = utcnow()
        self._metrics.status_messages.inc()

    def record_camera_status(self, status: CameraStatus) -> None:
        with self._sessions.begin() as session:
            row = session.get(CameraStatusRow, status.camera_id)
            if row is None:
                row = CameraStatusRow(camera_id=status.camera_id)
                session.add(row)
            row.site_id = status.site_id
            row.gateway_id = status.gateway_id
            row.health = status.health
            row.detail = status.detail
            row.frames_read = status.frames_read
            row.detection_fps = status.detection_fps
            row.detector = status.detector
            row.at = status.at
            row.received_at = utcnow()
        self._metrics.status_messages.inc()

    @staticmethod
    def _sequence_gap(session: Session, event: ViolationEvent) -> int:
        highest = session.scalar(
            select(func.max(Event.sequence)).where(Event.camera_id == event.camera_id)
        )
        if highest is None or event.sequence <= highest + 1:
            return 0
        return int(event.sequence - highest - 1)

    def _store_evidence(self, session: Session, event: ViolationEvent, now: datetime) -> None:
        # Files first: an orphaned content-addressed file is harmless, a row without a file is not.
        for frame in event.evidence:
            self._evidence.put(frame.data, frame.sha256)
            if session.get(Evidence, frame.sha256) is None:
                session.add(
                    Evidence(
                        sha256=frame.sha256,
                        content_type=frame.content_type,
                        size=len(frame.data),
                        width=frame.width,
                        height=frame.height,
                        stored_at=now,
                    )
                )
        session.flush()

    def _merge_case(
        self, session: Session, event: ViolationEvent, zone: ZoneConfig, now: datetime
    ) -> bool:
        """Fold this phase into its violation's case; True when the case is new."""
        case = session.scalar(select(Case).where(Case.violation_id == event.violation_id))
        created = case is None
        if case is None:
            case = _new_case(event, zone, now)
            session.add(case)
            session.flush()
            session.add(
                CaseTransition(
                    case=case,
                    from_state=None,
                    to_state=CaseState.NEW,
                    actor=INGEST_ACTOR,
                    reason=f"violation {event.violation_id} {event.phase} "
                    f"on camera {event.camera_id}",
                    at=now,
                )
            )
        else:
            _fold_phase(case, event, now)
        known = set(
            session.scalars(select(CaseEvidence.sha256).where(CaseEvidence.case_id == case.id))
        )
        for frame in event.evidence:
            if frame.sha256 not in known:
                known.add(frame.sha256)
                session.add(
                    CaseEvidence(
                        case=case,
                        sha256=frame.sha256,
                        label=frame.label,
                        captured_at=frame.captured_at,
                        width=frame.width,
                        height=frame.height,
                    )
                )
        session.flush()
        if created:
            self._on_case_opened(session, case)
        return created


def _event_row(event: ViolationEvent, now: datetime) -> Event:
    return Event(
        message_id=event.message_id,
        violation_id=event.violation_id,
        camera_id=event.camera_id,
        site_id=event.site_id,
        gateway_id=event.gateway_id,
        sequence=event.sequence,
        phase=event.phase,
        kind=event.kind,
        zone_id=event.zone_id,
        observed_at=event.observed_at,
        received_at=now,
        historical=event.historical,
        payload=event.model_dump(mode="json", exclude={"evidence": {"__all__": {"data"}}}),
    )


def _new_case(event: ViolationEvent, zone: ZoneConfig, now: datetime) -> Case:
    case = Case(
        violation_id=event.violation_id,
        kind=event.kind,
        site_id=event.site_id,
        gateway_id=event.gateway_id,
        camera_id=event.camera_id,
        zone_id=event.zone_id,
        zone_kind=zone.kind,
        state=CaseState.NEW,
        overdue=False,
        started_at=event.started_at,
        opened_at=event.observed_at,
        last_observed_at=event.observed_at,
        cleared_at=event.observed_at if event.phase is Phase.CLEARED else None,
        dwell_seconds=event.dwell_seconds,
        created_at=now,
        updated_at=now,
    )
    _set_object(case, event)
    return case


def _fold_phase(case: Case, event: ViolationEvent, now: datetime) -> None:
    """Phases may arrive in any order (outbox replay): keep the earliest start, the latest sight."""
    case.started_at = min(case.started_at, event.started_at)
    if event.phase is Phase.OPENED:
        case.opened_at = event.observed_at
    else:
        case.opened_at = min(case.opened_at, event.observed_at)
    if event.phase is Phase.CLEARED:
        case.cleared_at = event.observed_at
    if event.observed_at >= case.last_observed_at:
        case.last_observed_at = event.observed_at
        _set_object(case, event)
    case.dwell_seconds = max(case.dwell_seconds, event.dwell_seconds)
    case.updated_at = now


def _set_object(case: Case, event: ViolationEvent) -> None:
    if event.object is None:
        return
    case.object_class = event.object.class_name
    case.object_confidence = event.object.confidence
    case.box_x1, case.box_y1 = event.object.box.x1, event.object.box.y1
    case.box_x2, case.box_y2 = event.object.box.x2, event.object.box.y2
