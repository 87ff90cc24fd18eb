"""The report's figures, counted from the database for one place and one period.

Every count is cut at the period's end (a case accepted or closed after it counts as not yet
accepted or closed), so a report generated again later says the same. docs/reports.md defines
each figure.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts.exemptions import DEFAULT_PLATE_CONFIDENCE_FLOOR, WARNED_COMPLIED
from contracts.sites import PlanPosition, SiteConfig, SiteRegistry
from contracts.status import CameraHealth
from dispatch.places import place_of
from dispatch.reports.period import Place, Window
from dispatch.reports.rates import Rates, measure_sites
from dispatch.workflow import Action, CloseReason
from storage.tables import (
    CameraHealthChange,
    CameraPlacement,
    Case,
    CaseState,
    CaseTransition,
    SitePlanImage,
)

NO_DEPARTMENT = "none"  # community-tier cases nobody dispatched
HOT_SPOTS = 10
FALSE_REASONS = (CloseReason.FALSE_ALARM.value, CloseReason.NOT_A_VIOLATION.value)


@dataclass(frozen=True)
class Trend:
    """One row of "against the previous period": a kind's or a department's counts."""

    key: str
    current: int
    previous: int

    @property
    def change_pct(self) -> float | None:
        """Percent change; None when the previous period had none (no base to divide by)."""
        if self.previous == 0:
            return None
        return (self.current - self.previous) * 100.0 / self.previous


@dataclass(frozen=True)
class DepartmentFigures:
    department: str
    cases: int
    with_deadline: int  # cases that had a resolve deadline
    resolved_in_time: int  # ... resolved at or before it, by the period's end
    overdue: int  # ... whose deadline passed within the period unresolved (or resolved late)
    accepted: int  # accepted by the period's end
    accepted_in_time: int  # ... at or before the accept deadline (or accepted, with none)
    closed: int  # closed (结案) by the period's end
    median_accept_minutes: float | None
    median_close_minutes: float | None
    rates: Rates = field(default_factory=Rates)  # the three rates (dispatch/reports/rates.py)

    @property
    def in_time_share(self) -> float | None:
        return _share(self.resolved_in_time, self.with_deadline)

    @property
    def response_rate(self) -> float | None:
        """响应率 (docs/rates.md): accepted within the accept deadline, of the cases sent."""
        return self.rates.response_rate

    @property
    def resolution_rate(self) -> float | None:
        """解决率 (docs/rates.md): resolved within the resolve deadline and never reopened."""
        return self.rates.resolution_rate

    @property
    def satisfaction_rate(self) -> float | None:
        """满意率 (docs/rates.md): 满意 + 基本满意 of the residents' ratings given."""
        return self.rates.satisfaction_rate


@dataclass(frozen=True)
class PlateRepeat:
    plate: str
    case_ids: tuple[int, ...]


@dataclass(frozen=True)
class HotSpot:
    site_name: str
    label: str
    cases: int


@dataclass(frozen=True)
class PlanPoint:
    x: float
    y: float
    label: str
    cases: int


@dataclass(frozen=True)
class SitePlan:
    site_id: str
    site_name: str
    image: Path | None  # the plan picture; None: the chart draws a plain grid
    points: tuple[PlanPoint, ...]
    unplaced: int  # cases at places with no point on the plan


@dataclass(frozen=True)
class CameraUptime:
    camera_id: str
    camera_name: str
    healthy_share: float | None  # of the time its health was known; None: never reported
    known_share: float  # of the period in which its health was known


@dataclass(frozen=True)
class CameraFalseAlarms:
    camera_id: str
    false_alarm: int
    not_a_violation: int


@dataclass(frozen=True)
class WarningFigures:
    """The warning stage (先提醒后执法) in the period, by when each step happened: warnings
    issued, items closed as "warned, complied", items still there after the grace and sent to
    their department, and items whose gateway never reported back (to the dispatchers)."""

    issued: int = 0
    complied: int = 0
    escalated: int = 0
    gateway_silent: int = 0

    @property
    def complied_share(self) -> float | None:
        """Of the warnings settled (complied or escalated) in the period, the share complied."""
        return _share(self.complied, self.complied + self.escalated)


@dataclass(frozen=True)
class ReportFigures:
    place: Place
    window: Window
    previous_window: Window
    total: int
    previous_total: int
    kinds: tuple[Trend, ...]
    departments_trend: tuple[Trend, ...]
    departments: tuple[DepartmentFigures, ...]
    hour_weekday: tuple[tuple[int, ...], ...]  # [weekday 0=Monday][local hour]
    hot_spots: tuple[HotSpot, ...]
    plates: tuple[PlateRepeat, ...]
    plans: tuple[SitePlan, ...]
    uptime: tuple[CameraUptime, ...]
    false_alarms: tuple[CameraFalseAlarms, ...]
    sites: tuple[str, ...] = field(default=())
    warnings: WarningFigures = field(default_factory=WarningFigures)

    @property
    def total_change_pct(self) -> float | None:
        return Trend("total", self.total, self.previous_total).change_pct


