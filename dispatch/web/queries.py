"""What the pages list: the SLA board, a worker's queue, how near a deadline is (the console's
case list is dispatch.web.case_list)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, selectinload

from dispatch.http.deps import Principal, visible_cases
from dispatch.sla import CLOCK_STARTS, DeadlineState, DeadlineStatus, deadline_status
from dispatch.workflow import TRANSITIONS, Action
from storage.tables import OPEN_STATES, Case, CaseState


def allowed_actions(principal: Principal, case: Case, offered: Sequence[Action]) -> list[Action]:
    """The actions of ``offered`` that ``principal`` may take on ``case`` as it stands."""
    return [
        action
        for action in offered
        if principal.may(action) and CaseState(case.state) in TRANSITIONS[action][0]
    ]


# What a case's page reads besides the case: its evidence and its history.
CASE_PAGE_LOADS = (selectinload(Case.evidence), selectinload(Case.transitions))


def _visible(principal: Principal) -> Select[Case]:
    """A select of the cases ``principal`` may see."""
    return select(Case).where(visible_cases(principal))


def open_cases_query(principal: Principal, limit: int = 50) -> Select[Case]:
    """The SLA board's query: open cases, nearest resolve deadline first (ix_cases_open_due)."""
    return (
        _visible(principal)
        .where(Case.state.in_([state.value for state in OPEN_STATES]))
        .order_by(Case.sla_due_at.is_(None), Case.sla_due_at, Case.id)
        .limit(limit)
    )


def open_cases_by_deadline(session: Session, principal: Principal, limit: int = 50) -> list[Case]:
    """The SLA board: open cases, nearest resolve deadline first."""
    return list(session.scalars(open_cases_query(principal, limit)))


def worker_queue(session: Session, principal: Principal) -> list[Case]:
    """A department's cases still to work (dispatched, accepted, or resolved and waiting for a
    check), nearest deadline first."""
    states = [CaseState.DISPATCHED, CaseState.ACCEPTED, CaseState.RESOLVED]
    query = (
        _visible(principal)
        .where(Case.state.in_([state.value for state in states]))
        .order_by(Case.sla_due_at.is_(None), Case.sla_due_at, Case.id)
        .limit(200)
    )
    return list(session.scalars(query))


_ROW_CLASSES = {DeadlineState.OVER: "overdue", DeadlineState.SOON: "due-soon"}


class DeadlineClass:
    """A case's deadlines for a page: called, the row's class ("overdue", "due-soon" or ""), from
    the more urgent of its running deadlines; ``status`` gives each deadline's own state, so a
    page shows the accept and the resolve deadline apart (dispatch.sla.deadline_status)."""

    def __call__(self, case: Case, now: datetime) -> str:
        worst = self.status(case, now).worst
        if worst is None:
            return ""
        return _ROW_CLASSES.get(worst, "")

    def status(self, case: Case, now: datetime) -> DeadlineStatus:
        return deadline_status(case, now)


# The one the templates are given (a function-like object: templates call it and its status).
deadline_class = DeadlineClass()


def minutes_to(deadline: datetime | None, now: datetime) -> int | None:
    if deadline is None:
        return None
    return int((deadline - now).total_seconds() // 60)


@dataclass(frozen=True)
class DeadlineMove:
    """A dispatch or transfer that moved a case's resolve deadline (the workflow records the
    deadlines before and after in the entry's detail)."""

    action: str
    at: datetime
    source: datetime
    target: datetime


def last_deadline_move(case: Case) -> DeadlineMove | None:
    """The latest move of ``case``'s resolve deadline (its transitions loaded), if any."""
    for transition in sorted(case.transitions, key=lambda t: (t.at, t.id), reverse=True):
        if transition.action not in CLOCK_STARTS:
            continue
        detail = transition.detail or {}
        source, target = detail.get("deadline_from"), detail.get("deadline_to")
        if not isinstance(source, str) or not isinstance(target, str) or source == target:
            continue
        try:
            moved = DeadlineMove(
                transition.action,
                transition.at,
                datetime.fromisoformat(source),
                datetime.fromisoformat(target),
            )
        except ValueError:  # an entry written by hand: show nothing rather than fail the page
            continue
        return moved
    return None
