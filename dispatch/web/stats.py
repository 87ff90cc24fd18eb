"""Aggregates for the console's charts (cases per day, department, kind; time to close) and the
JSON endpoint that serves them (dispatch/web/charts.py draws them)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from threading import Lock
from time import monotonic
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from contracts.stats import percentile
from dispatch.false_alarms import CameraFalseAlarms, false_alarm_rates
from dispatch.http.deps import API_PREFIX, ContextDep, PrincipalDep, SessionDep, scope_of
from storage.tables import Case, utcnow

DAYS = 14


class DayCount(BaseModel):
    day: date
    cases: int


class CloseTime(BaseModel):
    key: str = Field(description="the kind or department")
    closed: int
    median_minutes: float
    p90_minutes: float


class Stats(BaseModel):
    timezone: str
    computed_at: datetime = Field(description="figures are cached briefly: as of this time")
    days: list[DayCount] = Field(description="cases registered per local day, oldest first")
    per_department: dict[str, int] = Field(description="cases registered in the window")
    per_kind: dict[str, int]
    close_time_by_kind: list[CloseTime]
    close_time_by_department: list[CloseTime]
    false_alarms_by_camera: list[CameraFalseAlarms] = Field(
        default_factory=list, description="per camera in the window, worst false-alarm rate first"
    )


def _close_times(rows: Sequence[tuple[str, float]]) -> list[CloseTime]:
    grouped: dict[str, list[float]] = defaultdict(list)
    for key, minutes in rows:
        grouped[key].append(minutes)
    return [
        CloseTime(
            key=key,
            closed=len(values),
            median_minutes=round(percentile(values, 0.5), 1),
            p90_minutes=round(percentile(values, 0.9), 1),
        )
        for key, values in sorted(grouped.items())
    ]


def compute_stats(
    session: Session, department: str | None, timezone: str, now: datetime | None = None
) -> Stats:
    """The console's figures over the last ``DAYS`` local days; ``department`` scopes them.

    Days count cases by when the server registered them; time to close runs from then.
    """
    zone = ZoneInfo(timezone)
    now = now or utcnow()
    today = now.astimezone(zone).date()
    first = today - timedelta(days=DAYS - 1)
    bounds = [datetime.combine(first + timedelta(days=n), time(0), zone) for n in range(DAYS + 1)]
    start = bounds[0]
    scope = [Case.created_at >= start]
    if department is not None:
        scope.append(Case.department == department)
    # One query: a sum per local day, so any time zone (with DST) works on SQLite and PostgreSQL.
    per_day = session.execute(
        select(
            *(
                func.coalesce(
                    func.sum(case((and_(Case.created_at >= lo, Case.created_at < hi), 1), else_=0)),
                    0,
                )
                for lo, hi in itertools.pairwise(bounds)
            )
        ).where(*scope)
    ).one()
    per_department = {
        (dept or "none"): count
        for dept, count in session.execute(
            select(Case.department, func.count()).where(*scope).group_by(Case.department)
        )
    }
    per_kind = {
        kind: count
        for kind, count in session.execute(
            select(Case.kind, func.count()).where(*scope).group_by(Case.kind)
        )
    }
    closed = session.execute(
        select(Case.kind, Case.department, Case.created_at, Case.closed_at).where(
            *scope, Case.closed_at.is_not(None)
        )
    ).all()
    minutes = [
        (row.kind, row.department or "none", (row.closed_at - row.created_at).total_seconds() / 60)
        for row in closed
    ]
    return Stats(
        timezone=timezone,
        computed_at=now,
        days=[
            DayCount(day=first + timedelta(days=n), cases=int(count))
            for n, count in enumerate(per_day)
        ],
        per_department=per_department,
        per_kind=per_kind,
        close_time_by_kind=_close_times([(kind, m) for kind, _, m in minutes]),
        close_time_by_department=_close_times([(dept, m) for _, dept, m in minutes]),
        false_alarms_by_camera=false_alarm_rates(session, department, since=start),
    )


class StatsCache:
    """The figures per (department scope, time zone), kept for ``max_age_seconds``.

    They scan the window's cases (about 0.5 s at 100,000 cases), and every console load and chart
    refresh asks for them: a short cache makes that one scan per scope per interval.
    """

    def __init__(self, max_age_seconds: float, clock: Callable[[], float] = monotonic) -> None:
        self._max_age = max_age_seconds
        self._clock = clock
        self._lock = Lock()
        self._kept: dict[tuple[str | None, str], tuple[float, Stats]] = {}

    def get(self, session: Session, department: str | None, timezone: str) -> Stats:
        key = (department, timezone)
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None and self._clock() - kept[0] < self._max_age:
            return kept[1]
        stats = compute_stats(session, department, timezone)
        with self._lock:
            self._kept[key] = (self._clock(), stats)
        return stats


def get_stats_cache(request: Request) -> StatsCache:
    cache: StatsCache = request.app.state.stats_cache
    return cache


StatsCacheDep = Annotated[StatsCache, Depends(get_stats_cache)]


def site_timezone(context: ContextDep, site_id: str | None = None) -> str:
    """The time zone of ``site_id`` (or of the first site): where the day boundaries fall."""
    sites = context.registry.sites
    site = next((s for s in sites if s.id == site_id), sites[0])
    return site.timezone


router = APIRouter(prefix=API_PREFIX)


@router.get("/stats", response_model=Stats)
def get_stats(
    session: SessionDep,
    principal: PrincipalDep,
    context: ContextDep,
    cache: StatsCacheDep,
    site_id: Annotated[str | None, Query(max_length=64, description="whose time zone")] = None,
) -> Stats:
    """Cases per day, department and kind over the last 14 days, and time to close; a
    department role counts only its department's cases. Cached for a few seconds
    (``computed_at`` says when they were counted)."""
    return cache.get(session, scope_of(principal), site_timezone(context, site_id))