@dataclass(frozen=True)
class _Row:
    id: int
    kind: str
    site_id: str
    camera_id: str
    zone_id: str
    location: str | None
    department: str | None
    created_at: datetime
    acknowledged_at: datetime | None
    ack_due_at: datetime | None
    resolved_at: datetime | None
    sla_due_at: datetime | None
    closed_at: datetime | None
    state: str
    plate_text: str | None
    plate_confidence: float | None


_COLUMNS = (
    Case.id,
    Case.kind,
    Case.site_id,
    Case.camera_id,
    Case.zone_id,
    Case.location,
    Case.department,
    Case.created_at,
    Case.acknowledged_at,
    Case.ack_due_at,
    Case.resolved_at,
    Case.sla_due_at,
    Case.closed_at,
    Case.state,
    Case.plate_text,
    Case.plate_confidence,
)


def count_figures(
    session: Session,
    registry: SiteRegistry,
    place: Place,
    window: Window,
    uploaded_plans: Mapping[str, Path] | None = None,
    plate_confidence_floor: float = DEFAULT_PLATE_CONFIDENCE_FLOOR,
) -> ReportFigures:
    """Everything the report shows for ``place`` over ``window``. ``uploaded_plans``: the plan
    images admins uploaded (site id -> file); they win over the config's ``plan_image``.
    Repeat plates count only readings at or above ``plate_confidence_floor``."""
    previous = window.previous(place.zone)
    sites = place.site_ids
    rows = [
        _Row(**row._mapping)
        for row in session.execute(
            select(*_COLUMNS)
            .where(Case.site_id.in_(sites))
            .where(Case.created_at >= window.start, Case.created_at < window.end)
            # A merged case is a duplicate of another: counting it would count one thing twice.
            .where(Case.state != CaseState.MERGED.value)
            .order_by(Case.id)
        )
    ]
    before_kinds = _grouped(session, Case.kind, sites, previous)
    before_departments = _grouped(session, Case.department, sites, previous)
    kinds = Counter(row.kind for row in rows)
    departments = Counter(row.department or NO_DEPARTMENT for row in rows)
    placements = {
        p.camera_id: PlanPosition(x=p.x, y=p.y)
        for p in session.scalars(select(CameraPlacement).where(CameraPlacement.site_id.in_(sites)))
    }
    uploaded = frozenset(
        session.scalars(select(SitePlanImage.site_id).where(SitePlanImage.site_id.in_(sites)))
    )
    rates = measure_sites(session, sites, window)
    names = sorted(departments.keys() | rates.keys())
    return ReportFigures(
        place=place,
        window=window,
        previous_window=previous,
        total=len(rows),
        previous_total=sum(before_kinds.values()),
        kinds=_trends(kinds, before_kinds),
        departments_trend=_trends(departments, before_departments),
        departments=tuple(
            _department(
                name,
                [r for r in rows if (r.department or NO_DEPARTMENT) == name],
                window,
                rates.get(name, Rates()),
            )
            for name in names
        ),
        hour_weekday=_hour_weekday(rows, place),
        hot_spots=_hot_spots(registry, placements, uploaded, rows),
        plates=_plates(rows, plate_confidence_floor),
        plans=tuple(
            _plan(registry, placements, uploaded, site, rows, (uploaded_plans or {}).get(site.id))
            for site in place.sites
        ),
        uptime=_uptime(session, place, window),
        false_alarms=_false_alarms(session, sites, window),
        sites=sites,
        warnings=_warnings(session, sites, window),
    )


def _grouped(
    session: Session, column: object, sites: Sequence[str], window: Window
) -> Counter[str]:
    found = session.execute(
        select(column, func.count())  # type: ignore[call-overload]
        .where(Case.site_id.in_(sites))
        .where(Case.created_at >= window.start, Case.created_at < window.end)
        .where(Case.state != CaseState.MERGED.value)
        .group_by(column)
    )
    return Counter({(key or NO_DEPARTMENT): int(count) for key, count in found})


def _trends(current: Counter[str], previous: Counter[str]) -> tuple[Trend, ...]:
    keys = sorted(current.keys() | previous.keys(), key=lambda k: (-current[k], k))
    return tuple(Trend(key, current[key], previous[key]) for key in keys)


