"""The response templates' admin page, /console/templates: admins add, change and delete the
templates the action forms offer (the page calls /api/v1/templates; dispatch/templates_store.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import RedirectResponse

from dispatch.config import Department, Role
from dispatch.http.deps import PrincipalDep, SessionDep
from dispatch.templates_store import list_templates, public
from dispatch.web.page_route import PageRoute, home_of
from dispatch.web.rendering import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE = "/console/templates"


@router.get(PAGE)
def templates_admin_page(
    request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    """Every response template, each editable in place, and a form for a new one (admins)."""
    if principal.role is not Role.ADMIN:
        return RedirectResponse(home_of(principal), status.HTTP_303_SEE_OTHER)
    return render(
        request,
        "templates_admin.html",
        principal,
        templates=[public(row) for row in list_templates(session, principal)],
        departments=list(Department),
    )
