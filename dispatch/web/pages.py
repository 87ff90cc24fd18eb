"""The web pages: sign-in, the dispatch console, the worker view.

Server-rendered (Jinja2) with a little vanilla JavaScript from static/. Pages use the API's
principal (the ``cw_session`` cookie once signed in); a page request without one is sent to
/login. Department roles see only their department's cases, here as in the API.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.routing import APIRoute

from contracts.kinds import ViolationKind
from dispatch.auth import IdentifiedDep, PasswordChangeRequired
from dispatch.config import MIN_PASSWORD_LENGTH, Department, Role
from dispatch.false_alarms import false_alarm_table
from dispatch.http.cameras import camera_statuses
from dispatch.http.deps import (
    Principal,
    PrincipalDep,
    SessionDep,
    get_context,
    scope_of,
    visible_case,
)
from dispatch.web.charts import console_charts
from dispatch.web.evidence_view import evidence_views
from dispatch.web.feed import head_seq, read_entries
from dispatch.web.i18n import pick_language, translator
from dispatch.web.plans import PLAN_HEIGHT, PLAN_WIDTH, site_plans
from dispatch.web.queries import (
    CASE_PAGE_LOADS,
    allowed_actions,
    deadline_class,
    minutes_to,
    open_cases_by_deadline,
    recent_cases,
    worker_queue,
)
from dispatch.web.redirects import local_target
from dispatch.web.rendering import render
from dispatch.web.stats import StatsCacheDep
from dispatch.workflow import NEEDS_REASON, TRANSITIONS, Action, CloseReason
from storage.tables import Case, CaseState

PASSWORD_PAGE = "/account/password"
CONSOLE_ROLES = frozenset({Role.DISPATCHER, Role.ADMIN, Role.SUPERVISOR, Role.INTEGRATION})
WORKER_ROLES = frozenset({Role.WORKER, Role.SUPERVISOR})
# What each page offers, in this order; a button shows only where the workflow would allow it.
CONSOLE_ACTIONS = (
    Action.DISPATCH,
    Action.TRANSFER,
    Action.RETURN,  # a supervisor at the console
    Action.MERGE,
    Action.PARK,
    Action.VERIFY,
    Action.REOPEN,
    Action.CLOSE,
    Action.RECLASSIFY,
    Action.NOTE,
)
WORKER_ACTIONS = (Action.ACCEPT, Action.RESOLVE, Action.RETURN, Action.NOTE)


class PageRoute(APIRoute):
    """A page route: no principal means "sign in first", not a 401 body."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except HTTPException as exc:
                target = request.url.path
                if request.url.query:
                    target += f"?{request.url.query}"
                if isinstance(exc, PasswordChangeRequired):
                    page = PASSWORD_PAGE
                elif exc.status_code == status.HTTP_401_UNAUTHORIZED:
                    page = "/login"
                else:
                    raise
                return RedirectResponse(
                    f"{page}?next={quote(target, safe='')}", status.HTTP_303_SEE_OTHER
                )

        return page_handler


router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _home_of(principal: Principal) -> str:
    return "/worker" if principal.role is Role.WORKER else "/console"


@router.get("/")
def home(principal: PrincipalDep) -> RedirectResponse:
    return RedirectResponse(_home_of(principal), status.HTTP_303_SEE_OTHER)


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
        return RedirectResponse(_home_of(identified.actor), status.HTTP_303_SEE_OTHER)
    return render(
        request,
        "password.html",
        identified.actor,
        must_change=identified.account.must_change_password,
        next_target=local_target(request.query_params.get("next")),
        min_length=MIN_PASSWORD_LENGTH,
    )


@router.get("/console")
def console(
    request: Request, session: SessionDep, principal: PrincipalDep, stats_cache: StatsCacheDep
) -> Response:
    """The dispatch console: live feed, cases, SLA board, camera plan, charts."""
    if principal.role not in CONSOLE_ROLES:
        return RedirectResponse(_home_of(principal), status.HTTP_303_SEE_OTHER)
    context = get_context(request)
    # The feed resumes after this seq: read before the page's lists, so no change falls between.
    seq = head_seq(context.session_factory)
    language, _ = pick_language(request)
    t = translator(language)
    cameras = camera_statuses(session, context.registry)
    stats = stats_cache.get(session, scope_of(principal), context.registry.sites[0].timezone)
    feed = read_entries(
        context.session_factory, max(0, seq - 30), 30, department=scope_of(principal)
    )
    return render(
        request,
        "console.html",
        principal,
        cases=recent_cases(session, principal),
        board=open_cases_by_deadline(session, principal),
        plans=site_plans(context.registry, cameras),
        plan_size=(PLAN_WIDTH, PLAN_HEIGHT),
        charts=console_charts(stats, t),
        false_alarms=false_alarm_table(stats.false_alarms_by_camera, t),
        feed=[event.data for event in reversed(feed)],
        feed_seq=seq,
        deadline_class=deadline_class,
        minutes_to=minutes_to,
    )


@router.get("/console/fragments/cases")
def cases_fragment(request: Request, session: SessionDep, principal: PrincipalDep) -> Response:
    return render(
        request,
        "_cases.html",
        principal,
        cases=recent_cases(session, principal),
        deadline_class=deadline_class,
    )


@router.get("/console/fragments/sla")
def sla_fragment(request: Request, session: SessionDep, principal: PrincipalDep) -> Response:
    return render(
        request,
        "_sla.html",
        principal,
        board=open_cases_by_deadline(session, principal),
        deadline_class=deadline_class,
        minutes_to=minutes_to,
    )


def _panel_values(request: Request, case: Case, principal: Principal) -> dict[str, Any]:
    context = get_context(request)
    return {
        "case": case,
        "frames": evidence_views(context.registry, case, principal),
        "actions": allowed_actions(principal, case, CONSOLE_ACTIONS),
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
    return render(request, "case_page.html", principal, **_panel_values(request, case, principal))


@router.get("/console/cases/{case_id}/panel")
def console_case_panel(
    case_id: int, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    case = visible_case(session, principal, case_id, CASE_PAGE_LOADS)
    return render(request, "_panel.html", principal, **_panel_values(request, case, principal))


@router.get("/console/plans/{site_id}")
def plan_image(site_id: str, request: Request, _principal: PrincipalDep) -> Response:
    """A site's plan image (SiteConfig.plan_image), the camera dots' background."""
    site = next((s for s in get_context(request).registry.sites if s.id == site_id), None)
    if site is None or site.plan_image is None or not Path(site.plan_image).is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no plan image for site {site_id}")
    media_type = mimetypes.guess_type(str(site.plan_image))[0] or "application/octet-stream"
    return FileResponse(site.plan_image, media_type=media_type)


@router.get("/worker")
def worker(request: Request, session: SessionDep, principal: PrincipalDep) -> Response:
    """The department worker's queue, nearest deadline first."""
    if principal.role not in WORKER_ROLES:
        return RedirectResponse(_home_of(principal), status.HTTP_303_SEE_OTHER)
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
    context = get_context(request)
    return render(
        request,
        "worker_case.html",
        principal,
        case=case,
        frames=evidence_views(context.registry, case, principal),
        actions=allowed_actions(principal, case, WORKER_ACTIONS),
        may_attach=principal.may(Action.ATTACH)
        and CaseState(case.state) in TRANSITIONS[Action.ATTACH][0],
        needs_reason=NEEDS_REASON,
        deadline_class=deadline_class,
        minutes_to=minutes_to,
    )
