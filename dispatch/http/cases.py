"""The cases API: list, read, and act on cases (the workflow's actions)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from contracts.events import ViolationKind
from dispatch.config import Department
from dispatch.http.deps import (
    API_PREFIX,
    ContextDep,
    PageLimit,
    PageOffset,
    PrincipalDep,
    RowIdPath,
    SessionDep,
    visible_case,
    visible_cases,
    where_given,
)
from dispatch.schemas import (
    ActionProblem,
    CaseAction,
    CaseDetail,
    CasePublic,
    EvidencePublic,
    ObjectBoxPublic,
    TransitionPublic,
)
from dispatch.workflow import IllegalTransitionError, MissingInputError, NotPermittedError
from storage.tables import Case, CaseState

# Everything CasePublic reads from a case's relationships, loaded up front: one query per
# relationship for a whole page instead of two lazy loads per case (N+1).
CASE_PUBLIC_LOADS = (
    selectinload(Case.evidence),
    selectinload(Case.violations),
    selectinload(Case.related_links),
)
CASE_DETAIL_LOADS = (*CASE_PUBLIC_LOADS, selectinload(Case.transitions))


def evidence_url(sha256: str) -> str:
    return f"{API_PREFIX}/evidence/{sha256}"


def case_public(case: Case) -> CasePublic:
    """A case with links to its evidence; the case's evidence must be loaded."""
    columns = {name: getattr(case, name) for name in CasePublic.model_fields if name != "evidence"}
    evidence = [
        EvidencePublic(
            sha256=item.sha256,
            label=item.label,
            captured_at=item.captured_at,
            width=item.width,
            height=item.height,
            url=evidence_url(item.sha256),
            redacted_sha256=item.redacted_sha256,
            redacted_url=evidence_url(item.redacted_sha256) if item.redacted_sha256 else None,
        )
        for item in case.evidence
    ]
    return CasePublic(**columns, evidence=evidence)


def case_detail(case: Case) -> CaseDetail:
    box = None
    if None not in (case.box_x1, case.box_y1, case.box_x2, case.box_y2):
        box = ObjectBoxPublic(x1=case.box_x1, y1=case.box_y1, x2=case.box_x2, y2=case.box_y2)
    return CaseDetail(
        **case_public(case).model_dump(),
        object_box=box,
        transitions=[TransitionPublic.model_validate(t) for t in case.transitions],
    )


router = APIRouter(prefix=API_PREFIX)


@router.get("/cases", response_model=list[CasePublic])
def list_cases(
    session: SessionDep,
    principal: PrincipalDep,
    department: Department | None = None,
    state: CaseState | None = None,
    kind: ViolationKind | None = None,
    site_id: str | None = None,
    camera_id: str | None = None,
    overdue: bool | None = None,
    limit: PageLimit = 100,
    offset: PageOffset = 0,
) -> list[CasePublic]:
    """Cases by SLA due time (soonest first); a department token only ever sees its own."""
    query = select(Case).where(visible_cases(principal))
    query = where_given(
        query,
        {
            Case.department: department,
            Case.state: state,
            Case.kind: kind,
            Case.site_id: site_id,
            Case.camera_id: camera_id,
            Case.overdue: overdue,
        },
    )
    query = query.order_by(Case.sla_due_at.is_(None), Case.sla_due_at, Case.id)
    query = query.options(*CASE_PUBLIC_LOADS).limit(limit).offset(offset)
    return [case_public(case) for case in session.scalars(query)]


@router.get("/cases/{case_id}", response_model=CaseDetail)
def get_case(case_id: RowIdPath, session: SessionDep, principal: PrincipalDep) -> CaseDetail:
    return case_detail(visible_case(session, principal, case_id, CASE_DETAIL_LOADS))


@router.post(
    "/cases/{case_id}/actions",
    response_model=CaseDetail,
    responses={
        403: {"description": "the caller's role may not take this action"},
        409: {"description": "the action does not apply in the case's state"},
        422: {
            "model": ActionProblem,
            "description": "invalid input, or input this action needs (e.g. a reason) missing",
        },
    },
)
def act_on_case(
    case_id: RowIdPath,
    command: CaseAction,
    session: SessionDep,
    principal: PrincipalDep,
    context: ContextDep,
) -> CaseDetail:
    case = visible_case(session, principal, case_id, CASE_DETAIL_LOADS)
    try:
        context.workflow.apply(session, case, command.command(), principal)
    except NotPermittedError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except IllegalTransitionError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except MissingInputError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    session.commit()
    return case_detail(visible_case(session, principal, case_id, CASE_DETAIL_LOADS))
