"""Cases: each new event joins its violation's case, its incident's open case, or a new one.

Cross-worker races are settled by the database: unique keys (a case per violation id, a link
per violation) and, on PostgreSQL, transaction-scoped advisory locks on the plate, location
and spot an incident is matched by. The cases a batch touches are read in one SELECT, folded
in Python and written back in one UPDATE; the cases it opens are routed on plain values and
inserted already dispatched, in one INSERT ... RETURNING, with their audit trail in one more.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Select, and_, or_, select, text

from contracts.events import Phase
from ingest.writer.batch import Batch, Placed
from ingest.writer.case_rows import (
    CASE_FIELDS,
    CASES,
    FOLDED_COLUMNS,
    VIOLATION_LINKS,
    CaseRow,
    case_columns,
    fold_phase,
    new_case,
    note_merge,
)
from ingest.writer.matching import Candidates, LinkReason, find_incident
from ingest.writer.sql import bulk_insert, bulk_update, uuid_in
from ingest.writer.warnings import settle_warned_cases
from storage.audit import chain_entries
from storage.routing import CaseRouter, RouteDecision
from storage.tables import (
    OPEN_STATES,
    Case,
    CaseLink,
    CaseState,
    CaseTransition,
    CaseViolation,
)

INGEST_ACTOR = "ingest"
_SETTLE = (Phase.COMPLIED, Phase.OPENED)  # may end a warned case's wait


def attach_to_cases(
    batch: Batch, fresh: list[Placed], route_cases: CaseRouter
) -> dict[UUID, CaseRow]:
    """Fold each event into its incident's case; returns violation id -> case.

    Cases are folded as plain rows in Python and written back with one statement per
    kind of change; ``route_cases`` routes the cases the batch opens, in one call.
    """
    session = batch.session
    by_violation: dict[UUID, list[Placed]] = defaultdict(list)
    for item in fresh:
        by_violation[item.event.violation_id].append(item)
    loaded: dict[int, CaseRow] = {}  # by case id: one row object per case in the batch
    links: dict[UUID, CaseRow] = {}
    for linked_violation, row in _load_cases(
        batch,
        select(VIOLATION_LINKS.c.violation_id.label("linked_violation_id"), *case_columns())
        .join_from(VIOLATION_LINKS, CASES, VIOLATION_LINKS.c.case_id == CASES.c.id)
        .where(uuid_in(VIOLATION_LINKS.c.violation_id, by_violation, batch.postgres)),
        loaded,
    ):
        links[linked_violation] = row
    firsts = [
        min(group, key=lambda item: item.event.sequence)
        for violation_id, group in by_violation.items()
        if violation_id not in links
    ]
    _lock_incident_keys(batch, firsts)
    candidates = _open_incidents(batch, firsts, loaded)

    cases: dict[UUID, CaseRow] = {}
    opened: list[tuple[CaseRow, Placed]] = []
    new_links: list[tuple[CaseRow, Placed, str]] = []
    plate_changed: dict[int, CaseRow] = {}  # by id(): cases whose best plate changed
    settling: list[tuple[CaseRow, Placed]] = []  # complied or opened: a warned case's end?
    for violation_id, group in by_violation.items():
        group.sort(key=lambda item: item.event.sequence)
        rest = group
        case = links.get(violation_id)
        settling += [(case, i) for i in group if case is not None and i.event.phase in _SETTLE]
        if case is None:
            first = group[0]
            # A warning is its own item: it never joins another case (ingest.writer.warnings).
            warned = first.event.phase is Phase.WARNED
            found = None if warned else find_incident(first, candidates.near(first), batch.settings)
            if found is None:
                case = new_case(first.event, first.zone, batch.now)
                opened.append((case, first))
                candidates.add(case)
                new_links.append((case, first, LinkReason.ORIGIN))
                if case.plate_text is not None:
                    plate_changed[id(case)] = case
                rest = group[1:]
                settling += [(case, i) for i in rest if i.event.phase in _SETTLE]
            else:
                case, reason = found
                new_links.append((case, first, reason))
                note_merge(case, first.event, reason, batch.now)
        for item in rest:
            if fold_phase(case, item.event, batch.now):
                plate_changed[id(case)] = case
                candidates.add(case)
        cases[violation_id] = case
    _open_cases(batch, opened, route_cases)
    _write_back(batch, [case for case in loaded.values() if case.changed])
    settle_warned_cases(batch, [(case, item.event) for case, item in settling], route_cases)
    bulk_insert(
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
                "linked_at": batch.now,
            }
            for case, item, reason in new_links
        ],
    )
    for case, item, reason in new_links:
        if reason != LinkReason.ORIGIN:
            batch.report.merged.append((item.event.violation_id, case.require_id(), reason))
    batch.report.cases_opened = len(opened)
    _link_repeat_offenders(batch, list(plate_changed.values()))
    return cases


def _load_cases(
    batch: Batch, query: Select[Any], loaded: dict[int, CaseRow]
) -> Iterator[tuple[Any, CaseRow]]:
    """Run ``query`` (its first column any key, then case_columns()); reuse known rows."""
    for key, *values in batch.session.execute(query):
        row = CaseRow(**dict(zip(CASE_FIELDS, values, strict=True)))
        yield key, loaded.setdefault(row.require_id(), row)


def _open_cases(
    batch: Batch, opened: list[tuple[CaseRow, Placed]], route_cases: CaseRouter
) -> None:
    """Route the batch's new cases, insert them dispatched (one INSERT returning their ids)
    and their audit trail: ingest's steps, then the dispatch (one INSERT)."""
    if not opened:
        return
    warned = [case for case, first in opened if first.event.phase is Phase.WARNED]
    if warned:
        _open_warned(batch, warned)
    cases = [case for case, first in opened if first.event.phase is not Phase.WARNED]
    if not cases:
        return
    decisions = _route(route_cases, cases)
    rows: list[dict[str, Any]] = []
    for case, decision in zip(cases, decisions, strict=True):
        values = {name: getattr(case, name) for name in CASE_FIELDS if name != "id"}
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
            created_at=batch.now,
        )
        rows.append(values)
    inserted = bulk_insert(batch.session, Case, rows, returning=["violation_id", "id"])
    ids: dict[UUID, int] = {row.violation_id: row.id for row in inserted}
    transitions: list[dict[str, Any]] = []
    for case, decision in zip(cases, decisions, strict=True):
        case.id = ids[case.violation_id]
        steps = [(*step, INGEST_ACTOR) for step in case.transitions]
        dispatched = {**decision.detail, "department": decision.department}
        steps.append(
            (case.state, CaseState.DISPATCHED, decision.reason, dispatched, decision.actor)
        )
        transitions.extend(
            {
                "case_id": case.id,
                "action": _ingest_action(from_state, to_state),
                "from_state": from_state,
                "to_state": to_state,
                "actor": actor,
                "reason": reason,
                "at": batch.now,
                "detail": detail,
            }
            for from_state, to_state, reason, detail, actor in steps
        )
        case.state = CaseState.DISPATCHED
        case.transitions.clear()  # stored now: never to be written twice
    bulk_insert(batch.session, CaseTransition, chain_entries(batch.session, transitions))


