"""The site plans' routes: a site's plan image."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import FileResponse

from dispatch.http.deps import PrincipalDep, get_context
from dispatch.web.page_route import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/console/plans/{site_id}")
def plan_image(site_id: str, request: Request, _principal: PrincipalDep) -> Response:
    """A site's plan image (SiteConfig.plan_image), the camera dots' background."""
    site = next((s for s in get_context(request).registry.sites if s.id == site_id), None)
    if site is None or site.plan_image is None or not Path(site.plan_image).is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no plan image for site {site_id}")
    media_type = mimetypes.guess_type(str(site.plan_image))[0] or "application/octet-stream"
    return FileResponse(site.plan_image, media_type=media_type)
