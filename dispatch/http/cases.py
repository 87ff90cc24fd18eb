"""The cases API: list (filtered, searched, paged by cursor), read, list a case's frames, act on
one case or on many (bulk). Lists go through dispatch.case_query, the console's query engine."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    func,
    literal,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session, joinedload, selectinload

from dispatch.case_query import CaseQuery, find_case_rows
from dispatch.errors import ApiError, ApiProblem, workflow_refusal
from dispatch.http.deps import (
    API_PREFIX,
    ContextDep,
    Principal,
    PrincipalDep,
    RowIdPath,
    SessionDep,
    visible_case,
)
from dispatch.schemas import (
    BulkAction,
    BulkResult,
    CaseAction,
    CaseDetail,
    CasePublic,
    CaseSummary,
    EvidencePublic,
    ObjectBoxPublic,
    TransitionPublic,
)
from dispatch.workflow import Workflow, WorkflowError
from storage.evidence_retention import evidence_removed_at
from storage.tables import Case, CaseEvidence, CaseLink, CaseViolation

# The list's columns, read as plain rows (no ORM objects: a page of whole cases with their
# relationships cost ~4x the CPU; bench.request_cpu), and each case's frame count beside them.
_DERIVED = {"violation_ids", "related_case_ids", "evidence_count", "evidence_url"}
SUMMARY_COLUMNS: tuple[Any, ...] = (
    *(getattr(Case, name) for name in CaseSummary.model_fields if name not in _DERIVED),
    select(func.count())
    .where(CaseEvidence.case_id == Case.id)
    .correlate(Case)
    .scalar_subquery()
    .label("evidence_count"),
)
# On PostgreSQL each case's violations and related cases come in the same rows, as arrays
# (in the order the two look-ups by id gave them; NULL when there are none): one statement a
# page instead of three, ~2 ms less CPU per list request at 100,000 cases (bench.request_cpu).
SUMMARY_COLUMNS_PG: tuple[Any, ...] = (
    *SUMMARY_COLUMNS,
    select(func.array_agg(aggregate_order_by(CaseViolation.violation_id, CaseViolation.linked_at)))
    .where(CaseViolation.case_id == Case.id)
    .correlate(Case)
    .scalar_subquery()
    .label("violation_ids"),
    select(func.array_agg(aggregate_order_by(CaseLink.related_case_id, CaseLink.related_case_id)))
    .where(CaseLink.case_id == Case.id)
    .correlate(Case)
    .scalar_subquery()
    .label("related_case_ids"),
)

# Everything CasePublic reads from a case's relationships, loaded up front (no lazy load per
# case): its violations and related cases (a row or a few each) joined into the case's own
# query, its frames and its audit trail one query each (joined, they would multiply each
# other's rows). Two round trips fewer than a query per relationship: case detail 4.9-6.5 ->
# 3.5-3.6 ms of CPU at 100,000 cases (bench.request_cpu).
CASE_SUMMARY_LOADS = (joinedload(Case.violations), joinedload(Case.related_links))
CASE_PUBLIC_LOADS = (selectinload(Case.evidence), *CASE_SUMMARY_LOADS)
CASE_DETAIL_LOADS = (*CASE_PUBLIC_LOADS, selectinload(Case.transitions))

PAGED_HEADERS: dict[str, dict[str, Any]] = {
    "X-Total-Count": {"description": "how many match in all", "schema": {"type": "integer"}},
    "Link": {
        "description": 'RFC 8288: rel="first", and rel="next" while pages remain',
        "schema": {"type": "string"},
    },
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ApiProblem, "description": "an unknown parameter or a bad cursor"},
    422: {"model": ApiProblem, "description": "invalid input (code invalid_request)"},
}


def evidence_url(sha256: str) -> str:
    return f"{API_PREFIX}/evidence/{sha256}"


def evidence_public(item: CaseEvidence) -> EvidencePublic:
    return EvidencePublic(
        sha256=item.sha256,
        label=item.label,
        captured_at=item.captured_at,
        width=item.width,
        height=item.height,
        url=evidence_url(item.sha256),
        redacted_sha256=item.redacted_sha256,
        redacted_url=evidence_url(item.redacted_sha256) if item.redacted_sha256 else None,
    )


def case_summary(case: Case, evidence_count: int) -> CaseSummary:
    """A case as a list shows it; its violations and related links must be loaded."""
    names = set(CaseSummary.model_fields) - {"evidence_count", "evidence_url"}
    return CaseSummary(
        **{name: getattr(case, name) for name in names},
        evidence_count=evidence_count,
        evidence_url=f"{API_PREFIX}/cases/{case.id}/evidence",
    )


def case_public(case: Case) -> CasePublic:
    """A case with links to all its evidence; the case's evidence must be loaded."""
    summary = case_summary(case, len(case.evidence))
    return CasePublic(
        **summary.model_dump(), evidence=[evidence_public(item) for item in case.evidence]
    )