def _open_warned(batch: Batch, cases: list[CaseRow]) -> None:
    """Insert warned items: state ``warned``, no department, routed only if still there when
    the grace ends (ingest.writer.warnings)."""
    rows = []
    for case in cases:
        values = {name: getattr(case, name) for name in CASE_FIELDS if name != "id"}
        values.update(
            state=CaseState.WARNED.value,
            escalation_level=0,
            overdue=False,
            chain_broken=False,
            created_at=batch.now,
        )
        rows.append(values)
    inserted = bulk_insert(batch.session, Case, rows, returning=["violation_id", "id"])
    ids: dict[UUID, int] = {row.violation_id: row.id for row in inserted}
    transitions: list[dict[str, Any]] = []
    for case in cases:
        case.id = ids[case.violation_id]
        transitions.extend(
            {
                "case_id": case.id,
                "action": "register" if from_state is None else "warn",
                "from_state": from_state,
                "to_state": to_state,
                "actor": INGEST_ACTOR,
                "reason": reason,
                "at": batch.now,
                "detail": detail,
            }
            for from_state, to_state, reason, detail in case.transitions
        )
        case.state = CaseState.WARNED
        case.transitions.clear()
    batch.report.warnings_issued += len(cases)
    bulk_insert(batch.session, CaseTransition, chain_entries(batch.session, transitions))


def _route(route_cases: CaseRouter, cases: list[CaseRow]) -> list[RouteDecision]:
    decisions = route_cases([case.to_route() for case in cases])
    if len(decisions) != len(cases):
        raise RuntimeError(
            f"routing returned {len(decisions)} decision(s) for {len(cases)} opened case(s)"
        )
    return decisions