def _department(name: str, rows: Sequence[_Row], window: Window, rates: Rates) -> DepartmentFigures:
    end = window.end

    def by_end(at: datetime | None) -> datetime | None:
        return at if at is not None and at < end else None

    with_deadline = resolved_in_time = overdue = accepted = accepted_in_time = closed = 0
    accept_minutes: list[float] = []
    close_minutes: list[float] = []
    for row in rows:
        acknowledged, resolved, done = (
            by_end(row.acknowledged_at),
            by_end(row.resolved_at),
            by_end(row.closed_at),
        )
        if row.sla_due_at is not None:
            with_deadline += 1
            if resolved is not None and resolved <= row.sla_due_at:
                resolved_in_time += 1
            elif row.sla_due_at < end:
                overdue += 1
        if acknowledged is not None:
            accepted += 1
            accept_minutes.append((acknowledged - row.created_at).total_seconds() / 60)
            if row.ack_due_at is None or acknowledged <= row.ack_due_at:
                accepted_in_time += 1
        if done is not None and row.state == CaseState.CLOSED.value:
            closed += 1
            close_minutes.append((done - row.created_at).total_seconds() / 60)
    return DepartmentFigures(
        department=name,
        cases=len(rows),
        with_deadline=with_deadline,
        resolved_in_time=resolved_in_time,
        overdue=overdue,
        accepted=accepted,
        accepted_in_time=accepted_in_time,
        closed=closed,
        median_accept_minutes=statistics.median(accept_minutes) if accept_minutes else None,
        median_close_minutes=statistics.median(close_minutes) if close_minutes else None,
        rates=rates,
    )


def _hour_weekday(rows: Iterable[_Row], place: Place) -> tuple[tuple[int, ...], ...]:
    grid = [[0] * 24 for _ in range(7)]
    zone = place.zone
    for row in rows:
        local = row.created_at.astimezone(zone)
        grid[local.weekday()][local.hour] += 1
    return tuple(tuple(day) for day in grid)


def _case_like(row: _Row) -> Case:
    # place_of reads a case's ids only; a transient Case carries them without a query.
    return Case(
        site_id=row.site_id, camera_id=row.camera_id, zone_id=row.zone_id, location=row.location
    )


def _hot_spots(
    registry: SiteRegistry,
    placements: dict[str, PlanPosition],
    uploaded: frozenset[str],
    rows: Sequence[_Row],
) -> tuple[HotSpot, ...]:
    by_spot: Counter[tuple[str, str, str]] = Counter(
        (row.site_id, row.camera_id, row.zone_id) for row in rows
    )
    samples = {(row.site_id, row.camera_id, row.zone_id): row for row in rows}
    spots: Counter[tuple[str, str]] = Counter()
    for key, count in by_spot.items():
        where = place_of(registry, placements, _case_like(samples[key]), uploaded)
        parts = [where.location or where.zone_name, where.building or "", where.camera_name]
        spots[(where.site_name, " · ".join(p for p in parts if p))] += count
    ranked = sorted(spots.items(), key=lambda item: (-item[1], item[0]))[:HOT_SPOTS]
    return tuple(HotSpot(site, label, count) for (site, label), count in ranked)


def _plates(rows: Iterable[_Row], floor: float) -> tuple[PlateRepeat, ...]:
    """Plates of two or more cases: repeat offenders, so never on a reading below the floor."""
    cases: defaultdict[str, list[int]] = defaultdict(list)
    for row in rows:
        sure = row.plate_confidence is not None and row.plate_confidence >= floor
        if row.plate_text and sure:
            cases[row.plate_text].append(row.id)
    repeats = [PlateRepeat(plate, tuple(ids)) for plate, ids in cases.items() if len(ids) >= 2]
    return tuple(sorted(repeats, key=lambda r: (-len(r.case_ids), r.plate)))


def _plan(
    registry: SiteRegistry,
    placements: dict[str, PlanPosition],
    uploaded: frozenset[str],
    site: SiteConfig,
    rows: Sequence[_Row],
    uploaded_image: Path | None = None,
) -> SitePlan:
    counts: Counter[tuple[str, str]] = Counter(
        (row.camera_id, row.zone_id) for row in rows if row.site_id == site.id
    )
    points: dict[tuple[float, float], PlanPoint] = {}
    unplaced = 0
    for (camera_id, zone_id), count in counts.items():
        probe = Case(site_id=site.id, camera_id=camera_id, zone_id=zone_id, location=None)
        where = place_of(registry, placements, probe, uploaded)
        if where.plan_position is None:
            unplaced += count
            continue
        key = (where.plan_position.x, where.plan_position.y)
        label = where.location or where.zone_name
        seen = points.get(key)
        points[key] = PlanPoint(
            key[0], key[1], seen.label if seen else label, count + (seen.cases if seen else 0)
        )
    configured = Path(site.plan_image) if site.plan_image else None
    image = next((p for p in (uploaded_image, configured) if p is not None and p.is_file()), None)
    return SitePlan(
        site_id=site.id,
        site_name=site.name or site.id,
        image=image,
        points=tuple(sorted(points.values(), key=lambda p: -p.cases)),
        unplaced=unplaced,
    )


