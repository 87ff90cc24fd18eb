"""The exemption console pages (issue 13): ``/console/permits`` (list, issue, revoke temporary
permits), ``/console/registry`` (the residents' vehicle registry: list, masked for roles that
only read it, edit, CSV import with its per-row error report, export) and ``/console/gateways``
(each gateway's running rule version against the newest signed, one that is behind flagged).

The pages' scripts (permits.js, registry.js) change things through the API routes
(dispatch/http/exemptions.py, dispatch/http/registry.py) with the ``X-Requested-With`` header,
the cookie's CSRF guard (docs/access.md); no page posts a form itself. A role that may not use a
page is sent to its home page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import RedirectResponse

from contracts.sites import SiteConfig
from dispatch.exemptions import gateway_versions
from dispatch.http.deps import PrincipalDep, SessionDep, get_context
from dispatch.http.exemptions import may_manage, may_see_gateways
from dispatch.http.registry import service as registry_service
from dispatch.registry import MAX_CSV_BYTES, MAX_CSV_ROWS, Category, may_edit, may_read, view
from dispatch.web.page_route import PageRoute, home_of
from dispatch.web.rendering import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)

SiteParam = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


def _site(request: Request, site_id: str | None) -> SiteConfig:
    sites = get_context(request).registry.sites
    return next((s for s in sites if s.id == site_id), sites[0])


def _zones(site: SiteConfig) -> list[str]:
    return sorted({z.id for g in site.gateways for c in g.cameras for z in c.zones})


@router.get("/console/permits")
def permits_page(request: Request, principal: PrincipalDep, site_id: SiteParam = None) -> Response:
    if not may_manage(principal):
        return RedirectResponse(home_of(principal), status.HTTP_303_SEE_OTHER)
    context = get_context(request)
    site = _site(request, site_id)
    service = context.exemptions
    permits = (
        [r for r in service.list_rules(site.id) if r.type == "permit"]
        if service is not None
        else []
    )
    return render(
        request,
        "permits.html",
        principal,
        sites=context.registry.sites,
        site=site,
        zones=_zones(site),
        permits=permits,
        enabled=service is not None,
    )


@router.get("/console/registry")
def registry_page(
    request: Request,
    principal: PrincipalDep,
    site_id: SiteParam = None,
    plate: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    if not may_read(principal):
        return RedirectResponse(home_of(principal), status.HTTP_303_SEE_OTHER)
    context = get_context(request)
    site = _site(request, site_id)
    rows = registry_service(context).entries(site.id, plate or None)
    return render(
        request,
        "registry.html",
        principal,
        sites=context.registry.sites,
        site=site,
        plate=plate or "",
        vehicles=[view(row, principal) for row in rows],
        editable=may_edit(principal),
        categories=[c.value for c in Category],
        max_rows=MAX_CSV_ROWS,
        max_kib=MAX_CSV_BYTES // 1024,
    )


@router.get("/console/gateways")
def gateways_page(request: Request, session: SessionDep, principal: PrincipalDep) -> Response:
    if not may_see_gateways(principal):
        return RedirectResponse(home_of(principal), status.HTTP_303_SEE_OTHER)
    gateways = gateway_versions(session, get_context(request).registry)
    return render(
        request,
        "gateways.html",
        principal,
        gateways=gateways,
        behind=sum(1 for g in gateways if g.behind),
    )
