"""The hotline operator's form (12345 一键接办): one page, one submit, from a call to a case.

``GET /console/hotline`` shows the form (dispatchers and admins); the page's script posts it as
JSON to ``POST /console/hotline``, which files the report through the residents' intake
(channel ``hotline``, submitted by the operator) and answers the tracking code to read back to
the caller and the case's link. Refusals are the intake's ``report_*`` errors, in the API's one
error shape, which the page shows in its language."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from contracts.events import Identifier
from contracts.kinds import ViolationKind
from dispatch.config import Role
from dispatch.errors import ApiError
from dispatch.http.deps import Principal, PrincipalDep, SessionDep, get_context
from dispatch.residents.intake import (
    MAX_FIELD,
    Channel,
    ReportSubmission,
    known_buildings,
)
from dispatch.residents.refusals import counting_route, submit_counted
from dispatch.web.page_route import PageRoute, home_of
from dispatch.web.rendering import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)
HOTLINE_ROLES = frozenset({Role.DISPATCHER, Role.ADMIN})


class HotlineCall(BaseModel):
    """What the operator typed; the intake bounds and checks it further."""

    model_config = ConfigDict(extra="forbid")

    category: ViolationKind
    site_id: Identifier  # the intake's own pattern: a hostile id is a 422, not a crash
    building: str = Field(default="", max_length=MAX_FIELD)
    unit: str = Field(default="", max_length=MAX_FIELD)
    description: str = Field(default="", max_length=20_000)
    phone: str = Field(default="", max_length=32)
    contact_consent: bool = False


class HotlineReceipt(BaseModel):
    tracking_code: str
    case_id: int
    case_url: str
    joined: bool
    tier: str


def _operator(principal: Principal) -> bool:
    return principal.role in HOTLINE_ROLES


@router.get("/console/hotline")
def hotline_page(request: Request, principal: PrincipalDep) -> Response:
    if not _operator(principal):
        return RedirectResponse(home_of(principal), status.HTTP_303_SEE_OTHER)
    context = get_context(request)
    sites = [
        {
            "id": site.id,
            "name": site.name or site.id,
            "buildings": known_buildings(context.registry, context.residents, site.id),
        }
        for site in context.registry.sites
    ]
    return render(
        request,
        "hotline.html",
        principal,
        sites=sites,
        categories=[kind.value for kind in ViolationKind],
        enabled=context.intake is not None,
    )


def hotline_submit(
    request: Request, call: HotlineCall, session: SessionDep, principal: PrincipalDep
) -> HotlineReceipt:
    if not _operator(principal):
        raise ApiError(status.HTTP_403_FORBIDDEN, "forbidden")
    intake = get_context(request).intake
    if intake is None:
        raise ApiError(status.HTTP_404_NOT_FOUND, "not_found", {"what": "hotline"})
    submission = ReportSubmission(
        category=call.category,
        site_id=call.site_id,
        building=call.building or None,
        unit=call.unit or None,
        description=call.description,
        phone=call.phone or None,
        contact_consent=call.contact_consent,
        channel=Channel.HOTLINE,
        submitted_by=principal.name[:MAX_FIELD],
        # The operator's desk is one address for many callers: the phone limit is the brake.
        client_address=f"hotline:{principal.name}"[:MAX_FIELD],
    )
    receipt = submit_counted(request, session, submission, deps=intake)  # refusals: ApiErrors
    session.commit()
    return HotlineReceipt(
        tracking_code=receipt.tracking_code,
        case_id=receipt.case_id,
        case_url=f"/console/cases/{receipt.case_id}",
        joined=receipt.joined,
        tier=receipt.tier.value,
    )


router.add_api_route(
    "/console/hotline",
    hotline_submit,
    methods=["POST"],
    response_model=HotlineReceipt,
    route_class_override=counting_route(PageRoute, lambda _request: Channel.HOTLINE.value),
)