def _uptime(session: Session, place: Place, window: Window) -> tuple[CameraUptime, ...]:
    cameras = [
        (camera.id, camera.name or camera.id)
        for site in place.sites
        for gateway in site.gateways
        for camera in gateway.cameras
    ]
    ids = [camera_id for camera_id, _ in cameras]
    span = (window.end - window.start).total_seconds()
    # Each camera's health as the period began: its last change before the start.
    last_before = (
        select(CameraHealthChange.camera_id, func.max(CameraHealthChange.id).label("id"))
        .where(CameraHealthChange.camera_id.in_(ids), CameraHealthChange.at < window.start)
        .group_by(CameraHealthChange.camera_id)
        .subquery()
    )
    opening = {
        camera_id: health
        for camera_id, health in session.execute(
            select(CameraHealthChange.camera_id, CameraHealthChange.health).join(
                last_before, last_before.c.id == CameraHealthChange.id
            )
        )
    }
    changes: defaultdict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for camera_id, at, health in session.execute(
        select(CameraHealthChange.camera_id, CameraHealthChange.at, CameraHealthChange.health)
        .where(CameraHealthChange.camera_id.in_(ids))
        .where(CameraHealthChange.at >= window.start, CameraHealthChange.at < window.end)
        .order_by(CameraHealthChange.at, CameraHealthChange.id)
    ):
        changes[camera_id].append((at, health))
    result = []
    for camera_id, name in cameras:
        healthy = known = 0.0
        state, since = opening.get(camera_id), window.start
        for at, health in [*changes[camera_id], (window.end, "")]:
            seconds = (at - since).total_seconds()
            if state is not None:
                known += seconds
                if state == CameraHealth.OK.value:
                    healthy += seconds
            state, since = health, at
        result.append(
            CameraUptime(
                camera_id=camera_id,
                camera_name=name,
                healthy_share=_share(healthy, known),
                known_share=known / span if span else 0.0,
            )
        )
    return tuple(result)


def _false_alarms(
    session: Session, sites: Sequence[str], window: Window
) -> tuple[CameraFalseAlarms, ...]:
    reason = CaseTransition.detail["close_reason"].as_string()
    found = session.execute(
        select(Case.camera_id, reason, func.count(func.distinct(Case.id)))
        .join(CaseTransition, CaseTransition.case_id == Case.id)
        .where(Case.site_id.in_(sites))
        .where(CaseTransition.action == Action.CLOSE.value)
        .where(CaseTransition.at >= window.start, CaseTransition.at < window.end)
        .where(reason.in_(FALSE_REASONS))
        .group_by(Case.camera_id, reason)
    )
    by_camera: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for camera_id, why, count in found:
        by_camera[camera_id][why] += int(count)
    rows = [
        CameraFalseAlarms(
            camera_id,
            counts[CloseReason.FALSE_ALARM.value],
            counts[CloseReason.NOT_A_VIOLATION.value],
        )
        for camera_id, counts in by_camera.items()
    ]
    return tuple(sorted(rows, key=lambda r: (-(r.false_alarm + r.not_a_violation), r.camera_id)))


# The audit actions of the warning stage (ingest.writer: warn, close, dispatch from warned,
# close from new when the gateway reported late; dispatch.warning_stage: warning_timeout).
# Named here: the reports read the chain, not ingest.
_WARN, _SILENT = "warn", "warning_timeout"


def _warnings(session: Session, sites: Sequence[str], window: Window) -> WarningFigures:
    """Counted on the audit chain by when each step happened in the window (not when the item
    was created): a warning issued on the last evening and settled the next morning counts as
    issued in one period and settled in the next."""
    found = session.execute(
        select(CaseTransition.action, CaseTransition.detail)
        .join(Case, CaseTransition.case_id == Case.id)
        .where(Case.site_id.in_(sites))
        .where(CaseTransition.at >= window.start, CaseTransition.at < window.end)
        .where(
            (CaseTransition.action.in_((_WARN, _SILENT)))
            | (CaseTransition.from_state == CaseState.WARNED.value)
            # a compliance the gateway reported after the timeout closes the item from new
            | (
                (CaseTransition.action == Action.CLOSE.value)
                & (CaseTransition.from_state == CaseState.NEW.value)
            )
        )
    )
    issued = complied = escalated = silent = 0
    for action, detail in found:
        if action == _WARN:
            issued += 1
        elif action == _SILENT:
            silent += 1
        elif action == Action.CLOSE.value and (detail or {}).get("close_reason") == WARNED_COMPLIED:
            complied += 1
        elif action == Action.DISPATCH.value:
            escalated += 1
    return WarningFigures(issued, complied, escalated, silent)


def _share(part: float, whole: float) -> float | None:
    return part / whole if whole else None
