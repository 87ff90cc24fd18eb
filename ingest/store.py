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
dispatched, in one INSERT ... RETURNING, with their audit trail in one more.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import (
    JSON,
    Column,
    Dialect,
    Select,
    Table,
    and_,
    bindparam,
    func,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import case as sql_case
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contracts.acks import AckOutcome
from contracts.events import GENESIS_CHAIN, Phase, ViolationEvent, chain_link
from contracts.sites import SiteRegistry, ZoneConfig
from contracts.status import CameraStatus, GatewayStatus
from ingest.config import IngestSettings
from ingest.metrics import IngestMetrics
from ingest.validation import Refusal, RefusalReason, zone_of_camera
from storage.audit import chain_entries
from storage.database import SessionFactory
from storage.evidence_store import EvidenceStore
from storage.routing import CaseRouter, OpenedCase, RouteDecision
from storage.tables import (
    OPEN_STATES,
    Base,
    CameraSequence,
    CameraStatusRow,
    Case,
    CaseEvidence,
    CaseLink,
    CaseState,
    CaseTransition,
    CaseViolation,
    Event,
    Evidence,
    GatewayStatusRow,
    SequenceGap,
    utcnow,
)

log = logging.getLogger(__name__)


INGEST_ACTOR = "ingest"

MAX_SEQUENCE_JUMP = 1_000_000
"""Furthest a camera's sequence may run ahead of the highest stored: a bigger jump is refused
(sequence_jump), so a gap never spans more messages than this."""

StoreResult = AckOutcome | Refusal
"""A stored message's outcome, or why it was refused (nothing of it is stored then)."""


class LinkReason:
    ORIGIN = "origin"  # the violation that opened the case
    PLATE = "plate"  # another camera's violation of the same plate
    LOCATION = "location"  # another camera's violation at the same site location
    SPOT = "spot"  # the same camera's violation on the same spot: its gateway lost its state
    SAME_PLATE = "same_plate"  # case link: a repeat offender


@dataclass(frozen=True, slots=True)
class _Placed:
    event: ViolationEvent
    zone: ZoneConfig


@dataclass
class _BatchReport:
    """What a committed batch changed, for metrics and logs after the commit."""

    stored: int = 0
    duplicates: int = 0
    cases_opened: int = 0
    merged: list[tuple[UUID, int, str]] = field(default_factory=list)
    gaps_opened: list[tuple[str, int, int]] = field(default_factory=list)
    gaps_filled: int = 0
    chains_broken: list[UUID] = field(default_factory=list)
    conflicts: list[tuple[UUID, list[str]]] = field(default_factory=list)  # and differing fields


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
        placed = [_Placed(event, zone_of_camera(self._registry, event)) for event in events]
        if not placed:
            return []
        try:
            return self._commit(placed)
        except IntegrityError:
            # Another worker created the same case or link between our read and our write;
            # it has committed now, so a second pass finds and joins it.
            log.info("a concurrent worker raced this batch; storing it again")
            return self._commit(placed)

    def _commit(self, placed: list[_Placed]) -> list[StoreResult]:
        report = _BatchReport()
        with self._sessions.begin() as session:
            outcomes = _BatchWriter(self, session, report).write(placed)
        self._report(report)
        return outcomes

    def _report(self, report: _BatchReport) -> None:
        metrics = self._metrics
        metrics.events_stored.inc(report.stored)
        metrics.duplicates.inc(report.duplicates)
        metrics.cases_opened.inc(report.cases_opened)
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

    def _route(self, cases: list[_CaseRow]) -> list[RouteDecision]:
        decisions = self._route_cases([case.to_route() for case in cases])
        if len(decisions) != len(cases):
            raise RuntimeError(
                f"routing returned {len(decisions)} decision(s) for {len(cases)} opened case(s)"
            )
        return decisions

    def refresh_missing_gauge(self) -> None:
        """Set the missing-messages gauge from the database (all workers' gaps, after restarts).

        Never raises: a gauge is not worth a failed batch or a server that will not start.
        Each gap counts at most MAX_SEQUENCE_JUMP, so older, huger gaps cannot overflow the sum.
        """
        span = SequenceGap.last - SequenceGap.first  # never overflows: 0 <= first <= last
        capped = sql_case((span < MAX_SEQUENCE_JUMP, span + 1), else_=MAX_SEQUENCE_JUMP)
        try:
            with self._sessions() as session:
                missing = session.scalar(select(func.coalesce(func.sum(capped), 0)))
        except Exception:
            self._metrics.refresh_failures.labels(metric="sequence_missing").inc()
            log.exception("cannot refresh the sequence-missing gauge; it keeps its last value")
            return
        self._metrics.sequence_missing.set(int(missing or 0))

    def record_gateway_status(self, status: GatewayStatus) -> None:
        values = {
            "gateway_id": status.gateway_id,
            "site_id": status.site_id,
            "state": status.state.value,
            "outbox_pending": status.outbox_pending,
            "at": status.at,
            "received_at": utcnow(),
        }
        with self._sessions.begin() as session:
            _upsert(session, GatewayStatusRow, values, key="gateway_id")
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
            _upsert(session, CameraStatusRow, values, key="camera_id")
        self._metrics.status_messages.inc()


class _BatchWriter:
    """The steps of one batch, inside its transaction."""

    def __init__(self, service: IngestService, session: Session, report: _BatchReport) -> None:
        self._service = service
        self._session = session
        self._report = report
        self._settings = service._settings
        self._now = utcnow()
        self._postgres = session.get_bind().dialect.name == "postgresql"

    def write(self, placed: list[_Placed]) -> list[StoreResult]:
        first_of: dict[UUID, int] = {}
        for index, item in enumerate(placed):
            first_of.setdefault(item.event.message_id, index)
        unique = [placed[index] for index in first_of.values()]
        refused = self._refuse_jumps(unique)
        inserted = self._insert_events([i for i in unique if i.event.message_id not in refused])
        outcomes: list[StoreResult] = [AckOutcome.DUPLICATE] * len(placed)
        for message_id, index in first_of.items():
            if message_id in inserted:
                outcomes[index] = AckOutcome.STORED
        for index, item in enumerate(placed):
            if item.event.message_id in refused:
                outcomes[index] = refused[item.event.message_id]
        fresh = [item for item in unique if item.event.message_id in inserted]
        self._report.stored = len(fresh)
        self._report.duplicates = outcomes.count(AckOutcome.DUPLICATE)
        self._find_conflicts(placed, first_of, inserted | set(refused))
        if fresh:
            files_written = self._store_evidence(fresh)
            cases = self._attach_to_cases(fresh)
            self._link_evidence(fresh, cases)
            self._verify_chains(fresh, cases)
            self._track_sequences(fresh)  # last: its row locks are held only until commit
            if files_written:  # the rows commit only after their files are durable
                self._service._evidence.sync()
        return outcomes

    def _refuse_jumps(self, unique: list[_Placed]) -> dict[UUID, Refusal]:
        """Events further than MAX_SEQUENCE_JUMP ahead of their camera's highest sequence.

        A camera's first message sets its start wherever it is. Read without a lock: a race
        with another worker only moves the bound by one batch.
        """
        by_camera: dict[str, list[_Placed]] = defaultdict(list)
        for item in unique:
            by_camera[item.event.camera_id].append(item)
        highest: dict[str, int] = dict(
            self._session.execute(
                select(_SEQUENCES.c.camera_id, _SEQUENCES.c.highest).where(
                    _SEQUENCES.c.camera_id.in_(sorted(by_camera))
                )
            ).all()
        )
        refused: dict[UUID, Refusal] = {}
        for camera, items in by_camera.items():
            top = highest.get(camera)
            for item in sorted(items, key=lambda placed: placed.event.sequence):
                sequence = item.event.sequence
                if top is not None and sequence - top > MAX_SEQUENCE_JUMP:
                    refused[item.event.message_id] = Refusal(
                        RefusalReason.SEQUENCE_JUMP,
                        f"sequence {sequence} is {sequence - top} ahead of camera {camera}'s "
                        f"highest {top}; at most {MAX_SEQUENCE_JUMP} is accepted",
                        item.event.message_id,
                    )
                    continue
                top = sequence if top is None else max(top, sequence)
        return refused

    def _find_conflicts(
        self, placed: list[_Placed], first_of: dict[UUID, int], settled: set[UUID]
    ) -> None:
        """Duplicates whose payload differs from the first one's (the one kept)."""
        firsts = set(first_of.values())
        again = {item.event.message_id for index, item in enumerate(placed) if index not in firsts}
        kept = {  # only ids sent twice in this batch: the hot path dumps nothing extra
            message_id: _comparable(placed[first_of[message_id]].event)
            for message_id in again & settled
        }
        earlier = [message_id for message_id in first_of if message_id not in settled]
        if earlier:  # stored by an earlier batch: compare with what the database holds
            for message_id, payload in self._session.execute(
                select(Event.message_id, Event.payload).where(Event.message_id.in_(earlier))
            ):
                kept[message_id] = _comparable_payload(payload)
        for index, item in enumerate(placed):
            message_id = item.event.message_id
            if first_of[message_id] == index and message_id in settled:
                continue  # the first copy itself
            first = kept.get(message_id)
            if first is None:
                continue  # in neither: only possible in a race; the redelivery compares
            new = _comparable(item.event)
            if new != first:
                differ = sorted(
                    key for key in first.keys() | new.keys() if first.get(key) != new.get(key)
                )
                self._report.conflicts.append((message_id, differ))

    def _insert_events(self, unique: list[_Placed]) -> set[UUID]:
        rows = [_event_values(item.event, self._now) for item in unique]
        inserted = _bulk_insert(
            self._session, Event, rows, on_conflict=["message_id"], returning=["message_id"]
        )
        return {row.message_id for row in inserted}

    def _store_evidence(self, fresh: list[_Placed]) -> int:
        """Insert the evidence rows; write the files of the rows that are new.

        A row that already exists was committed after its file was durable, so only the
        images this transaction inserts need writing (the contract already checked each hash).
        """
        files: dict[str, bytes] = {}
        rows: dict[str, dict[str, Any]] = {}
        for item in fresh:
            for frame in item.event.evidence:
                copies = [(frame.sha256, frame.data)]
                if frame.redacted is not None:
                    copies.append((frame.redacted.sha256, frame.redacted.data))
                for sha256, data in copies:
                    files[sha256] = data
                    rows[sha256] = {
                        "sha256": sha256,
                        "content_type": frame.content_type,
                        "size": len(data),
                        "width": frame.width,
                        "height": frame.height,
                        "stored_at": self._now,
                    }
        if not rows:
            return 0
        new = [
            row.sha256
            for row in _bulk_insert(
                self._session,
                Evidence,
                list(rows.values()),
                on_conflict=["sha256"],
                returning=["sha256"],
            )
        ]
        return self._service._evidence.write_unsynced((sha256, files[sha256]) for sha256 in new)

    def _attach_to_cases(self, fresh: list[_Placed]) -> dict[UUID, _CaseRow]:
        """Fold each event into its incident's case; returns violation id -> case.

        Cases are folded as plain rows in Python and written back with one statement per
        kind of change.
        """
        session = self._session
        by_violation: dict[UUID, list[_Placed]] = defaultdict(list)
        for item in fresh:
            by_violation[item.event.violation_id].append(item)
        loaded: dict[int, _CaseRow] = {}  # by case id: one row object per case in the batch
        links: dict[UUID, _CaseRow] = {}
        for linked_violation, row in self._load_cases(
            select(_LINKS.c.violation_id.label("linked_violation_id"), *_case_columns())
            .join_from(_LINKS, _CASES, _LINKS.c.case_id == _CASES.c.id)
            .where(_LINKS.c.violation_id.in_(list(by_violation))),
            loaded,
        ):
            links[linked_violation] = row
        firsts = [
            min(group, key=lambda item: item.event.sequence)
            for violation_id, group in by_violation.items()
            if violation_id not in links
        ]
        self._lock_incident_keys(firsts)
        candidates = self._open_incidents(firsts, loaded)

        cases: dict[UUID, _CaseRow] = {}
        opened: list[tuple[_CaseRow, _Placed]] = []
        new_links: list[tuple[_CaseRow, _Placed, str]] = []
        plate_changed: dict[int, _CaseRow] = {}  # by id(): cases whose best plate changed
        for violation_id, group in by_violation.items():
            group.sort(key=lambda item: item.event.sequence)
            rest = group
            case = links.get(violation_id)
            if case is None:
                first = group[0]
                found = _find_incident(first, candidates.near(first), self._settings)
                if found is None:
                    case = _new_case(first.event, first.zone, self._now)
                    opened.append((case, first))
                    candidates.add(case)
                    new_links.append((case, first, LinkReason.ORIGIN))
                    if case.plate_text is not None:
                        plate_changed[id(case)] = case
                    rest = group[1:]
                else:
                    case, reason = found
                    new_links.append((case, first, reason))
                    _note_merge(case, first.event, reason, self._now)
            for item in rest:
                if _fold_phase(case, item.event, self._now):
                    plate_changed[id(case)] = case
                    candidates.add(case)
            cases[violation_id] = case
        self._open_cases(opened)
        self._write_back([case for case in loaded.values() if case.changed])
        _bulk_insert(
            session,
            CaseViolation,
            [
                {
                    "violation_id": item.event.violation_id,
                    "case_id": case.id,
                    "camera_id": item.event.camera_id,
                    "zone_id": item.event.zone_id,
                    "reason": reason,
                    "chain_broken": False,
                    "linked_at": self._now,
                }
                for case, item, reason in new_links
            ],
        )
        for case, item, reason in new_links:
            if reason != LinkReason.ORIGIN:
                self._report.merged.append((item.event.violation_id, case.require_id(), reason))
        self._report.cases_opened = len(opened)
        self._link_repeat_offenders(list(plate_changed.values()))
        return cases

    def _load_cases(
        self, query: Select[Any], loaded: dict[int, _CaseRow]
    ) -> Iterator[tuple[Any, _CaseRow]]:
        """Run ``query`` (its first column any key, then _case_columns()); reuse known rows."""
        for key, *values in self._session.execute(query):
            row = _CaseRow(**dict(zip(_CASE_FIELDS, values, strict=True)))
            yield key, loaded.setdefault(row.require_id(), row)

    def _open_cases(self, opened: list[tuple[_CaseRow, _Placed]]) -> None:
        """Route the batch's new cases, insert them dispatched (one INSERT returning their ids)
        and their audit trail: ingest's steps, then the dispatch (one INSERT)."""
        if not opened:
            return
        cases = [case for case, _first in opened]
        decisions = self._service._route(cases)
        rows: list[dict[str, Any]] = []
        for case, decision in zip(cases, decisions, strict=True):
            values = {name: getattr(case, name) for name in _CASE_FIELDS if name != "id"}
            values.update(
                state=CaseState.DISPATCHED.value,
                department=decision.department,
                tier=decision.tier,
                priority=decision.priority,
                ack_due_at=decision.ack_due_at,
                sla_due_at=decision.sla_due_at,
                escalate_to=decision.escalate_to,
                escalation_level=0,
                overdue=False,
                chain_broken=False,
                created_at=self._now,
            )
            rows.append(values)
        inserted = _bulk_insert(self._session, Case, rows, returning=["violation_id", "id"])
        ids: dict[UUID, int] = {row.violation_id: row.id for row in inserted}
        transitions: list[dict[str, Any]] = []
        for case, decision in zip(cases, decisions, strict=True):
            case.id = ids[case.violation_id]
            steps = [(*step, INGEST_ACTOR) for step in case.transitions]
            steps.append((case.state, CaseState.DISPATCHED, decision.reason, decision.actor))
            transitions.extend(
                {
                    "case_id": case.id,
                    "action": _ingest_action(from_state, to_state),
                    "from_state": from_state,
                    "to_state": to_state,
                    "actor": actor,
                    "reason": reason,
                    "at": self._now,
                    "detail": {"department": decision.department}
                    if to_state == CaseState.DISPATCHED
                    else {},
                }
                for from_state, to_state, reason, actor in steps
            )
            case.state = CaseState.DISPATCHED
            case.transitions.clear()  # stored now: never to be written twice
        _bulk_insert(self._session, CaseTransition, chain_entries(self._session, transitions))

    def _write_back(self, changed: list[_CaseRow]) -> None:
        """Write back every stored case the batch folded messages into, in one UPDATE."""
        if not changed:
            return
        session = self._session
        _bulk_update(
            session,
            Case,
            key="id",
            rows=[
                {"id": case.id, **{name: getattr(case, name) for name in _FOLDED_COLUMNS}}
                for case in changed
            ],
        )
        transitions = [
            {
                "case_id": case.id,
                "action": _ingest_action(from_state, to_state),
                "from_state": from_state,
                "to_state": to_state,
                "actor": INGEST_ACTOR,
                "reason": reason,
                "at": self._now,
            }
            for case in changed
            for from_state, to_state, reason in case.transitions
        ]
        _bulk_insert(session, CaseTransition, chain_entries(session, transitions))

    def _lock_incident_keys(self, firsts: Iterable[_Placed]) -> None:
        """PostgreSQL: serialise workers matching incidents by the same plate or location.

        Locks are taken in sorted order (no deadlock between workers) and released at commit.
        SQLite needs none: it has one writer at a time.
        """
        if not self._postgres:
            return
        keys = set()
        for item in firsts:
            if item.event.plate is not None:
                keys.add(_lock_key(f"plate|{item.event.site_id}|{item.event.plate.text}"))
            if item.zone.location is not None:
                keys.add(_lock_key(f"location|{item.event.site_id}|{item.zone.location}"))
            keys.add(_lock_key(f"spot|{item.event.camera_id}|{item.event.zone_id}"))
        for key in sorted(keys):
            self._session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    def _open_incidents(self, firsts: list[_Placed], loaded: dict[int, _CaseRow]) -> _Candidates:
        """Open, recent cases that share a plate, a location or a camera's zone with a new
        violation: one query."""
        candidates = _Candidates()
        if not firsts:
            return candidates
        plates = {item.event.plate.text for item in firsts if item.event.plate is not None}
        locations = {item.zone.location for item in firsts if item.zone.location is not None}
        # Cameras and zones each as a set: a superset of the pairs, which _Candidates sorts out.
        cameras = {item.event.camera_id for item in firsts}
        zones = {item.event.zone_id for item in firsts}
        window = timedelta(seconds=self._settings.merge_window_seconds)
        since = min(item.event.started_at for item in firsts) - window
        query = select(_CASES.c.id, *_case_columns()).where(
            _CASES.c.state.in_([state.value for state in OPEN_STATES]),
            _CASES.c.last_observed_at >= since,
            or_(
                _CASES.c.plate_text.in_(sorted(plates)),
                _CASES.c.location.in_(sorted(locations)),
                and_(
                    _CASES.c.camera_id.in_(sorted(cameras)),
                    _CASES.c.zone_id.in_(sorted(zones)),
                    # Only a violation still standing, last seen before the new clock started.
                    _CASES.c.cleared_at.is_(None),
                    _CASES.c.last_observed_at <= max(item.event.started_at for item in firsts),
                ),
            ),
        )
        for _id, case in self._load_cases(query, loaded):
            candidates.add(case)
        return candidates

    def _link_repeat_offenders(self, cases: list[_CaseRow]) -> None:
        """Link each case whose plate was just read to the other cases of that plate."""
        limit = self._settings.related_cases_limit
        plates = {case.plate_text for case in cases if case.plate_text is not None}
        if not plates or limit == 0:
            return
        by_plate: dict[str | None, list[int]] = defaultdict(list)
        for case_id, plate in self._session.execute(
            select(_CASES.c.id, _CASES.c.plate_text)
            .where(_CASES.c.plate_text.in_(sorted(plates)))
            .order_by(_CASES.c.id.desc())
        ):
            by_plate[plate].append(case_id)
        rows: dict[tuple[int, int], dict[str, Any]] = {}
        for case in cases:
            if case.plate_text is None:
                continue
            case_id = case.require_id()
            others = [other for other in by_plate[case.plate_text] if other != case_id][:limit]
            for other in others:
                for a, b in ((case_id, other), (other, case_id)):
                    rows[(a, b)] = {
                        "case_id": a,
                        "related_case_id": b,
                        "reason": LinkReason.SAME_PLATE,
                        "at": self._now,
                    }
        _bulk_insert(
            self._session, CaseLink, list(rows.values()), on_conflict=["case_id", "related_case_id"]
        )

    def _link_evidence(self, fresh: list[_Placed], cases: dict[UUID, _CaseRow]) -> None:
        rows: dict[tuple[int, str], dict[str, Any]] = {}
        for item in fresh:
            event = item.event
            case_id = cases[event.violation_id].require_id()
            for position, frame in enumerate(event.evidence):
                rows.setdefault(
                    (case_id, frame.sha256),
                    {
                        "case_id": case_id,
                        "sha256": frame.sha256,
                        "label": frame.label.value,
                        "captured_at": frame.captured_at,
                        "width": frame.width,
                        "height": frame.height,
                        "violation_id": event.violation_id,
                        "sequence": event.sequence,
                        "position": position,
                        "chain_sha256": frame.chain_sha256,
                        "redacted_sha256": frame.redacted.sha256 if frame.redacted else None,
                        "faces_blurred": frame.redacted.faces_blurred if frame.redacted else None,
                    },
                )
        _bulk_insert(
            self._session, CaseEvidence, list(rows.values()), on_conflict=["case_id", "sha256"]
        )

    def _verify_chains(self, fresh: list[_Placed], cases: dict[UUID, _CaseRow]) -> None:
        """Recheck the hash chain of every violation that got chained frames in this batch.

        The whole stored chain is walked in capture order (message sequence, then place in the
        message). A frame that does not link to the one before it marks the violation broken;
        a late message that fills the hole makes it whole again.
        """
        chained = {
            item.event.violation_id
            for item in fresh
            if any(frame.chain_sha256 is not None for frame in item.event.evidence)
        }
        if not chained:
            return
        session = self._session
        frames = session.execute(
            select(CaseEvidence.violation_id, CaseEvidence.sha256, CaseEvidence.chain_sha256)
            .where(
                CaseEvidence.violation_id.in_(list(chained)),
                CaseEvidence.chain_sha256.is_not(None),
            )
            .order_by(CaseEvidence.violation_id, CaseEvidence.sequence, CaseEvidence.position)
        )
        broken_now: dict[UUID, bool] = dict.fromkeys(chained, False)
        previous: dict[UUID, str] = {}
        for violation_id, sha256, chain in frames:
            if violation_id is None or chain is None:
                continue
            expected = chain_link(previous.get(violation_id, GENESIS_CHAIN), sha256)
            if expected != chain:
                broken_now[violation_id] = True
            previous[violation_id] = chain
        stored: dict[UUID, bool] = {
            violation_id: broken
            for violation_id, broken in session.execute(
                select(_LINKS.c.violation_id, _LINKS.c.chain_broken).where(
                    _LINKS.c.violation_id.in_(list(chained))
                )
            )
        }
        changed_cases: set[int] = set()
        for violation_id, broken in broken_now.items():
            if stored.get(violation_id) == broken:
                continue
            session.execute(
                update(_LINKS)
                .where(_LINKS.c.violation_id == violation_id)
                .values(chain_broken=broken)
            )
            if broken:
                self._report.chains_broken.append(violation_id)
            changed_cases.add(cases[violation_id].require_id())
        for case_id in sorted(changed_cases):
            any_broken = (
                select(_LINKS.c.violation_id)
                .where(_LINKS.c.case_id == case_id, _LINKS.c.chain_broken)
                .exists()
            )
            session.execute(
                update(_CASES).where(_CASES.c.id == case_id).values(chain_broken=any_broken)
            )

    def _track_sequences(self, fresh: list[_Placed]) -> None:
        """Open a gap for sequence numbers a camera skipped; close it as late ones arrive."""
        by_camera: dict[str, list[int]] = defaultdict(list)
        for item in fresh:
            by_camera[item.event.camera_id].append(item.event.sequence)
        cameras = sorted(by_camera)
        session = self._session
        # A camera never seen starts just below its first message: that one is no gap.
        _bulk_insert(
            session,
            CameraSequence,
            [{"camera_id": cam, "highest": min(by_camera[cam]) - 1} for cam in cameras],
            on_conflict=["camera_id"],
        )
        highest: dict[str, int] = dict(
            session.execute(
                select(_SEQUENCES.c.camera_id, _SEQUENCES.c.highest)
                .where(_SEQUENCES.c.camera_id.in_(cameras))
                .order_by(_SEQUENCES.c.camera_id)
                .with_for_update()
            ).all()
        )
        late = [cam for cam in cameras if min(by_camera[cam]) <= highest[cam]]
        open_gaps: dict[str, list[SequenceGap]] = defaultdict(list)
        if late:
            for gap in session.scalars(
                select(SequenceGap).where(SequenceGap.camera_id.in_(late)).order_by(SequenceGap.id)
            ):
                open_gaps[gap.camera_id].append(gap)
        raised: dict[str, int] = {}
        for cam in cameras:
            top = highest[cam]
            for sequence in sorted(by_camera[cam]):
                if sequence > top + 1:
                    gap = SequenceGap(
                        camera_id=cam, first=top + 1, last=sequence - 1, opened_at=self._now
                    )
                    session.add(gap)
                    open_gaps[cam].append(gap)
                    self._report.gaps_opened.append((cam, gap.first, gap.last))
                if sequence > top:
                    top = raised[cam] = sequence
                elif self._fill_gap(open_gaps[cam], sequence):
                    self._report.gaps_filled += 1
        if raised:
            _bulk_update(
                session,
                CameraSequence,
                key="camera_id",
                rows=[{"camera_id": cam, "highest": top} for cam, top in raised.items()],
            )

    def _fill_gap(self, gaps: list[SequenceGap], sequence: int) -> bool:
        """Take ``sequence`` out of the gap holding it; False when it was never missing."""
        for gap in gaps:
            if not gap.first <= sequence <= gap.last:
                continue
            if gap.first == gap.last:
                gaps.remove(gap)
                if inspect(gap).pending:
                    self._session.expunge(gap)
                else:
                    self._session.delete(gap)
            elif sequence == gap.first:
                gap.first += 1
            elif sequence == gap.last:
                gap.last -= 1
            else:
                tail = SequenceGap(
                    camera_id=gap.camera_id,
                    first=sequence + 1,
                    last=gap.last,
                    opened_at=gap.opened_at,
                )
                gap.last = sequence - 1
                self._session.add(tail)
                gaps.append(tail)
            return True
        return False


_CASES = Base.metadata.tables[Case.__tablename__]
_LINKS = Base.metadata.tables[CaseViolation.__tablename__]
_SEQUENCES = Base.metadata.tables[CameraSequence.__tablename__]

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
_FOLDED_COLUMNS = (
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


_CASE_FIELDS = (*_IDENTITY_COLUMNS, *_FOLDED_COLUMNS)


def _case_columns() -> list[Any]:
    """The cases columns _CaseRow is built from, in its field order."""
    return [_CASES.c[name] for name in _CASE_FIELDS]


@dataclass(slots=True, eq=False)
class _CaseRow:
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
    transitions: list[tuple[str | None, str, str]] = field(default_factory=list)
    """Audit-trail entries this batch adds: (from state, to state, reason)."""
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


class _Candidates:
    """Cases a new violation might join, indexed by site and plate, by site and location, and
    by camera and zone."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str, str], dict[int, _CaseRow]] = defaultdict(dict)

    def add(self, case: _CaseRow) -> None:
        if case.plate_text is not None:
            self._by_key[("plate", case.site_id, case.plate_text)][id(case)] = case
        if case.location is not None:
            self._by_key[("location", case.site_id, case.location)][id(case)] = case
        self._by_key[("spot", case.camera_id, case.zone_id)][id(case)] = case

    def near(self, item: _Placed) -> list[_CaseRow]:
        found: dict[int, _CaseRow] = {}
        if item.event.plate is not None:
            found.update(self._by_key.get(("plate", item.event.site_id, item.event.plate.text), {}))
        if item.zone.location is not None:
            found.update(self._by_key.get(("location", item.event.site_id, item.zone.location), {}))
        found.update(self._by_key.get(("spot", item.event.camera_id, item.event.zone_id), {}))
        return list(found.values())


def _find_incident(
    item: _Placed, candidates: list[_CaseRow], settings: IngestSettings
) -> tuple[_CaseRow, str] | None:
    """The open case of the same incident, and why it matches.

    Same plate wins over same spot, same spot over same location; the most recently seen case
    wins within a rule. A location match needs another camera, a spot match the same camera
    (see _continues_on_spot); neither may have a disagreeing plate.
    """
    event, zone = item.event, item.zone
    plate = event.plate.text if event.plate is not None else None
    location = zone.location
    since = event.started_at - timedelta(seconds=settings.merge_window_seconds)

    def reason_to_join(case: _CaseRow) -> str | None:
        if (
            case.site_id != event.site_id
            or case.kind != event.kind
            or case.state not in OPEN_STATES
            or case.last_observed_at < since
        ):
            return None
        if plate is not None and case.plate_text == plate:
            return LinkReason.PLATE
        plates_differ = plate is not None and case.plate_text not in (None, plate)
        if (
            location is not None
            and case.location == location
            and case.camera_id != event.camera_id
            and not plates_differ
        ):
            return LinkReason.LOCATION
        if not plates_differ and _continues_on_spot(case, event):
            return LinkReason.SPOT
        return None

    matches = [(reason, case) for case in candidates if (reason := reason_to_join(case))]
    for wanted in (LinkReason.PLATE, LinkReason.SPOT, LinkReason.LOCATION):
        same = [case for reason, case in matches if reason == wanted]
        if same:
            return max(same, key=lambda case: case.last_observed_at), wanted
    return None


SAME_SPOT_IOU = 0.4
"""Box overlap that puts two sightings on one spot (the edge's default rejoin_iou)."""
SAME_SPOT_DRIFT = 0.5
"""Or bottom-centres this close, in box heights (the edge's default max_drift)."""


def _continues_on_spot(case: _CaseRow, event: ViolationEvent) -> bool:
    """A new violation of the case's camera and zone that continues its open one.

    A running gateway opens a second violation on a spot only after the first cleared, so a
    new violation id on the spot of one still standing means the gateway lost its state
    (restarted, or lost its disk) and started the clock again. A new clock that started
    before the case was last seen ran alongside it: two objects.
    """
    if (
        case.camera_id != event.camera_id
        or case.zone_id != event.zone_id
        or case.cleared_at is not None
        or event.started_at < case.last_observed_at
        or event.object is None
        or case.box_x1 is None
        or case.box_y1 is None
        or case.box_x2 is None
        or case.box_y2 is None
    ):
        return False
    box = event.object.box
    x1, y1, x2, y2 = case.box_x1, case.box_y1, case.box_x2, case.box_y2
    width = max(0.0, min(x2, box.x2) - max(x1, box.x1))
    height = max(0.0, min(y2, box.y2) - max(y1, box.y1))
    overlap = width * height
    union = (x2 - x1) * (y2 - y1) + (box.x2 - box.x1) * (box.y2 - box.y1) - overlap
    if union > 0 and overlap / union >= SAME_SPOT_IOU:
        return True
    drift = math.hypot((x1 + x2 - box.x1 - box.x2) / 2, y2 - box.y2)
    return drift <= SAME_SPOT_DRIFT * max(y2 - y1, 1.0)


def _ingest_action(from_state: str | None, to_state: str) -> str:
    """The audit log's action name for a step ingest writes."""
    if from_state is None:
        return "register"
    if from_state != to_state:
        return "dispatch" if to_state == CaseState.DISPATCHED else "observe"
    return "sighting"


def _insert(session: Session, entity: type[Base]) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT (it knows ON CONFLICT) on the entity's table."""
    table = Base.metadata.tables[entity.__tablename__]
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _bulk_insert(
    session: Session,
    entity: type[Base],
    rows: Sequence[dict[str, Any]],
    on_conflict: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> list[Row[Any]]:
    """Insert ``rows`` (dicts with the same keys) in one statement, skipping conflicts on the
    ``on_conflict`` key; returns the ``returning`` columns of the rows actually inserted.

    On PostgreSQL the rows travel as one array per column through unnest(): a short statement
    psycopg parses once, where a multi-row VALUES has thousands of placeholders that psycopg
    re-parses in Python on every call (it caches statements of at most 50 parameters).
    """
    if not rows:
        return []
    table = Base.metadata.tables[entity.__tablename__]
    dialect = session.get_bind().dialect
    if dialect.name != "postgresql":
        statement = sqlite.insert(table)
        if on_conflict:
            statement = statement.on_conflict_do_nothing(index_elements=list(on_conflict))
        if not returning:
            session.execute(statement, list(rows))
            return []
        returned = [table.c[name] for name in returning]
        return list(session.execute(statement.returning(*returned), list(rows)).all())
    quote = dialect.identifier_preparer.quote
    names = list(rows[0])
    # Set-returning functions in one select list run in lockstep: row i of every column.
    columns = ", ".join(_column_of_rows(table.c[name], dialect) for name in names)
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(name) for name in names)}) "
        f"SELECT {columns}"
    )
    if on_conflict:
        sql += f" ON CONFLICT ({', '.join(quote(name) for name in on_conflict)}) DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(quote(name) for name in returning)}"
    result = session.execute(text(sql), _column_values(table, rows))
    return list(result.all()) if returning else []