def case_detail(case: Case) -> CaseDetail:
    box = None
    if None not in (case.box_x1, case.box_y1, case.box_x2, case.box_y2):
        box = ObjectBoxPublic(x1=case.box_x1, y1=case.box_y1, x2=case.box_x2, y2=case.box_y2)
    return CaseDetail(
        **case_public(case).model_dump(),
        object_box=box,
        transitions=[TransitionPublic.model_validate(t) for t in case.transitions],
        evidence_removed_at=evidence_removed_at(case),
    )


def page_links(request: Request, next_cursor: str | None) -> str:
    """The RFC 8288 Link header: the first page, and the next while there is one (relative
    URLs: right behind any proxy)."""
    first = request.url.remove_query_params(["cursor", "offset"])
    links = [f'<{_relative(str(first.path), first.query)}>; rel="first"']
    if next_cursor is not None:
        after = first.include_query_params(cursor=next_cursor)
        links.append(f'<{_relative(after.path, after.query)}>; rel="next"')
    return ", ".join(links)


def _relative(path: str, query: str) -> str:
    return f"{path}?{query}" if query else path


def paged(response: Response, request: Request, total: int, next_cursor: str | None) -> None:
    response.headers["X-Total-Count"] = str(total)
    response.headers["Link"] = page_links(request, next_cursor)


router = APIRouter(prefix=API_PREFIX)


@router.get(
    "/cases",
    response_model=list[CaseSummary],
    responses={200: {"headers": PAGED_HEADERS}, **ERRORS},
)
def list_cases(
    request: Request,
    response: Response,
    query: Annotated[CaseQuery, Query()],
    session: SessionDep,
    principal: PrincipalDep,
    context: ContextDep,
) -> list[dict[str, Any]]:
    """Cases by resolve deadline (soonest first) unless ``sort`` says otherwise; a department's
    roles only ever see their own. Repeat a filter for any of its values (``state=new&state=
    dispatched``); an unknown parameter is a 400. ``X-Total-Count`` says how many match, the
    ``Link`` header gives the next page's cursor. Frames are listed at each ``evidence_url``."""
    evidence_url = f"{API_PREFIX}/cases/{{}}/evidence"
    if session.get_bind().dialect.name == "postgresql":
        page = find_case_rows(
            session, principal, query, context.registry, SUMMARY_COLUMNS_PG, context.case_counts
        )
        paged(response, request, page.total, page.next_cursor)
        # Plain dicts: the response model validates them once and writes the JSON
        # (pydantic-core). A row is a tuple: zipped with the statement's keys once.
        keys = page.keys
        rows = []
        for row in page.rows:
            values = dict(zip(keys, row, strict=True))
            values["violation_ids"] = values["violation_ids"] or []
            values["related_case_ids"] = values["related_case_ids"] or []
            values["evidence_url"] = evidence_url.format(values["id"])
            rows.append(values)
        return rows
    page = find_case_rows(
        session, principal, query, context.registry, SUMMARY_COLUMNS, context.case_counts
    )
    ids = [row.id for row in page.rows]
    violations = _grouped(
        session,
        select(CaseViolation.case_id, CaseViolation.violation_id)
        .where(CaseViolation.case_id.in_(_among(ids)))
        .order_by(CaseViolation.case_id, CaseViolation.linked_at),
        ids,
    )
    related = _grouped(
        session,
        select(CaseLink.case_id, CaseLink.related_case_id)
        .where(CaseLink.case_id.in_(_among(ids)))
        .order_by(CaseLink.case_id, CaseLink.related_case_id),
        ids,
    )
    paged(response, request, page.total, page.next_cursor)
    # Plain dicts: the response model validates them once and writes the JSON (pydantic-core).
    return [
        {
            **row._asdict(),
            "violation_ids": violations.get(row.id, []),
            "related_case_ids": related.get(row.id, []),
            "evidence_url": f"{API_PREFIX}/cases/{row.id}/evidence",
        }
        for row in page.rows
    ]


def _among(ids: list[int]) -> Any:
    """``IN (ids)`` with the ids written into the SQL as numbers (only ints: nothing to
    escape); PostgreSQL reads the same values as arrays in the page's own rows instead."""
    return bindparam(
        "page_ids", [int(value) for value in ids], expanding=True, literal_execute=True
    )


def _grouped(session: Session, statement: Select[int, Any], ids: list[int]) -> dict[int, list[Any]]:
    """(case id, value) rows as each case's values in order; no query for an empty page."""
    grouped: dict[int, list[Any]] = {}
    if ids:
        for case_id, value in session.execute(statement):
            grouped.setdefault(case_id, []).append(value)
    return grouped


