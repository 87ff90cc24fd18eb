"""Evidence images: the redacted copy by default, the original for dispatchers who ask."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from sqlalchemy import or_, select

from contracts.images import EXTENSIONS, image_type
from dispatch.config import Role
from dispatch.errors import ApiError
from dispatch.http.deps import (
    API_PREFIX,
    ContextDep,
    PrincipalDep,
    SessionDep,
    Sha256Path,
    not_found,
    visible_cases,
)
from storage.evidence_packs import PackedAt
from storage.evidence_store import EvidenceError
from storage.tables import Case, CaseEvidence, Evidence

log = logging.getLogger(__name__)

router = APIRouter(prefix=API_PREFIX)


@router.get(
    "/evidence/{sha256}",
    response_class=Response,
    responses={
        200: {
            "content": {"image/jpeg": {}, "image/png": {}},
            "description": "the image; a stored file that is neither is a download",
        }
    },
)
def get_evidence(
    sha256: Sha256Path,
    session: SessionDep,
    principal: PrincipalDep,
    context: ContextDep,
    original: Annotated[
        bool,
        Query(description="the unredacted frame; only the command centre (dispatchers) gets it"),
    ] = False,
) -> Response:
    """An evidence image: by default the copy with bystanders' faces blurred, where one exists.

    ``X-Evidence-Copy`` says which was served: ``redacted`` or ``original`` (a frame the edge
    sent no redacted copy of is served as it is).
    """
    mentions = or_(CaseEvidence.sha256 == sha256, CaseEvidence.redacted_sha256 == sha256)
    visible = (
        select(CaseEvidence.redacted_sha256)
        .join(Case)
        .where(mentions)
        .where(visible_cases(principal))
    )
    # One link answers both questions (visible at all; any redacted copy): a redacted one first.
    visible = visible.order_by(CaseEvidence.redacted_sha256.is_(None)).limit(1)
    links = session.execute(visible).all()
    if not links:
        # 404, not 410: the retention job keeps no list of what it removed, and a case the
        # caller may not see must look the same as none (its existence is not leaked).
        raise ApiError(status.HTTP_404_NOT_FOUND, "evidence_not_found", {"sha256": sha256})
    redacted = next((row.redacted_sha256 for row in links if row.redacted_sha256), None)
    wants_original = original and principal.role is Role.DISPATCHER
    served = sha256 if wants_original or redacted is None else redacted
    row = session.get(Evidence, served)
    if row is None:
        raise not_found(f"evidence {served}")
    try:
        # The row says where a packed image is: no second look-up by the store.
        data = context.evidence_store.read(served, PackedAt.of(row.pack, row.pack_offset, row.size))
    except (EvidenceError, FileNotFoundError) as exc:
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, str(exc)) from exc
    copy = "redacted" if served == redacted else "original"
    # The type comes from the bytes, never from the stored (once free-text) content type, and
    # the file name from the hash only: nothing a camera wrote reaches the browser as markup.
    media_type = image_type(data)
    if media_type is None:
        log.warning("evidence %s is not a JPEG or PNG: served as a download", served)
        disposition = f'attachment; filename="{served}.bin"'
    else:
        disposition = f'inline; filename="{served}.{EXTENSIONS[media_type]}"'
    return Response(
        data,
        media_type=media_type or "application/octet-stream",
        headers={
            # Never kept by the browser: the same URL is the original for a dispatcher and the
            # redacted copy for whoever signs in next on that browser.
            "Cache-Control": "no-store",
            "Content-Disposition": disposition,
            "X-Evidence-Copy": copy,
        },
    )
