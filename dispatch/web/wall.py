"""The wall mode (大屏): the command centre's big screen, read from across the room.

One page at ``/wall`` (``?kiosk=1`` hides the header): live counts by state, department and kind,
the urgent cases on top (fire lanes first, then overdue, then the nearest deadline), the SLA board,
camera health on the site plans and a clock. It refreshes its body (``/wall/fragment``) on each
entry of the live feed, and every ``REFRESH_SECONDS`` in case the feed is down. Every list is
bounded so the page never scrolls at 1920x1080.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import RedirectResponse
from sqlalchemy import case as when
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from contracts.kinds import ViolationKind
from dispatch.http.cameras import camera_statuses
from dispatch.http.deps import Principal, PrincipalDep, SessionDep, get_context, visible_cases
from dispatch.places import Place, place_of
from dispatch.schemas import CameraPublic
from dispatch.web.charts import WALL_FONT, bar_chart
from dispatch.web.feed import head_seq
from dispatch.web.i18n import pick_language, translator
from dispatch.web.page_route import CONSOLE_ROLES, PageRoute, home_of
from dispatch.web.plans import (
    PLAN_HEIGHT,
    PLAN_WIDTH,
    camera_placements,
    site_plans,
    uploaded_plans,
)
from dispatch.web.rendering import SiteClock, render
from storage.tables import OPEN_STATES, Case, CaseState, utcnow

router = APIRouter(route_class=PageRoute, include_in_schema=False)

URGENT_LIMIT = 6  # rows that fit the urgent column at 1920x1080
BOARD_LIMIT = 9
REFRESH_SECONDS = 30  # the fallback when the live feed is down
# The tiles, in the order a case moves through them; resolved and parked are not open but are
# work the room still watches.
TILE_STATES = (
    CaseState.NEW,
    CaseState.DISPATCHED,
    CaseState.ACCEPTED,
    CaseState.RETURNED,
    CaseState.RESOLVED,
    CaseState.PARKED,
)
_OPEN = [state.value for state in OPEN_STATES]


@dataclass(frozen=True)
class WallCounts:
    by_state: dict[str, int]
    by_department: dict[str | None, int]  # open cases
    by_kind: dict[str, int]  # open cases
    open_total: int
    overdue: int
    closed_today: int


@dataclass(frozen=True)
class WallCase:
    case: Case
    place: Place
    overdue: bool
    minutes: int | None  # to the resolve deadline; negative: past it


def _is_overdue(now: datetime) -> Any:
    return or_(Case.overdue.is_(True), Case.sla_due_at <= now)


def wall_counts(
    session: Session, principal: Principal, now: datetime, day_start: datetime
) -> WallCounts:
    """The counts of the cases ``principal`` may see: by state, and open ones by department and
    kind; overdue now; closed since the site's local midnight."""
    seen = visible_cases(principal)
    by_state = dict(
        session.execute(select(Case.state, func.count()).where(seen).group_by(Case.state)).all()
    )
    open_cases = (seen, Case.state.in_(_OPEN))
    by_department = dict(
        session.execute(
            select(Case.department, func.count()).where(*open_cases).group_by(Case.department)
        ).all()
    )
    by_kind = dict(
        session.execute(
            select(Case.kind, func.count()).where(*open_cases).group_by(Case.kind)
        ).all()
    )
    overdue = session.scalar(select(func.count()).where(*open_cases, _is_overdue(now))) or 0
    closed_today = (
        session.scalar(
            select(func.count()).where(
                seen, Case.state == CaseState.CLOSED.value, Case.closed_at >= day_start
            )
        )
        or 0
    )
    return WallCounts(
        by_state={state.value: int(by_state.get(state.value, 0)) for state in TILE_STATES},
        by_department={k: int(v) for k, v in by_department.items()},
        by_kind={k: int(v) for k, v in by_kind.items()},
        open_total=sum(int(by_state.get(state, 0)) for state in _OPEN),
        overdue=int(overdue),
        closed_today=int(closed_today),
    )