def _bulk_update(
    session: Session, entity: type[Base], key: str, rows: Sequence[dict[str, Any]]
) -> None:
    """Set the columns of ``rows`` (dicts with the same keys) on the rows matching ``key``.

    PostgreSQL: one UPDATE ... FROM unnest() (executemany would send a statement per row).
    """
    if not rows:
        return
    table = Base.metadata.tables[entity.__tablename__]
    dialect = session.get_bind().dialect
    names = [name for name in rows[0] if name != key]
    if dialect.name != "postgresql":
        # Bound names must differ from the columns' own in an executemany UPDATE.
        session.execute(
            update(table)
            .where(table.c[key] == bindparam(f"new_{key}"))
            .values({name: bindparam(f"new_{name}") for name in names}),
            [{f"new_{name}": value for name, value in row.items()} for row in rows],
        )
        return
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(
        f"{_column_of_rows(table.c[name], dialect)} AS {quote(name)}" for name in (key, *names)
    )
    assignments = ", ".join(f"{quote(name)} = v.{quote(name)}" for name in names)
    sql = (
        f"UPDATE {quote(table.name)} SET {assignments} FROM (SELECT {columns}) AS v "
        f"WHERE {quote(table.name)}.{quote(key)} = v.{quote(key)}"
    )
    session.execute(text(sql), _column_values(table, rows))


