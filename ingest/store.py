"""Idempotent, batched storage of violation events and the incidents (cases) they become.

A batch is one transaction: events are inserted with ON CONFLICT DO NOTHING on their message
id, so a redelivered or resent message is a no-op however many workers see it. Each new event
then joins its violation's case; a violation not seen before either joins an open case of the
same incident (same plate, a zone at the same site location, or the same camera's spot after a
gateway restart, within a time window) or opens a new one. Cross-worker races are settled by the
database: unique keys (a case per violation id, a link per violation) and, on PostgreSQL,
transaction-scoped advisory locks on the plate, location and spot an incident is matched by.

The hot path is set-based: a handful of statements per batch, whatever its size. Rows go in as
multi-row INSERTs (on PostgreSQL one array per column through unnest()), the cases a batch
touches are read in one SELECT, folded in Python and written back in one UPDATE. The cases a
batch opens are routed on plain values (the route_cases callable) and inserted already
dispatched, in one INSERT ... RETURNING, with their audit trail in one more. The steps live in
ingest.writer, one module per concern; this module runs the transaction and reports on it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from contracts.acks import AckOutcome
from contracts.events import ViolationEvent, ViolationKind
from contracts.sites import SiteRegistry, ZoneConfig
from contracts.status import CameraStatus, GatewayStatus
from ingest.config import IngestSettings
from ingest.metrics import IngestMetrics
from ingest.validation import Refusal, zone_of_camera
from ingest.writer.batch import Batch, BatchReport, Placed, StoreResult
from ingest.writer.sequences import MAX_SEQUENCE_JUMP, missing_messages
from ingest.writer.sql import upsert
from ingest.writer.transaction import write_batch
from storage.database import SessionFactory
from storage.evidence_store import EvidenceStore
from storage.routing import CaseRouter
from storage.tables import CameraHealthChange, CameraStatusRow, GatewayStatusRow, utcnow

__all__ = ["MAX_SEQUENCE_JUMP", "IngestService", "StoreResult"]

log = logging.getLogger(__name__)


class IngestService:
    def __init__(
        self,
        session_factory: SessionFactory,
        evidence_store: EvidenceStore,
        registry: SiteRegistry,
        metrics: IngestMetrics,
        route_cases: CaseRouter,
        settings: IngestSettings | None = None,
    ) -> None:
        """``route_cases`` routes the cases a batch opens, in one call a batch."""
        self._sessions = session_factory
        self._evidence = evidence_store
        self._registry = registry
        self._metrics = metrics
        self._route_cases = route_cases
        self._settings = settings or IngestSettings()
        # The zone each (site, gateway, camera, zone, kind) the registry accepted names: the
        # registry is this service's for good, and parse_violation has checked each event once
        # already, so a batch need not walk the registry again per event. Refusals are never
        # kept (they raise each time); the keys are bounded by the registry's own zones.
        self._zones: dict[tuple[str, str, str, str, ViolationKind], ZoneConfig] = {}

    @property
    def session_factory(self) -> SessionFactory:
        return self._sessions

    @property
    def evidence_store(self) -> EvidenceStore:
        """Where this service files evidence (the verification intake files there too)."""
        return self._evidence

    def store(self, event: ViolationEvent) -> AckOutcome:
        """Store one event in its own transaction; see store_batch. Raises its Refusal."""
        outcome = self.store_batch([event])[0]
        if isinstance(outcome, Refusal):
            raise outcome
        return outcome

    def store_batch(self, events: Sequence[ViolationEvent]) -> list[StoreResult]:
        """Store ``events`` in ONE transaction; returns each one's outcome after the commit.

        An event whose sequence jumps absurdly far gets its Refusal as outcome (the rest is
        stored). Raises Refusal for an event the registry does not place (nothing is stored
        then), and lets database and disk errors through so that nothing is confirmed to the
        edge.
        """
        placed = [Placed(event, self._zone(event)) for event in events]
        if not placed:
            return []
        try:
            return self._commit(placed)
        except IntegrityError:
            # Another worker created the same case or link between our read and our write;
            # it has committed now, so a second pass finds and joins it.
            log.info("a concurrent worker raced this batch; storing it again")
            return self._commit(placed)

    def _zone(self, event: ViolationEvent) -> ZoneConfig:
        """zone_of_camera(registry, event), remembered per key; raises its Refusal as it does."""
        key = (event.site_id, event.gateway_id, event.camera_id, event.zone_id, event.kind)
        zone = self._zones.get(key)
        if zone is None:
            zone = self._zones[key] = zone_of_camera(self._registry, event)
        return zone

    def _commit(self, placed: list[Placed]) -> list[StoreResult]:
        report = BatchReport()
        with self._sessions.begin() as session:
            batch = Batch(session, self._settings, report)
            outcomes = write_batch(batch, placed, self._evidence, self._route_cases)
        self._report(report)
        return outcomes

    def _report(self, report: BatchReport) -> None:
        metrics = self._metrics
        metrics.events_stored.inc(report.stored)
        metrics.duplicates.inc(report.duplicates)
        metrics.cases_opened.inc(report.cases_opened)
        for outcome, count in (
            ("warned", report.warnings_issued),
            ("complied", report.warnings_complied),
            ("enforced", report.warnings_enforced),
        ):
            if count:
                metrics.warnings.labels(outcome=outcome).inc(count)
        metrics.violations_merged.inc(len(report.merged))
        for violation_id, case_id, reason in report.merged:
            log.info("violation %s joined case %d (same %s)", violation_id, case_id, reason)
        for camera_id, first, last in report.gaps_opened:
            metrics.sequence_gaps.inc(last - first + 1)
            log.warning(
                "sequence gap on camera %s: %d message(s) missing, sequence %d to %d",
                camera_id,
                last - first + 1,
                first,
                last,
            )
        metrics.sequence_gaps_filled.inc(report.gaps_filled)
        for message_id, fields in report.conflicts:
            metrics.duplicate_conflicts.inc()
            log.warning(
                "conflicting duplicate: message %s differs from the stored one in %s; "
                "kept the first",
                message_id,
                ", ".join(fields),
            )
        if report.gaps_opened or report.gaps_filled:
            self.refresh_missing_gauge()
        for violation_id in report.chains_broken:
            metrics.chain_breaks.inc()
            log.warning("evidence hash chain of violation %s does not verify", violation_id)

    def refresh_missing_gauge(self) -> None:
        """Set the missing-messages gauge from the database (all workers' gaps, after restarts).

        Never raises: a gauge is not worth a failed batch or a server that will not start.
        Each gap counts at most MAX_SEQUENCE_JUMP, so older, huger gaps cannot overflow the sum.
        """
        try:
            with self._sessions() as session:
                missing = missing_messages(session)
        except Exception:
            self._metrics.refresh_failures.labels(metric="sequence_missing").inc()
            log.exception("cannot refresh the sequence-missing gauge; it keeps its last value")
            return
        self._metrics.sequence_missing.set(missing)

    def record_gateway_status(self, status: GatewayStatus) -> None:
        values = {
            "gateway_id": status.gateway_id,
            "site_id": status.site_id,
            "state": status.state.value,
            "outbox_pending": status.outbox_pending,
            "at": status.at,
            "received_at": utcnow(),
        }
        if status.rules_version is not None:  # a last will knows none: keep the last reported
            values["rules_version"] = status.rules_version
        with self._sessions.begin() as session:
            upsert(session, GatewayStatusRow, values, key="gateway_id")
        self._metrics.status_messages.inc()

    def record_camera_status(self, status: CameraStatus) -> None:
        values = {
            "camera_id": status.camera_id,
            "site_id": status.site_id,
            "gateway_id": status.gateway_id,
            "health": status.health.value,
            "detail": status.detail,
            "frames_read": status.frames_read,
            "detection_fps": status.detection_fps,
            "detector": status.detector,
            "problems": [problem.value for problem in status.problems],
            "detection_path": status.detection_path.value,
            "at": status.at,
            "received_at": utcnow(),
        }
        with self._sessions.begin() as session:
            before = session.scalar(
                select(CameraStatusRow.health).where(CameraStatusRow.camera_id == status.camera_id)
            )
            # The report's camera uptime reads this log: one row per change of health, not per
            # status message (those come every few seconds).
            if before != status.health.value:
                session.add(
                    CameraHealthChange(
                        camera_id=status.camera_id,
                        site_id=status.site_id,
                        health=status.health.value,
                        at=status.at,
                    )
                )
            upsert(session, CameraStatusRow, values, key="camera_id")
        self._metrics.status_messages.inc()