def urgent_cases(session: Session, principal: Principal, now: datetime, limit: int) -> list[Case]:
    """Open cases, most urgent first: fire lanes, then overdue, then the nearest deadline."""
    query = (
        select(Case)
        .where(visible_cases(principal), Case.state.in_(_OPEN))
        .order_by(
            when((Case.kind == ViolationKind.FIRE_LANE_BLOCKING.value, 0), else_=1),
            when((_is_overdue(now), 0), else_=1),
            Case.sla_due_at.is_(None),
            Case.sla_due_at,
            Case.id,
        )
        .limit(limit)
    )
    return list(session.scalars(query))


def deadline_board(session: Session, principal: Principal, limit: int) -> list[Case]:
    """The SLA board: open cases with a deadline, nearest first."""
    query = (
        select(Case)
        .where(visible_cases(principal), Case.state.in_(_OPEN), Case.sla_due_at.is_not(None))
        .order_by(Case.sla_due_at, Case.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def camera_summary(cameras: list[CameraPublic]) -> dict[str, int]:
    """How many cameras report each health (never heard: unknown)."""
    summary: dict[str, int] = {}
    for camera in cameras:
        health = camera.health or "unknown"
        summary[health] = summary.get(health, 0) + 1
    return summary


def _wall_values(request: Request, session: Session, principal: Principal) -> dict[str, Any]:
    context = get_context(request)
    registry = context.registry
    now = utcnow()
    zone = SiteClock(registry).default
    local_midnight = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    placements = camera_placements(session)
    uploaded = uploaded_plans(session)

    def shown(case: Case) -> WallCase:
        due = case.sla_due_at
        minutes = None if due is None else int((due - now).total_seconds() // 60)
        overdue = case.overdue or (due is not None and due <= now)
        return WallCase(case, place_of(registry, placements, case, uploaded), overdue, minutes)

    language, _ = pick_language(request)
    t = translator(language)
    counts = wall_counts(session, principal, now, local_midnight.astimezone(UTC))
    cameras = camera_statuses(session, registry)
    chart_width = 760
    return {
        "counts": counts,
        "tile_states": [state.value for state in TILE_STATES],
        "urgent": [shown(c) for c in urgent_cases(session, principal, now, URGENT_LIMIT)],
        "board": [shown(c) for c in deadline_board(session, principal, BOARD_LIMIT)],
        "plans": site_plans(registry, cameras, placements, uploaded),
        "plan_size": (PLAN_WIDTH, PLAN_HEIGHT),
        "camera_summary": camera_summary(cameras),
        "by_department": bar_chart(
            [
                (t.name("department", k), [v])
                for k, v in sorted(counts.by_department.items(), key=lambda kv: -kv[1])
            ][:6],
            width=chart_width,
            font_size=WALL_FONT,
            label_width=260,
            empty=t("wall.nothing_open"),
        ),
        "by_kind": bar_chart(
            [
                (t.name("kind", k), [v])
                for k, v in sorted(counts.by_kind.items(), key=lambda kv: -kv[1])
            ][:6],
            width=chart_width,
            font_size=WALL_FONT,
            label_width=260,
            empty=t("wall.nothing_open"),
        ),
        "refreshed_at": now,
    }


@router.get("/wall")
def wall(request: Request, session: SessionDep, principal: PrincipalDep) -> Response:
    """The big screen; ``?kiosk=1`` for a screen with nobody at its keyboard (no header)."""
    if principal.role not in CONSOLE_ROLES:
        return RedirectResponse(home_of(principal), status.HTTP_303_SEE_OTHER)
    # The feed resumes after this seq: read before the counts, so no change falls between.
    seq = head_seq(get_context(request).session_factory)
    return render(
        request,
        "wall.html",
        principal,
        kiosk=request.query_params.get("kiosk") == "1",
        feed_seq=seq,
        refresh_seconds=REFRESH_SECONDS,
        site_zone=str(SiteClock(get_context(request).registry).default),
        **_wall_values(request, session, principal),
    )


@router.get("/wall/fragment")
def wall_fragment(request: Request, session: SessionDep, principal: PrincipalDep) -> Response:
    """The wall's body, redrawn on each change."""
    if principal.role not in CONSOLE_ROLES:
        return RedirectResponse(home_of(principal), status.HTTP_303_SEE_OTHER)
    return render(
        request, "_wall_body.html", principal, **_wall_values(request, session, principal)
    )