def _write_back(batch: Batch, changed: list[CaseRow]) -> None:
    """Write back every stored case the batch folded messages into, in one UPDATE."""
    if not changed:
        return
    session = batch.session
    bulk_update(
        session,
        Case,
        key="id",
        rows=[
            {"id": case.id, **{name: getattr(case, name) for name in FOLDED_COLUMNS}}
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
            "at": batch.now,
            "detail": detail,
        }
        for case in changed
        for from_state, to_state, reason, detail in case.transitions
    ]
    bulk_insert(session, CaseTransition, chain_entries(session, transitions))


def _lock_incident_keys(batch: Batch, firsts: Iterable[Placed]) -> None:
    """PostgreSQL: serialise workers matching incidents by the same plate or location.

    Locks are taken in sorted order (no deadlock between workers) and released at commit.
    SQLite needs none: it has one writer at a time.
    """
    if not batch.postgres:
        return
    keys = set()
    for item in firsts:
        if item.event.plate is not None:
            keys.add(_lock_key(f"plate|{item.event.site_id}|{item.event.plate.text}"))
        if item.zone.location is not None:
            keys.add(_lock_key(f"location|{item.event.site_id}|{item.zone.location}"))
        keys.add(_lock_key(f"spot|{item.event.camera_id}|{item.event.zone_id}"))
    if not keys:
        return
    # One round trip for all the batch's keys: a statement per key was a third of the writer's
    # time on small events. unnest yields the array in its order, so the locks are still taken
    # in sorted order.
    batch.session.execute(
        text("SELECT count(pg_advisory_xact_lock(key)) FROM unnest(CAST(:keys AS bigint[])) key"),
        {"keys": sorted(keys)},
    )


def _open_incidents(batch: Batch, firsts: list[Placed], loaded: dict[int, CaseRow]) -> Candidates:
    """Open, recent cases that share a plate, a location or a camera's zone with a new
    violation: one query."""
    candidates = Candidates()
    if not firsts:
        return candidates
    plates = {item.event.plate.text for item in firsts if item.event.plate is not None}
    locations = {item.zone.location for item in firsts if item.zone.location is not None}
    # Cameras and zones each as a set: a superset of the pairs, which Candidates sorts out.
    cameras = {item.event.camera_id for item in firsts}
    zones = {item.event.zone_id for item in firsts}
    window = timedelta(seconds=batch.settings.merge_window_seconds)
    since = min(item.event.started_at for item in firsts) - window
    query = select(CASES.c.id, *case_columns()).where(
        CASES.c.state.in_([state.value for state in OPEN_STATES]),
        CASES.c.last_observed_at >= since,
        or_(
            CASES.c.plate_text.in_(sorted(plates)),
            CASES.c.location.in_(sorted(locations)),
            and_(
                CASES.c.camera_id.in_(sorted(cameras)),
                CASES.c.zone_id.in_(sorted(zones)),
                # Only a violation still standing, last seen before the new clock started.
                CASES.c.cleared_at.is_(None),
                CASES.c.last_observed_at <= max(item.event.started_at for item in firsts),
            ),
        ),
    )
    for _id, case in _load_cases(batch, query, loaded):
        candidates.add(case)
    return candidates


def _link_repeat_offenders(batch: Batch, cases: list[CaseRow]) -> None:
    """Link each case whose plate was just read to the other cases of that plate.

    Only readings at or above the plate-confidence floor link, on both sides: a repeat-offender
    link never rests on a reading below it."""
    limit = batch.settings.related_cases_limit
    floor = batch.settings.plate_confidence_floor
    sure = [c for c in cases if c.plate_confidence is not None and c.plate_confidence >= floor]
    plates = {case.plate_text for case in sure if case.plate_text is not None}
    if not plates or limit == 0:
        return
    by_plate: dict[str | None, list[int]] = defaultdict(list)
    for case_id, plate in batch.session.execute(
        select(CASES.c.id, CASES.c.plate_text)
        .where(CASES.c.plate_text.in_(sorted(plates)), CASES.c.plate_confidence >= floor)
        .order_by(CASES.c.id.desc())
    ):
        by_plate[plate].append(case_id)
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    for case in sure:
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
                    "at": batch.now,
                }
    bulk_insert(
        batch.session, CaseLink, list(rows.values()), on_conflict=["case_id", "related_case_id"]
    )


def _ingest_action(from_state: str | None, to_state: str) -> str:
    """The audit log's action name for a step ingest writes."""
    if from_state is None:
        return "register"
    if from_state != to_state:
        return "dispatch" if to_state == CaseState.DISPATCHED else "observe"
    return "sighting"


def _lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
