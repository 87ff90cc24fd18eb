"""The dispatch console page and the fragments it refreshes: live feed, case list, SLA board,
camera plans, charts."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import RedirectResponse

from dispatch.alert_preferences import AlertPreferences, read_preferences
from dispatch.auth import AuthenticatedDep
from dispatch.false_alarms import false_alarm_table
from dispatch.http.cameras import camera_statuses
from dispatch.http.deps import PrincipalDep, SessionDep, get_context, scope_of
from dispatch.saved_views import list_views
from dispatch.web.case_list import is_urgent, list_options, load_listing
from dispatch.web.charts import console_charts
from dispatch.web.feed import head_seq, read_entries
from dispatch.web.i18n import Translator, pick_language, translator
from dispatch.web.page_route import CONSOLE_ROLES, PageRoute, home_of
from dispatch.web.plans import PLAN_HEIGHT, PLAN_WIDTH, site_plans_for_page
from dispatch.web.queries import deadline_class, minutes_to, open_cases_by_deadline
from dispatch.web.rendering import render
from dispatch.web.stats import StatsCacheDep

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def list_messages(t: Translator) -> dict[str, dict[str, str]]:
    """The case list's words for its script: its own, and the refusals it may have to show."""
    return {group: t.group(group) for group in ("list", "error", "close_reason")}


@router.get("/console")
def console(
    request: Request,
    session: SessionDep,
    authenticated: AuthenticatedDep,
    stats_cache: StatsCacheDep,
) -> Response:
    """The dispatch console: live feed, cases, SLA board, camera plan, charts."""
    principal = authenticated.actor
    if principal.role not in CONSOLE_ROLES:
        return RedirectResponse(home_of(principal), status.HTTP_303_SEE_OTHER)
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
    listing = load_listing(
        session,
        principal,
        context.registry,
        request.query_params.multi_items(),
        t,
        context.case_counts,
    )
    # Saved views and alert opt-ins belong to a person's account; a config token has neither.
    account = authenticated.account
    views = list_views(session, account.id) if account else []
    alerts: AlertPreferences | None = read_preferences(session, account.id) if account else None
    return render(
        request,
        "console.html",
        principal,
        listing=listing,
        options=list_options(context.registry),
        saved_views=views,
        alerts=alerts,
        list_i18n=list_messages(t),
        is_urgent=is_urgent,
        board=open_cases_by_deadline(session, principal),
        plans=site_plans_for_page(request, session, cameras),
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
    """The case list alone, for the same query string as the page's."""
    language, _ = pick_language(request)
    context = get_context(request)
    listing = load_listing(
        session,
        principal,
        context.registry,
        request.query_params.multi_items(),
        translator(language),
        context.case_counts,
    )
    return render(
        request,
        "_cases.html",
        principal,
        listing=listing,
        is_urgent=is_urgent,
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
