"""The joint analysis reports' pages: the list with a form to generate one, each report as
stored (HTML) and its PDF. For the command centre and the departments' supervisors."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select

from dispatch.config import Role
from dispatch.http.deps import Principal, PrincipalDep, SessionDep, get_context
from dispatch.reports.period import ReportError, Scope, parse_day, parse_period
from dispatch.reports.service import ReportRequest, ReportService
from dispatch.web.i18n import DEFAULT_LANGUAGE, pick_language, translator
from dispatch.web.page_route import PageRoute, home_of
from dispatch.web.rendering import render
from storage.tables import AnalysisReport

router = APIRouter(route_class=PageRoute, include_in_schema=False)

REPORT_ROLES = frozenset({Role.DISPATCHER, Role.ADMIN, Role.SUPERVISOR})
LISTED = 100  # the newest reports the list shows
# The stored report is one document with inline style and PNG data, and no script at all.
REPORT_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
FormText = Annotated[str, Form(max_length=200)]


def _allowed(principal: Principal) -> bool:
    return principal.role in REPORT_ROLES


def _places(request: Request) -> list[tuple[str, str]]:
    """The form's places: (value, label); value is ``site:ID`` or ``street:NAME``."""
    registry = get_context(request).registry
    places = [(f"site:{site.id}", site.name or site.id) for site in registry.sites]
    streets = sorted({site.street for site in registry.sites if site.street})
    return places + [(f"street:{street}", street) for street in streets]


def _page(
    request: Request,
    session: SessionDep,
    principal: Principal,
    error: str | None = None,
    status_code: int = 200,
    asked: dict[str, str] | None = None,
) -> Response:
    reports = session.execute(
        select(
            AnalysisReport.id,
            AnalysisReport.period,
            AnalysisReport.scope,
            AnalysisReport.scope_id,
            AnalysisReport.period_start,
            AnalysisReport.period_end,
            AnalysisReport.language,
            AnalysisReport.generated_at,
            AnalysisReport.generated_by,
        )
        .order_by(AnalysisReport.generated_at.desc(), AnalysisReport.id.desc())
        .limit(LISTED)
    ).all()
    return render(
        request,
        "reports.html",
        principal,
        status_code=status_code,
        reports=reports,
        places=_places(request),
        error=error,
        asked=asked or {},
        default_day=_default_day().isoformat(),
        names={site.id: site.name or site.id for site in get_context(request).registry.sites},
    )


@router.get("/console/reports")
def reports_list(request: Request, session: SessionDep, principal: PrincipalDep) -> Response:
    """The reports generated so far, newest first, and the form to generate one."""
    if not _allowed(principal):
        return RedirectResponse(home_of(principal), status.HTTP_303_SEE_OTHER)
    return _page(request, session, principal)


@router.post("/console/reports")
def generate_report(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    period: FormText,
    place: FormText,
    day: FormText,
    language: FormText = DEFAULT_LANGUAGE,
) -> Response:
    """Generate (or regenerate) one report, then show it; a bad choice is one line on the form."""
    if not _allowed(principal):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "reports are for the command centre")
    asked = {"period": period, "place": place, "day": day, "language": language}
    kind, _, scope_id = place.partition(":")
    try:
        request_ = ReportRequest(
            period=parse_period(period),
            scope=Scope(kind) if kind in tuple(Scope) else _bad_scope(kind),
            scope_id=scope_id,
            day=parse_day(day),
            language=language,
        )
        context = get_context(request)
        service = ReportService(
            context.session_factory,
            context.registry,
            evidence_store=context.evidence_store,
            plate_confidence_floor=context.plate_confidence_floor,  # the configured, not default
        )
        generated = service.generate(request_, principal.name)
    except ReportError as exc:
        t = translator(pick_language(request)[0])
        reason = t(f"report.errors.{exc.code}", **exc.values)
        return _page(
            request,
            session,
            principal,
            error=t("report.error", reason=reason),
            status_code=status.HTTP_400_BAD_REQUEST,
            asked=asked,
        )
    return RedirectResponse(f"/console/reports/{generated.report_id}", status.HTTP_303_SEE_OTHER)


def _default_day() -> date:
    """A day whose week and month have both ended: the form's default works for either."""
    today = date.today()
    return min(today - timedelta(days=7), today.replace(day=1) - timedelta(days=1))


def _bad_scope(kind: str) -> Scope:
    raise ReportError("bad_scope", f"unknown place kind {kind[:20]!r}: use site or street")


def _stored(session: SessionDep, principal: Principal, report_id: int) -> AnalysisReport:
    if not _allowed(principal):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "reports are for the command centre")
    report = session.get(AnalysisReport, report_id)
    if report is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"report {report_id} not found")
    return report


@router.get("/console/reports/{report_id:int}.pdf")
def report_pdf(report_id: int, session: SessionDep, principal: PrincipalDep) -> Response:
    """The report's PDF, as a download."""
    report = _stored(session, principal, report_id)
    name = f"report-{report.period}-{report.scope}-{report.period_start:%Y%m%d}-{report.id}.pdf"
    return Response(
        report.pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/console/reports/{report_id:int}")
def report_html(report_id: int, session: SessionDep, principal: PrincipalDep) -> Response:
    """The report as it was generated (a self-contained document in its own language)."""
    report = _stored(session, principal, report_id)
    return HTMLResponse(
        report.html,
        headers={"Content-Security-Policy": REPORT_POLICY, "Cache-Control": "no-store"},
    )
