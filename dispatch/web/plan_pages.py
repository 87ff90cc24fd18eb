"""The site plans' routes: a site's plan image, the admin's plan page, the upload of a plan image
and the placing of cameras on it.

An uploaded plan is decoded and re-encoded with Pillow before it is stored: what is served is
pixels Pillow drew, never the uploader's bytes (no trailing payload, no metadata such as EXIF
GPS). It is stored content-addressed in the evidence store, like evidence, with a
``SitePlanImage`` row naming it; a placement is a ``CameraPlacement`` row, which wins over the
config's ``plan_position``. Only an admin changes either; each change is written to the server
log. The cookie-signed-in admin's changes need the CSRF header (dispatch/auth.py), as every
console form's do.
"""

from __future__ import annotations

import hashlib
import io
import logging
import mimetypes
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import RedirectResponse
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from contracts.images import ImageError, ImageType, image_type, image_type_and_size
from dispatch.config import Role
from dispatch.http.cameras import camera_statuses
from dispatch.http.deps import (
    API_PREFIX,
    ContextDep,
    Principal,
    PrincipalDep,
    SessionDep,
    get_context,
)
from dispatch.places import plan_url
from dispatch.web.page_route import PageRoute, home_of
from dispatch.web.plans import PLAN_HEIGHT, PLAN_WIDTH, site_plans_for_page
from dispatch.web.rendering import render
from storage.evidence_guard import hold_for_new_bytes
from storage.evidence_store import EvidenceError
from storage.tables import CameraPlacement, SitePlanImage, utcnow

log = logging.getLogger(__name__)

router = APIRouter(route_class=PageRoute, include_in_schema=False)
api_router = APIRouter(prefix=API_PREFIX, tags=["site plans"])

ADMIN_PAGE = "/admin/plans"
MULTIPART_OVERHEAD = 64 * 1024  # boundary lines and part headers around the file itself
# A plan is a drawing, not a satellite mosaic: more pixels than this is a mistake or a bomb.
MAX_PLAN_PIXELS = 40_000_000
JPEG_QUALITY = 90


def _require_admin(principal: Principal, what: str) -> None:
    if principal.role is not Role.ADMIN:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"only an admin may {what}")


def _site_or_404(context: ContextDep, site_id: str) -> None:
    if all(site.id != site_id for site in context.registry.sites):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"site {site_id} not found")


# --- the image ----------------------------------------------------------------------------------


@router.get("/console/plans/{site_id}")
def plan_image(
    site_id: str,
    request: Request,
    session: SessionDep,
    _principal: PrincipalDep,
    context: ContextDep,
) -> Response:
    """A site's plan image: the uploaded one, else the config's ``plan_image`` file; its type is
    read from its bytes, never from a name."""
    _site_or_404(context, site_id)
    row = session.get(SitePlanImage, site_id)
    if row is not None:
        if request.headers.get("if-none-match") == f'"{row.sha256}"':
            return Response(status_code=status.HTTP_304_NOT_MODIFIED)
        try:
            data = context.evidence_store.read(row.sha256)
        except (OSError, EvidenceError) as exc:
            log.error("site plan of %s unreadable: %s", site_id, exc)
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"no plan image for site {site_id}"
            ) from exc
        return _image_response(data, f'"{row.sha256}"')
    site = next(s for s in context.registry.sites if s.id == site_id)
    if site.plan_image is None or not Path(site.plan_image).is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no plan image for site {site_id}")
    data = Path(site.plan_image).read_bytes()
    return _image_response(data, None, fallback=mimetypes.guess_type(site.plan_image)[0])


def _image_response(data: bytes, etag: str | None, fallback: str | None = None) -> Response:
    # An operator's SVG plan from the config is still served as such; anything else must be a
    # JPEG or PNG by its bytes.
    media_type = image_type(data) or (fallback if fallback == "image/svg+xml" else None)
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the plan image is not a JPEG or PNG")
    headers = {"Cache-Control": "private, no-cache", "X-Content-Type-Options": "nosniff"}
    if etag:
        headers["ETag"] = etag
    return Response(data, media_type=media_type, headers=headers)