# {case_id:int}: only digits route here, so /cases/bulk and /cases/export.csv are no case.
@router.get("/cases/{case_id:int}", response_model=CaseDetail)
def get_case(case_id: RowIdPath, session: SessionDep, principal: PrincipalDep) -> CaseDetail:
    return case_detail(visible_case(session, principal, case_id, CASE_DETAIL_LOADS))


@router.get(
    "/cases/{case_id:int}/evidence",
    response_model=list[EvidencePublic],
    responses={200: {"headers": PAGED_HEADERS}, **ERRORS},
)
def list_case_evidence(
    case_id: RowIdPath,
    request: Request,
    response: Response,
    session: SessionDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> list[EvidencePublic]:
    """A case's frames in the order they were captured, ``limit`` at a time (``Link``: next)."""
    visible_case(session, principal, case_id)
    mine = CaseEvidence.case_id == case_id
    total = session.scalar(select(func.count()).select_from(CaseEvidence).where(mine)) or 0
    statement = select(CaseEvidence).where(mine)
    if cursor is not None:
        statement = statement.where(_frames_after(cursor))
    statement = statement.order_by(CaseEvidence.captured_at, CaseEvidence.id).limit(limit + 1)
    frames = list(session.scalars(statement))
    more = len(frames) > limit
    frames = frames[:limit]
    next_cursor = _frame_cursor(frames[-1]) if more else None
    paged(response, request, total, next_cursor)
    return [evidence_public(item) for item in frames]


def _frame_cursor(last: CaseEvidence) -> str:
    body = json.dumps([last.captured_at.isoformat(), last.id]).encode()
    return base64.urlsafe_b64encode(body).decode().rstrip("=")


def _frames_after(cursor: str) -> ColumnElement[bool]:
    try:
        stamp, frame_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        captured = datetime.fromisoformat(stamp)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ApiError(400, "invalid_cursor") from exc
    if captured.tzinfo is None or not isinstance(frame_id, int) or isinstance(frame_id, bool):
        raise ApiError(400, "invalid_cursor")
    column = CaseEvidence.captured_at
    return tuple_(column, CaseEvidence.id) > tuple_(literal(captured, type_=column.type), frame_id)


ACTION_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"model": ApiProblem, "description": "the caller's role may not take this action"},
    409: {"model": ApiProblem, "description": "the action does not apply in the case's state"},
    422: {
        "model": ApiProblem,
        "description": "invalid input, or input this action needs (e.g. a reason) missing",
    },
}


def act(
    session: Session, workflow: Workflow, principal: Principal, case_id: int, command: CaseAction
) -> None:
    """The one call path of an action on a case, single or bulk: load what the caller may see
    (404 otherwise), apply, commit. WorkflowError propagates (the error handlers answer it)."""
    case = visible_case(session, principal, case_id, CASE_DETAIL_LOADS)
    workflow.apply(session, case, command.command(), principal)
    session.commit()


@router.post("/cases/{case_id:int}/actions", response_model=CaseDetail, responses=ACTION_RESPONSES)
def act_on_case(
    case_id: RowIdPath,
    command: CaseAction,
    session: SessionDep,
    principal: PrincipalDep,
    context: ContextDep,
) -> CaseDetail:
    act(session, context.workflow, principal, case_id, command)
    return case_detail(visible_case(session, principal, case_id, CASE_DETAIL_LOADS))


@router.post(
    "/cases/bulk",
    response_model=list[BulkResult],
    responses={422: {"model": ApiProblem, "description": "invalid input"}},
)
def act_on_cases(
    command: BulkAction, session: SessionDep, principal: PrincipalDep, context: ContextDep
) -> list[BulkResult]:
    """One action on up to 200 cases, each in its own transaction: one refusal stops no other.
    A case the caller may not see is reported ``case_not_found``, never acted on."""
    single = CaseAction.model_validate(command.model_dump(exclude={"case_ids"}))
    results: list[BulkResult] = []
    for case_id in dict.fromkeys(command.case_ids):  # once each, in the order asked
        try:
            act(session, context.workflow, principal, case_id, single)
        except (ApiError, WorkflowError) as exc:
            session.rollback()
            refusal = workflow_refusal(exc) if isinstance(exc, WorkflowError) else exc
            results.append(
                BulkResult(
                    case_id=case_id,
                    ok=False,
                    code=refusal.code,
                    detail=refusal.detail,
                    params=refusal.params,
                )
            )
        else:
            results.append(BulkResult(case_id=case_id, ok=True))
        finally:
            session.expunge_all()  # each case is read afresh: nothing stale between them
    return results


__all__ = ["router", "status"]
