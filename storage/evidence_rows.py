"""The rows that name stored evidence: one ``Evidence`` row per distinct file (content-addressed,
so the same bytes share it) and one ``CaseEvidence`` link per case and file.

For files that reach a case outside ingest's batched writer: an after-photo, a camera's re-check
frame, a resident's photo. The bytes go into the evidence store first, so no row names a missing
file.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.tables import CaseEvidence, Evidence


def file_evidence(
    session: Session,
    sha256: str,
    content_type: str,
    size: int,
    width: int,
    height: int,
    stored_at: datetime,
) -> None:
    """The file's ``Evidence`` row, added unless it exists already."""
    if session.get(Evidence, sha256) is None:
        session.add(
            Evidence(
                sha256=sha256,
                content_type=content_type,
                size=size,
                width=width,
                height=height,
                stored_at=stored_at,
            )
        )
        session.flush()


def link_evidence(
    session: Session,
    case_id: int,
    sha256: str,
    label: str,
    captured_at: datetime,
    width: int,
    height: int,
    redacted_sha256: str | None = None,
    faces_blurred: int | None = None,
) -> bool:
    """Link the filed evidence to the case unless it is linked already; True when linked now."""
    linked = session.scalar(
        select(CaseEvidence.id).where(
            CaseEvidence.case_id == case_id, CaseEvidence.sha256 == sha256
        )
    )
    if linked is not None:
        return False
    session.add(
        CaseEvidence(
            case_id=case_id,
            sha256=sha256,
            label=label,
            captured_at=captured_at,
            width=width,
            height=height,
            redacted_sha256=redacted_sha256,
            faces_blurred=faces_blurred,
        )
    )
    return True