# --- the admin's page ---------------------------------------------------------------------------


@router.get(ADMIN_PAGE)
def plan_admin_page(request: Request, session: SessionDep, principal: PrincipalDep) -> Response:
    """Upload each site's plan image and put its cameras on it (admins)."""
    if principal.role is not Role.ADMIN:
        return RedirectResponse(home_of(principal), status.HTTP_303_SEE_OTHER)
    context = get_context(request)
    cameras = camera_statuses(session, context.registry)
    return render(
        request,
        "plan_admin.html",
        principal,
        plans=site_plans_for_page(request, session, cameras),
        cameras=cameras,
        plan_size=(PLAN_WIDTH, PLAN_HEIGHT),
        upload_megabytes=context.web.attachment_max_bytes // (1024 * 1024),
    )


# --- the upload ---------------------------------------------------------------------------------


class PlanImagePublic(BaseModel):
    site_id: str
    sha256: str
    content_type: str
    width: int
    height: int
    url: str


@dataclass(frozen=True)
class PlanUpload:
    filename: str
    data: bytes


async def receive_plan(
    site_id: str, request: Request, principal: PrincipalDep, context: ContextDep
) -> PlanUpload:
    """The uploaded file, read only once the caller is known to be an admin, and only up to the
    limit (the after-photo's), counted as it streams in; never spooled to disk."""
    _require_admin(principal, "upload a site plan")
    _site_or_404(context, site_id)
    limit = context.web.attachment_max_bytes
    cap = limit + MULTIPART_OVERHEAD
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise _refuse(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "send the plan as the field 'file' of a multipart/form-data body",
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise _refuse(
            status.HTTP_413_CONTENT_TOO_LARGE, f"a site plan may be at most {limit} bytes"
        )

    async def capped() -> AsyncGenerator[bytes, None]:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > cap:
                raise _refuse(
                    status.HTTP_413_CONTENT_TOO_LARGE, f"a site plan may be at most {limit} bytes"
                )
            yield chunk

    parser = MultiPartParser(request.headers, capped(), max_files=1, max_fields=4)
    parser.spool_max_size = cap
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise _refuse(status.HTTP_400_BAD_REQUEST, exc.message) from exc
    try:
        file = form.get("file")
        if not isinstance(file, StarletteUploadFile):
            raise _refuse(status.HTTP_400_BAD_REQUEST, "the form has no file in its field 'file'")
        data = await file.read()
        if len(data) > limit:
            raise _refuse(
                status.HTTP_413_CONTENT_TOO_LARGE, f"a site plan may be at most {limit} bytes"
            )
        return PlanUpload((file.filename or "plan")[:200], data)
    finally:
        await form.close()


def _refuse(code: int, message: str) -> HTTPException:
    log.warning("site plan refused: %s", message)
    return HTTPException(code, message)


def reencode_plan(data: bytes) -> tuple[bytes, ImageType, int, int]:
    """The plan decoded and encoded again in its own format; ImageError for anything that is
    not a whole JPEG or PNG of a sane size."""
    kind, width, height = image_type_and_size(data)
    if width <= 0 or height <= 0:
        raise ImageError("an image without pixels")
    if width * height > MAX_PLAN_PIXELS:
        raise ImageError(f"{width}x{height} is more than {MAX_PLAN_PIXELS} pixels")
    try:
        with Image.open(
            io.BytesIO(data), formats=["PNG" if kind == "image/png" else "JPEG"]
        ) as img:
            img.load()
            out = io.BytesIO()
            if kind == "image/png":
                has_alpha = img.mode in ("RGBA", "LA") or "transparency" in img.info
                img.convert("RGBA" if has_alpha else "RGB").save(out, format="PNG")
            else:
                img.convert("RGB").save(out, format="JPEG", quality=JPEG_QUALITY)
            size = img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"not a readable image: {exc}") from exc
    return out.getvalue(), kind, size[0], size[1]


