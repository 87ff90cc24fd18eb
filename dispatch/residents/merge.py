"""One case per problem: the open case a new report joins, if any.

A report joins an open case (camera-born or report-born) of the same site and kind, last seen
or reported within the merge window, at the same place: the same building (a camera case's
zone names its building in the config), or a plan point within the merge radius (a camera
case's point is its zone's plan position, else its camera's). A report naming only the site
joins only a case that names no place either. Of several, the one at the same unit wins, then
the same building, then the nearest point, then the most recently active.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.kinds import ViolationKind
from contracts.sites import SiteRegistry
from storage.tables import OPEN_STATES, Case, ResidentReport

CANDIDATE_LIMIT = 50  # open cases of one kind at one site: a handful in practice


@dataclass(frozen=True, slots=True)
class Place:
    """Where a report (or a case) is: a building and unit, a plan point, or neither."""

    building: str | None = None
    unit: str | None = None
    plan_x: float | None = None
    plan_y: float | None = None

    @property
    def point(self) -> tuple[float, float] | None:
        if self.plan_x is None or self.plan_y is None:
            return None
        return (self.plan_x, self.plan_y)

    @property
    def named(self) -> bool:
        return bool(self.building) or self.point is not None


def _same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and a.strip().casefold() == b.strip().casefold()  # type: ignore[union-attr]


def match_rank(report: Place, case: Place, radius: float) -> tuple[int, float] | None:
    """How well ``case``'s place matches (lower is better), or None when it is elsewhere."""
    if not report.named:
        return (3, 0.0) if not case.named else None
    if _same(report.building, case.building):
        return (0, 0.0) if _same(report.unit, case.unit) else (1, 0.0)
    if report.point is not None and case.point is not None:
        distance = math.dist(report.point, case.point)
        if distance <= radius:
            return (2, distance)
    return None


def camera_case_place(registry: SiteRegistry, camera_id: str, zone_id: str) -> Place:
    """A camera case's place from the config: its zone's building and plan point."""
    found = registry.camera(camera_id)
    if found is None:
        return Place()
    _site, _gateway, camera = found
    zone = camera.zone(zone_id)
    building = zone.building if zone is not None else None
    position = (zone.plan_position if zone is not None else None) or camera.plan_position
    return Place(
        building=building,
        plan_x=position.x if position is not None else None,
        plan_y=position.y if position is not None else None,
    )


def choose_case_id(
    session: Session,
    registry: SiteRegistry,
    *,
    kind: ViolationKind,
    site_id: str,
    place: Place,
    now: datetime,
    window_minutes: float,
    radius: float,
) -> int | None:
    """The id of the open case this report joins, or None. Reads only the columns the
    decision needs (a candidate's id, camera and zone; a report-born case's first report's
    place), never whole rows: a site's 50 open cases of the kind are read for every report."""
    if window_minutes <= 0:
        return None
    cutoff = now - timedelta(minutes=window_minutes)
    candidates = session.execute(
        select(Case.id, Case.camera_id, Case.zone_id)
        .where(
            Case.site_id == site_id,
            Case.kind == kind.value,
            Case.state.in_([state.value for state in OPEN_STATES]),
            Case.last_observed_at >= cutoff,
        )
        .order_by(Case.last_observed_at.desc(), Case.id.desc())
        .limit(CANDIDATE_LIMIT)
    ).all()
    if not candidates:
        return None
    report_born = [case_id for case_id, camera_id, _zone in candidates if not camera_id]
    first_reports: dict[int, Place] = {}
    if report_born:
        rows = session.execute(
            select(
                ResidentReport.case_id,
                ResidentReport.building,
                ResidentReport.unit,
                ResidentReport.plan_x,
                ResidentReport.plan_y,
            )
            .where(ResidentReport.case_id.in_(report_born), ResidentReport.joined.is_(False))
            .order_by(ResidentReport.id)
        )
        for case_id, building, unit, plan_x, plan_y in rows:
            first_reports.setdefault(case_id, Place(building, unit, plan_x, plan_y))
    best: tuple[tuple[int, float], int, int] | None = None
    for order, (case_id, camera_id, zone_id) in enumerate(candidates):
        if camera_id:
            case_place = camera_case_place(registry, camera_id, zone_id)
        else:
            case_place = first_reports.get(case_id, Place())
        rank = match_rank(place, case_place, radius)
        if rank is not None and (best is None or (rank, order) < (best[0], best[1])):
            best = (rank, order, case_id)
    return best[2] if best is not None else None


def find_case_to_join(
    session: Session,
    registry: SiteRegistry,
    *,
    kind: ViolationKind,
    site_id: str,
    place: Place,
    now: datetime,
    window_minutes: float,
    radius: float,
) -> Case | None:
    """The open case this report joins, or None: it opens one. Reads in the caller's
    transaction; the caller locks nothing (two racing reports may open two cases, which the
    dispatcher merges by hand, as with two cameras). Only the chosen case is loaded whole."""
    case_id = choose_case_id(
        session,
        registry,
        kind=kind,
        site_id=site_id,
        place=place,
        now=now,
        window_minutes=window_minutes,
        radius=radius,
    )
    return session.get(Case, case_id) if case_id is not None else None
