"""The web pages: sign-in, the dispatch console, the worker view.

Server-rendered (Jinja2) with a little vanilla JavaScript from static/. Pages use the API's
principal (the ``cw_session`` cookie once signed in); a page request without one is sent to
/login. Department roles see only their department's cases, here as in the API.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session

from contracts.kinds import ViolationKind
from dispatch.auth import IdentifiedDep
from dispatch.config import MIN_PASSWORD_LENGTH, Department
from dispatch.http.deps import (
    Principal,
    PrincipalDep,
    SessionDep,
    get_context,
    visible_case,
)
from dispatch.residents.consultation import consultation_of_case
from dispatch.residents.followup import reports_for
from dispatch.web.evidence_view import evidence_set, evidence_views
from dispatch.web.feed import head_seq
from dispatch.web.page_route import (
    PASSWORD_PAGE,
    WORKER_ROLES,
    PageRoute,
    home_of,
)
from dispatch.web.plans import place_for_page
from dispatch.web.queries import (
    CASE_PAGE_LOADS,
    allowed_actions,
    deadline_class,
    last_deadline_move,
    minutes_to,
    worker_queue,
)
from dispatch.web.redirects import local_target
from dispatch.web.rendering import render
from dispatch.workflow import (
    NEEDS_REASON,
    TRANSITIONS,
    Action,
    CloseReason,
    Person,
    assignable_people,
)
from storage.tables import Case, CaseState

# What each page offers, in this order; a button shows only where the workflow would allow it.
# Assigning to a person is offered once the workflow has the action (dispatch.workflow).
_ASSIGN = tuple(action for action in Action if action.value == "assign")
CONSOLE_ACTIONS = (
    Action.DISPATCH,
    *_ASSIGN,
    Action.TRANSFER,
    Action.RETURN,  # a supervisor at the console
    Action.MERGE,
    Action.PARK,
    Action.VERIFY,
    Action.REOPEN,
    Action.CLOSE,
    Action.RECLASSIFY,
    Action.NOTE,
    Action.REPLY,  # only on a case residents reported (_case_actions)
)
WORKER_ACTIONS = (Action.ACCEPT, Action.RESOLVE, Action.RETURN, Action.NOTE, Action.REPLY)


def _case_actions(
    principal: Principal, case: Case, offered: tuple[Action, ...], reported: bool
) -> list[Action]:
    """The actions offered on ``case``; a reply to residents only where residents reported
    (``reported``: the page's ``reports_for`` found some; one query fewer than asking again)."""
    actions = allowed_actions(principal, case, offered)
    if Action.REPLY in actions and not reported:
        actions.remove(Action.REPLY)
    return actions


router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/")
def home(principal: PrincipalDep) -> RedirectResponse:
    return RedirectResponse(home_of(principal), status.HTTP_303_SEE_OTHER)


@router.get("/login")
def login_page(request: Request) -> Response:
    # Only a path on this site; the script resolves it against the origin once more.
    return render(
        request, "login.html", None, next_target=local_target(request.query_params.get("next"))
    )


@router.get(PASSWORD_PAGE)
def password_page(request: Request, identified: IdentifiedDep) -> Response:
    """Change one's own password; the only page open while the account must change it."""
    if identified.account is None:  # a config token has no password
        return RedirectResponse(home_of(identified.actor), status.HTTP_303_SEE_OTHER)
    return render(
        request,
        "password.html",
        identified.actor,
        must_change=identified.account.must_change_password,
        next_target=local_target(request.query_params.get("next")),
        min_length=MIN_PASSWORD_LENGTH,
    )


def _people(session: Session, case: Case) -> list[Person]:
    """Whom the assign form offers: the case's department's people (none: not routed yet)."""
    if case.department is None:
        return []
    return assignable_people(session, Department(case.department))


def _panel_values(
    request: Request, session: Session, case: Case, principal: Principal
) -> dict[str, Any]:
    reports = reports_for(session, case.id, principal.role)
    return {
        "case": case,
        "evidence": evidence_set(case, principal),
        "place": place_for_page(request, session, case),
        "deadline_move": last_deadline_move(case),
        "people": _people(session, case),
        "actions": _case_actions(principal, case, CONSOLE_ACTIONS, bool(reports)),
        "reports": reports,
        "consultation": consultation_of_case(session, principal, case.id),
        "needs_reason": NEEDS_REASON,
        "departments": list(Department),
        "kinds": list(ViolationKind),
        "close_reasons": list(CloseReason),
        "deadline_class": deadline_class,
        "minutes_to": minutes_to,
    }


@router.get("/console/cases/{case_id}")
def console_case(
    case_id: int, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    """One case on a page of its own (a link to send, a screenshot)."""
    case = visible_case(session, principal, case_id, CASE_PAGE_LOADS)
    values = _panel_values(request, session, case, principal)
    return render(request, "case_page.html", principal, **values)


@router.get("/console/cases/{case_id}/panel")
def console_case_panel(
    case_id: int, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    case = visible_case(session, principal, case_id, CASE_PAGE_LOADS)
    values = _panel_values(request, session, case, principal)
    return render(request, "_panel.html", principal, **values)


@router.get("/console/cases/{case_id}/frames")
def case_frames(
    case_id: int, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    """Every frame of a case, for "show all" on the panel and the worker's case page."""
    case = visible_case(session, principal, case_id, CASE_PAGE_LOADS)
    return render(request, "_frames.html", principal, frames=evidence_views(case, principal))


@router.get("/worker")
def worker(request: Request, session: SessionDep, principal: PrincipalDep) -> Response:
    """The department worker's queue, nearest deadline first."""
    if principal.role not in WORKER_ROLES:
        return RedirectResponse(home_of(principal), status.HTTP_303_SEE_OTHER)
    seq = head_seq(get_context(request).session_factory)  # before the queue: see console()
    return render(
        request,
        "worker.html",
        principal,
        queue=worker_queue(session, principal),
        deadline_class=deadline_class,
        minutes_to=minutes_to,
        feed_seq=seq,
    )


@router.get("/worker/cases/{case_id}")
def worker_case(
    case_id: int, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    case = visible_case(session, principal, case_id, CASE_PAGE_LOADS)
    reports = reports_for(session, case.id, principal.role)
    return render(
        request,
        "worker_case.html",
        principal,
        case=case,
        evidence=evidence_set(case, principal),
        place=place_for_page(request, session, case),
        deadline_move=last_deadline_move(case),
        actions=_case_actions(principal, case, WORKER_ACTIONS, bool(reports)),
        reports=reports,
        consultation=consultation_of_case(session, principal, case.id),
        may_attach=principal.may(Action.ATTACH)
        and CaseState(case.state) in TRANSITIONS[Action.ATTACH][0],
        needs_reason=NEEDS_REASON,
        deadline_class=deadline_class,
        minutes_to=minutes_to,
    )