@api_router.put(
    "/sites/{site_id}/plan",
    response_model=PlanImagePublic,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                }
            },
        }
    },
    responses={
        400: {"description": "a malformed multipart body, or one without the field 'file'"},
        403: {"description": "only an admin uploads site plans"},
        404: {"description": "no such site"},
        413: {"description": "the file is larger than the limit"},
        415: {"description": "not a whole JPEG or PNG image"},
    },
)
def upload_plan(
    site_id: str,
    upload: Annotated[PlanUpload, Depends(receive_plan)],
    session: SessionDep,
    principal: PrincipalDep,
    context: ContextDep,
) -> PlanImagePublic:
    """Upload a site's plan image (admins): JPEG or PNG, decided from the bytes, re-encoded,
    stored content-addressed; it replaces the site's previous plan."""
    try:
        data, kind, width, height = reencode_plan(upload.data)
    except ImageError as exc:
        raise _refuse(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"{upload.filename}: {exc}") from exc
    sha256 = hashlib.sha256(data).hexdigest()
    hold_for_new_bytes(session)  # to the commit: retention removes no bytes meanwhile
    context.evidence_store.put(data, sha256)  # the file first: a row never names a missing file
    row = session.get(SitePlanImage, site_id) or SitePlanImage(site_id=site_id)
    row.sha256, row.content_type, row.width, row.height = sha256, kind, width, height
    row.uploaded_by, row.uploaded_at = principal.name, utcnow()
    session.add(row)
    session.commit()
    log.info(
        "site plan of %s uploaded by %s: %s %dx%d, sha256 %s (from %s, %d bytes)",
        site_id,
        principal.name,
        kind,
        width,
        height,
        sha256,
        upload.filename,
        len(upload.data),
    )
    return PlanImagePublic(
        site_id=site_id,
        sha256=sha256,
        content_type=kind,
        width=width,
        height=height,
        url=plan_url(site_id),
    )


# --- placing cameras ----------------------------------------------------------------------------


class PlacementIn(BaseModel):
    """A camera's point on its site's plan, as fractions of the plan's width and height."""

    model_config = ConfigDict(extra="forbid")
    x: float = Field(ge=0, le=1, allow_inf_nan=False)
    y: float = Field(ge=0, le=1, allow_inf_nan=False)


class PlacementPublic(BaseModel):
    camera_id: str
    site_id: str
    x: float
    y: float
    placed_by: str


def _camera_site(context: ContextDep, camera_id: str) -> str:
    found = context.registry.camera(camera_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"camera {camera_id} not found")
    return found[0].id


@api_router.put(
    "/cameras/{camera_id}/placement",
    response_model=PlacementPublic,
    responses={
        403: {"description": "only an admin places cameras"},
        404: {"description": "no such camera"},
    },
)
def place_camera(
    camera_id: str,
    placement: PlacementIn,
    session: SessionDep,
    principal: PrincipalDep,
    context: ContextDep,
) -> PlacementPublic:
    """Put a camera on its site's plan (admins); it wins over the config's plan_position."""
    _require_admin(principal, "place cameras")
    site_id = _camera_site(context, camera_id)
    row = session.get(CameraPlacement, camera_id) or CameraPlacement(camera_id=camera_id)
    row.site_id, row.x, row.y = site_id, placement.x, placement.y
    row.placed_by, row.placed_at = principal.name, utcnow()
    session.add(row)
    session.commit()
    log.info(
        "camera %s placed on the plan of %s at (%.3f, %.3f) by %s",
        camera_id,
        site_id,
        placement.x,
        placement.y,
        principal.name,
    )
    return PlacementPublic(
        camera_id=camera_id, site_id=site_id, x=row.x, y=row.y, placed_by=principal.name
    )


@api_router.delete(
    "/cameras/{camera_id}/placement",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        403: {"description": "only an admin places cameras"},
        404: {"description": "no such camera"},
    },
)
def unplace_camera(
    camera_id: str, session: SessionDep, principal: PrincipalDep, context: ContextDep
) -> Response:
    """Take an admin's placement away: the camera's dot falls back to the config's position."""
    _require_admin(principal, "place cameras")
    _camera_site(context, camera_id)
    row = session.get(CameraPlacement, camera_id)
    if row is not None:
        session.delete(row)
        session.commit()
        log.info("camera %s placement removed by %s", camera_id, principal.name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