def _column_values(table: Table, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One parameter per column: a list of the rows' values, or for JSON one JSON document
    (psycopg would otherwise escape every quote of every element)."""
    values: dict[str, Any] = {}
    for name in rows[0]:
        column = [row[name] for row in rows]
        values[name] = json.dumps(column) if isinstance(table.c[name].type, JSON) else column
    return values


def _column_of_rows(column: Column[Any], dialect: Dialect) -> str:
    if isinstance(column.type, JSON):
        return f"json_array_elements(CAST(:{column.name} AS JSON))"
    return f"unnest(CAST(:{column.name} AS {column.type.compile(dialect=dialect)}[]))"


def _upsert(session: Session, table: type[Base], values: dict[str, Any], key: str) -> None:
    statement = _insert(session, table).values(values)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[key],
            set_={name: statement.excluded[name] for name in values if name != key},
        )
    )


def _lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


_PAYLOAD_WITHOUT_IMAGES: Any = {
    "evidence": {"__all__": {"data": True, "redacted": {"data": True}}},
}


# What may differ between two sends of one message: the outbox marks resends as historical.
_NOT_COMPARED = ("historical", "schema_version")


def _comparable_payload(payload: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if key not in _NOT_COMPARED}


def _comparable(event: ViolationEvent) -> dict[str, Any]:
    """The event as its stored payload holds it, less what a resend may change."""
    return _comparable_payload(event.model_dump(mode="json", exclude=_PAYLOAD_WITHOUT_IMAGES))


def _event_values(event: ViolationEvent, now: datetime) -> dict[str, Any]:
    return {
        "message_id": event.message_id,
        "violation_id": event.violation_id,
        "camera_id": event.camera_id,
        "site_id": event.site_id,
        "gateway_id": event.gateway_id,
        "sequence": event.sequence,
        "phase": event.phase.value,
        "kind": event.kind.value,
        "zone_id": event.zone_id,
        "observed_at": event.observed_at,
        "received_at": now,
        "historical": event.historical,
        "payload": event.model_dump(mode="json", exclude=_PAYLOAD_WITHOUT_IMAGES),
        "plate_text": event.plate.text if event.plate else None,
        "plate_confidence": event.plate.confidence if event.plate else None,
        "blocked_share": event.blocked_share,
    }


def _new_case(event: ViolationEvent, zone: ZoneConfig, now: datetime) -> _CaseRow:
    case = _CaseRow(
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
        cleared_at=event.observed_at if event.phase is Phase.CLEARED else None,
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
    case.transitions.append((None, CaseState.NEW, reason))
    return case


def _note_merge(case: _CaseRow, event: ViolationEvent, reason: str, now: datetime) -> None:
    """Fold a second camera's violation into ``case`` and say so in its audit trail."""
    _fold_phase(case, event, now)
    merged = f"merged violation {event.violation_id} from camera {event.camera_id} (same {reason})"
    case.transitions.append((case.state, case.state, merged))


def _fold_phase(case: _CaseRow, event: ViolationEvent, now: datetime) -> bool:
    """Phases may arrive in any order (outbox replay): keep the earliest start, the latest sight.

    Returns True when the case's best plate reading changed.
    """
    case.changed = True
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
        if event.blocked_share is not None:
            case.blocked_share = event.blocked_share  # the lane as it is now
    case.dwell_seconds = max(case.dwell_seconds, event.dwell_seconds)
    case.updated_at = now
    return _keep_best_plate(case, event)


def _keep_best_plate(case: _CaseRow, event: ViolationEvent) -> bool:
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


def _set_object(case: _CaseRow, event: ViolationEvent) -> None:
    if event.object is None:
        return
    case.object_class = event.object.class_name
    case.object_confidence = event.object.confidence
    case.box_x1, case.box_y1 = event.object.box.x1, event.object.box.y1
    case.box_x2, case.box_y2 = event.object.box.x2, event.object.box.y2
