"""The after-photo upload (``POST /api/v1/cases/{case_id}/attachments``): streamed, capped and
checked before anything is stored, and refused early when its declared size is too large."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.types import ASGIApp, Receive, Scope, Send

from contracts.images import ImageError, image_type_and_size
from dispatch.http.deps import API_PREFIX, ContextDep, PrincipalDep, SessionDep, visible_case
from dispatch.schemas import EvidencePublic
from dispatch.web.evidence_view import AFTER_PHOTO
from dispatch.web.queries import CASE_PAGE_LOADS
from dispatch.web.rendering import web_state
from dispatch.workflow import (
    Action,
    Command,
    IllegalTransitionError,
    MissingInputError,
    NotPermittedError,
)
from storage.evidence_guard import hold_for_new_bytes
from storage.evidence_rows import file_evidence, link_evidence
from storage.tables import utcnow

log = logging.getLogger(__name__)

router = APIRouter(prefix=API_PREFIX)


def _refuse(request: Request, code: int, reason: str, message: str) -> HTTPException:
    web_state(request).attachments_refused.labels(reason=reason).inc()
    log.warning("after-photo refused (%s): %s", reason, message)
    return HTTPException(code, message)


MULTIPART_OVERHEAD = 64 * 1024  # boundary lines and part headers around the file itself
_PHOTO_FORM = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "the after-photo: JPEG or PNG",
                    }
                },
            }
        }
    },
}


@dataclass(frozen=True)
class Upload:
    """The file of an after-photo upload, as sent (at most the size limit)."""

    filename: str
    data: bytes


async def receive_photo(request: Request, principal: PrincipalDep, context: ContextDep) -> Upload:
    """The upload's file, read only once the caller is known and may attach files, and only up to
    the limit, counted as it streams in; the file stays in memory, never spooled to disk.

    A ``File()`` parameter would have FastAPI read (and spool) the whole form before any
    dependency ran: an anonymous chunked upload once put 299 MB on disk before its 401.
    """
    if not principal.may(Action.ATTACH):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"a {principal.role} may not attach files")
    limit = context.web.attachment_max_bytes
    cap = limit + MULTIPART_OVERHEAD
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise _refuse(
            request,
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "not_multipart",
            "send the after-photo as the field 'file' of a multipart/form-data body",
        )

    async def capped() -> AsyncGenerator[bytes, None]:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > cap:
                raise _refuse(
                    request,
                    status.HTTP_413_CONTENT_TOO_LARGE,
                    "too_large",
                    f"the upload is larger than {cap} bytes; an after-photo may be at most "
                    f"{limit} bytes",
                )
            yield chunk

    parser = MultiPartParser(request.headers, capped(), max_files=1, max_fields=8)
    parser.spool_max_size = cap  # the file never outgrows memory: the stream stops first
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise _refuse(request, status.HTTP_400_BAD_REQUEST, "malformed", exc.message) from exc
    try:
        file = form.get("file")
        if not isinstance(file, StarletteUploadFile):
            raise _refuse(
                request,
                status.HTTP_400_BAD_REQUEST,
                "no_file",
                "the form has no file in its field 'file'",
            )
        return Upload(file.filename or "upload", await file.read())
    finally:
        await form.close()


@router.post(
    "/cases/{case_id}/attachments",
    response_model=EvidencePublic,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={"requestBody": _PHOTO_FORM},
    responses={
        400: {"description": "a malformed multipart body, or one without the field 'file'"},
        403: {"description": "this role may not attach files"},
        404: {"description": "no such case (or another department's)"},
        409: {"description": "the case is not being handled, or the file is attached already"},
        413: {"description": "the file is larger than the limit"},
        415: {"description": "not a JPEG or PNG image, or not a multipart/form-data body"},
    },
)
def attach_file(
    case_id: int,
    request: Request,
    upload: Annotated[Upload, Depends(receive_photo)],
    session: SessionDep,
    principal: PrincipalDep,
    context: ContextDep,
) -> EvidencePublic:
    """Upload an after-photo to a case the department is handling: stored as evidence
    (label ``after_photo``) and written to the audit log as an ``attach`` entry."""
    case = visible_case(session, principal, case_id, CASE_PAGE_LOADS)
    limit = context.web.attachment_max_bytes
    data, name = upload.data, upload.filename
    if len(data) > limit:
        raise _refuse(
            request,
            status.HTTP_413_CONTENT_TOO_LARGE,
            "too_large",
            f"{name}: larger than {limit} bytes",
        )
    if not data:
        raise _refuse(request, status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "empty", f"{name}: empty")
    try:
        content_type, width, height = image_type_and_size(data)
    except ImageError as exc:
        raise _refuse(
            request, status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "not_an_image", f"{name}: {exc}"
        ) from exc
    if width == 0 or height == 0:
        raise _refuse(
            request, status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "not_an_image", f"{name}: no pixels"
        )
    sha256 = _sha256(data)
    if any(item.sha256 == sha256 for item in case.evidence):
        raise _refuse(
            request, status.HTTP_409_CONFLICT, "duplicate", f"{name} is already on case {case_id}"
        )
    now = utcnow()
    try:
        context.workflow.apply(
            session,
            case,
            Command(
                action=Action.ATTACH,
                detail={
                    "sha256": sha256,
                    "label": AFTER_PHOTO,
                    "content_type": content_type,
                    "size": len(data),
                    "filename": name[:200],
                },
            ),
            principal,
            now,
        )
    except NotPermittedError as exc:
        session.rollback()
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except (IllegalTransitionError, MissingInputError) as exc:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    # The file first: a row must never name a file that is not there (a crash leaves at most an
    # unnamed file, which a retry of the same photo reuses). The lock first of all, held to the
    # commit: the retention job does not remove these bytes meanwhile (storage.evidence_guard).
    hold_for_new_bytes(session)
    context.evidence_store.put(data, sha256)
    file_evidence(session, sha256, content_type, len(data), width, height, now)
    link_evidence(session, case.id, sha256, AFTER_PHOTO, now, width, height)
    session.commit()
    url = f"{API_PREFIX}/evidence/{sha256}"
    return EvidencePublic(
        sha256=sha256, label=AFTER_PHOTO, captured_at=now, width=width, height=height, url=url
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- refused before the body is read ----------------------------------------------------------


def attachments_refused_counter(registry: CollectorRegistry) -> Counter:
    name = "civicwatch_attachments_refused"
    description = "After-photo uploads refused, by reason"
    try:
        return Counter(name, description, ["reason"], registry=registry)
    except ValueError:  # a second app on the same registry (tests): count apart
        return Counter(name, description, ["reason"], registry=None)


ATTACHMENT_PATH = re.compile(rf"{API_PREFIX}/cases/[^/]+/attachments")


class UploadSizeGuard:
    """Refuses an after-photo whose declared size is over the limit before its body is read.

    FastAPI reads a multipart form (spooling its file to disk) before the route runs, so the
    route's own check alone would accept gigabytes onto the disk first. A body sent without
    Content-Length is counted as it streams in (receive_photo).
    """

    def __init__(self, app: ASGIApp, limit: int, refused: Counter) -> None:
        self._app = app
        self._limit = limit
        self._refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and ATTACHMENT_PATH.fullmatch(scope["path"])
        ):
            declared = dict(scope["headers"]).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self._limit + MULTIPART_OVERHEAD:
                self._refused.labels(reason="too_large").inc()
                log.warning("after-photo refused (too_large): %s bytes declared", int(declared))
                message = (
                    f"the upload is {int(declared)} bytes; an after-photo may be at most "
                    f"{self._limit} bytes"
                )
                refusal = JSONResponse({"detail": message}, status.HTTP_413_CONTENT_TOO_LARGE)
                await refusal(scope, receive, send)
                return
        await self._app(scope, receive, send)
