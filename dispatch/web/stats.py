"""Aggregates for the console's charts (cases per day, department, kind; time to close) and the
JSON endpoint that serves them (dispatch/web/charts.py draws them)."""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from threading import Lock, Thread
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
logger = logging.getLogger(__name__)


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


StatsKey = tuple[str | None, str]  # (department scope, time zone)
ComputeStats = Callable[[Session, str | None, str], Stats]


class StatsCache:
    """The figures per (department scope, time zone), kept for ``max_age_seconds``.

    They scan the window's cases (about 0.5 s at 100,000 cases), and every console load and chart
    refresh asks for them. So no request waits for that scan while a recent answer exists:

    - fresh (younger than ``max_age``): served as is;
    - stale, up to twice ``max_age``: served as is while one background thread counts again
      (given a ``session_factory``; without one, as in a bare test, the asker counts);
    - missing or older: counted by the first asker while the others for the same key wait for
      its answer instead of each scanning too.
    """

    def __init__(
        self,
        max_age_seconds: float,
        clock: Callable[[], float] = monotonic,
        session_factory: Callable[[], Session] | None = None,
        compute: ComputeStats = compute_stats,
    ) -> None:
        self._max_age = max_age_seconds
        self._clock = clock
        self._sessions = session_factory
        self._compute = compute
        self._lock = Lock()
        self._kept: dict[StatsKey, tuple[float, Stats]] = {}
        self._counting: dict[StatsKey, Lock] = {}  # one count per key at a time
        self._refreshing: set[StatsKey] = set()
        self.refreshes = 0  # background counts finished

    def get(self, session: Session, department: str | None, timezone: str) -> Stats:
        key = (department, timezone)
        kept = self._fresh_enough(key)
        if kept is not None:
            return kept
        with self._lock:
            counting = self._counting.setdefault(key, Lock())
        with counting:
            kept = self._fresh_enough(key)  # another asker may have counted meanwhile
            if kept is not None:
                return kept
            return self._count(session, key)

    def _fresh_enough(self, key: StatsKey) -> Stats | None:
        """The kept figures if they may be served now; starts a background count when stale."""
        with self._lock:
            kept = self._kept.get(key)
            if kept is None:
                return None
            age = self._clock() - kept[0]
            if age < self._max_age:
                return kept[1]
            if age >= 2 * self._max_age or self._sessions is None:
                return None
            if key not in self._refreshing:
                self._refreshing.add(key)
                Thread(target=self._refresh, args=(key,), name="stats-refresh", daemon=True).start()
            return kept[1]

    def _count(self, session: Session, key: StatsKey) -> Stats:
        stats = self._compute(session, *key)
        with self._lock:
            self._kept[key] = (self._clock(), stats)
        return stats

    def _refresh(self, key: StatsKey) -> None:
        assert self._sessions is not None  # only started with a session factory
        try:
            with self._lock:
                counting = self._counting.setdefault(key, Lock())
            with counting, self._sessions() as session:
                self._count(session, key)
            self.refreshes += 1
        except Exception:  # the stale figures stay; an ask past twice max_age counts itself
            logger.exception("stats: the background count of %s failed", key)
        finally:
            with self._lock:
                self._refreshing.discard(key)


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
