"""The merge search reads columns, not whole cases: on SQLite and PostgreSQL, with a camera case
and a dozen report-born cases (some joined by later reports), ``choose_case_id`` picks the same
case as a search over whole ORM rows (the search as it was before, kept here as the reference)
for every report place tried, and ``find_case_to_join`` loads only the chosen case."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.events import Phase, ViolationKind
from contracts.sites import SiteRegistry
from dispatch.config import ReportRateLimits, ResidentSettings, RoutingSettings
from dispatch.residents.intake import IntakeDeps, PlanPoint, ReportSubmission, submit_report
from dispatch.residents.merge import (
    CANDIDATE_LIMIT,
    Place,
    camera_case_place,
    choose_case_id,
    find_case_to_join,
    match_rank,
)
from dispatch.residents.tiers import ResidentAwareRouter
from storage.database import SessionFactory
from storage.evidence_store import EvidenceStore
from storage.tables import OPEN_STATES, Case, ResidentReport
from tests.factories import (
    FIRE_LANE_ZONE,
    SITE,
    T0,
    EventFactory,
    make_ingest,
    make_registry,
    migrated_database,
)

K = ViolationKind
NOW = T0 + timedelta(minutes=10)
WINDOW = 120.0
RADIUS = 0.08


def _registry() -> SiteRegistry:
    data = make_registry().model_dump()
    zone = data["sites"][0]["gateways"][0]["cameras"][0]["zones"][1]
    assert zone["id"] == FIRE_LANE_ZONE
    zone.update(building="3号楼", plan_position={"x": 0.5, "y": 0.5})
    return SiteRegistry.model_validate(data)


def _whole_rows_choice(
    session: Session, registry: SiteRegistry, kind: ViolationKind, place: Place, now: datetime
) -> int | None:
    """The reference: every candidate and every first report loaded as a whole ORM row."""
    cutoff = now - timedelta(minutes=WINDOW)
    candidates = list(
        session.scalars(
            select(Case)
            .where(
                Case.site_id == SITE,
                Case.kind == kind.value,
                Case.state.in_([state.value for state in OPEN_STATES]),
                Case.last_observed_at >= cutoff,
            )
            .order_by(Case.last_observed_at.desc(), Case.id.desc())
            .limit(CANDIDATE_LIMIT)
        )
    )
    first: dict[int, Place] = {}
    for row in session.scalars(
        select(ResidentReport)
        .where(
            ResidentReport.case_id.in_([c.id for c in candidates if not c.camera_id]),
            ResidentReport.joined.is_(False),
        )
        .order_by(ResidentReport.id)
    ):
        first.setdefault(row.case_id, Place(row.building, row.unit, row.plan_x, row.plan_y))
    best: tuple[tuple[int, float], int, int] | None = None
    for order, case in enumerate(candidates):
        if case.camera_id:
            case_place = camera_case_place(registry, case.camera_id, case.zone_id)
        else:
            case_place = first.get(case.id, Place())
        rank = match_rank(place, case_place, RADIUS)
        if rank is not None and (best is None or (rank, order) < (best[0], best[1])):
            best = (rank, order, case.id)
    return best[2] if best is not None else None


def _fixed(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


@pytest.fixture
def seeded(database_url: str, tmp_path: Path) -> Iterator[tuple[SessionFactory, SiteRegistry]]:
    with migrated_database(database_url) as (_engine, sessions):
        registry = _registry()
        routing = RoutingSettings()
        settings = ResidentSettings(
            merge_window_minutes=WINDOW,
            merge_radius=RADIUS,
            limits=ReportRateLimits(per_address=10_000, per_phone=10_000, per_token=10_000),
        )
        deps = IntakeDeps(
            settings=settings,
            registry=registry,
            router=ResidentAwareRouter(routing, registry=registry),
            routing=routing,
            evidence_store=EvidenceStore(tmp_path / "evidence"),
            clock=lambda: NOW,
        )
        ingest = make_ingest(sessions, tmp_path / "evidence")
        event = EventFactory().event(
            Phase.OPENED, zone_id=FIRE_LANE_ZONE, kind=K.FIRE_LANE_BLOCKING
        )
        ingest.service.store(event)
        reports: list[tuple[int, str | None, str | None, PlanPoint | None]] = [
            (0, "3号楼", "1单元", None),  # joins the camera case (its zone's building)
            (1, "5号楼", None, None),
            (2, "5号楼", "2单元", None),  # joins the 5号楼 case
            (3, "6号楼", "1单元", None),
            (4, None, None, PlanPoint(x=0.2, y=0.2)),
            (5, None, None, PlanPoint(x=0.24, y=0.2)),  # joins the point above
            (6, None, None, PlanPoint(x=0.8, y=0.8)),
            (7, None, None, None),  # names no place
            (8, "7号楼", None, PlanPoint(x=0.3, y=0.7)),
            (9, None, None, PlanPoint(x=0.35, y=0.72)),
            (10, "8号楼", "3单元", None),
        ]
        for minute, building, unit, point in reports:
            at = NOW + timedelta(minutes=minute)
            with sessions() as session:
                submit_report(
                    session,
                    ReportSubmission(
                        category=K.FIRE_LANE_BLOCKING,
                        site_id=SITE,
                        building=building,
                        unit=unit,
                        plan_point=point,
                        description=f"blocked {minute}",
                        client_address=f"198.51.100.{minute}",
                    ),
                    deps=replace(deps, clock=_fixed(at)),
                )
                session.commit()
        yield sessions, registry


PLACES = [
    Place("3号楼"),
    Place("3号楼", "1单元"),
    Place("5号楼", "2单元"),
    Place("5号楼", "9单元"),
    Place("6号楼"),
    Place(plan_x=0.21, plan_y=0.21),
    Place(plan_x=0.52, plan_y=0.49),
    Place(plan_x=0.33, plan_y=0.71),
    Place("7号楼", plan_x=0.9, plan_y=0.1),
    Place(plan_x=0.95, plan_y=0.05),
    Place(),
    Place("9号楼"),
]


@pytest.mark.parametrize("minutes_later", [15, 125])
def test_the_column_search_picks_the_case_the_whole_row_search_picks(
    seeded: tuple[SessionFactory, SiteRegistry], minutes_later: int
) -> None:
    sessions, registry = seeded
    now = NOW + timedelta(minutes=minutes_later)  # at 125 some cases are out of the window
    chosen: list[int | None] = []
    for place in PLACES:
        with sessions() as session:
            expected = _whole_rows_choice(session, registry, K.FIRE_LANE_BLOCKING, place, now)
        with sessions() as session:
            got = choose_case_id(
                session,
                registry,
                kind=K.FIRE_LANE_BLOCKING,
                site_id=SITE,
                place=place,
                now=now,
                window_minutes=WINDOW,
                radius=RADIUS,
            )
        assert got == expected, place
        chosen.append(got)
    # The seeded places really decide something: joins found, and more than one case chosen.
    assert len({case_id for case_id in chosen if case_id is not None}) >= 3
    assert None in chosen


def test_only_the_chosen_case_is_loaded(seeded: tuple[SessionFactory, SiteRegistry]) -> None:
    sessions, registry = seeded
    with sessions() as session:
        open_cases = session.scalars(
            select(Case.id).where(Case.state.in_([s.value for s in OPEN_STATES]))
        ).all()
        assert len(open_cases) >= 8
    with sessions() as session:
        case = find_case_to_join(
            session,
            registry,
            kind=K.FIRE_LANE_BLOCKING,
            site_id=SITE,
            place=Place("6号楼"),
            now=NOW + timedelta(minutes=15),
            window_minutes=WINDOW,
            radius=RADIUS,
        )
        assert case is not None
        loaded = [thing for thing in session.identity_map.values() if isinstance(thing, Case)]
        assert loaded == [case]
        assert not any(isinstance(t, ResidentReport) for t in session.identity_map.values())
