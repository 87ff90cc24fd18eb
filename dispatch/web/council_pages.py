"""The council's pages (小事协商) on a phone or a desk: ``/council`` lists the consultations the
caller may read (a council member: their site's), open ones first; ``/council/{id}`` shows one:
the matter (category, place, description, the residents' photos through the evidence URL), the
thread, each proposal's tally against the quorum, the caller's own vote, the deadline and, once
settled, the outcome. The page's script posts comments, proposals and votes to the
``/api/v1/consultations`` routes (the X-Requested-With header is the cookie's CSRF guard) and
reloads. Who may read or take part is dispatch/residents/consultation.py's rule: anyone else
gets the 404 page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request, Response
from sqlalchemy import Select, select

from dispatch.http.deps import PrincipalDep, RowIdPath, SessionDep, get_context
from dispatch.residents import consultation as service
from dispatch.web.page_route import PageRoute
from dispatch.web.rendering import render
from storage.tables import Case, Consultation, ReportPhoto, ResidentReport, utcnow

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@dataclass(frozen=True)
class Entry:
    consultation: Consultation
    case: Case
    left: tuple[int, int] | None


def time_left(deadline: datetime, now: datetime) -> tuple[int, int] | None:
    """(hours, minutes) to the deadline; None once it has passed."""
    seconds = int((deadline - now).total_seconds())
    if seconds <= 0:
        return None
    return seconds // 3600, seconds % 3600 // 60


@router.get("/council")
def council_list(request: Request, session: SessionDep, principal: PrincipalDep) -> Response:
    now = utcnow()
    rows = service.listed(session, principal)
    items = [Entry(c, case, time_left(c.deadline_at, now)) for c, case in rows]
    return render(
        request,
        "council_list.html",
        principal,
        open_items=[i for i in items if i.consultation.state == service.ConsultationState.OPEN],
        recent_items=[i for i in items if i.consultation.state != service.ConsultationState.OPEN],
    )


@router.get("/council/{consultation_id}")
def council_item(
    consultation_id: RowIdPath, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    consultation = service.visible_consultation(session, principal, consultation_id)
    view = service.view(session, principal, consultation)
    reports = list(session.scalars(_reports(view.case.id)))
    photos = list(session.scalars(_photos(view.case.id)))
    first = reports[0] if reports else None
    site = next(
        (s for s in get_context(request).registry.sites if s.id == consultation.site_id), None
    )
    return render(
        request,
        "council_item.html",
        principal,
        item=view,
        report=first,
        site_name=(site.name or site.id) if site is not None else consultation.site_id,
        photos=photos if principal.sees(view.case) else [],
        left=time_left(consultation.deadline_at, utcnow()),
        writable=view.can_take_part and consultation.state == "open",
    )


def _reports(case_id: int) -> Select[ResidentReport]:
    return (
        select(ResidentReport)
        .where(ResidentReport.case_id == case_id)
        .order_by(ResidentReport.created_at, ResidentReport.id)
    )


def _photos(case_id: int) -> Select[str]:
    """The residents' photos of the case's reports (served by /api/v1/evidence/{sha256})."""
    return (
        select(ReportPhoto.sha256)
        .join(ResidentReport, ResidentReport.id == ReportPhoto.report_id)
        .where(ResidentReport.case_id == case_id)
        .order_by(ReportPhoto.id)
    )
