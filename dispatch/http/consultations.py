"""小事协商 over HTTP: the council's and property management's consultations (list, one with
its thread and tallies, comment, propose, vote). The rules live in
dispatch/residents/consultation.py; a consultation the caller may not read is 404."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, Field
from sqlalchemy import select

from dispatch.errors import ApiProblem
from dispatch.http.deps import (
    API_PREFIX,
    ContextDep,
    PrincipalDep,
    RowIdPath,
    SessionDep,
)
from dispatch.residents import consultation as service
from dispatch.workflow import Reroute
from storage.tables import Case, Consultation, ReportPhoto, ResidentReport, utcnow

router = APIRouter(prefix=API_PREFIX, tags=["consultations"])

REFUSALS: dict[int | str, dict[str, object]] = {
    403: {"model": ApiProblem, "description": "a reader (dispatcher, admin) cannot take part"},
    404: {"model": ApiProblem, "description": "no such consultation the caller may read"},
    409: {"model": ApiProblem, "description": "closed, past its deadline, or the same vote"},
    422: {"model": ApiProblem, "description": "empty, too long or unstorable text; bad choice"},
}


class ConsultationSummary(BaseModel):
    id: int
    case_id: int
    site_id: str
    category: str = Field(description="the case's kind")
    state: Literal["open", "agreed", "escalated", "withdrawn"]
    quorum: int
    deadline_at: datetime
    opened_at: datetime
    closed_at: datetime | None
    outcome: str


class Tally(BaseModel):
    for_: int = Field(alias="for", serialization_alias="for")
    against: int
    abstain: int


class Post(BaseModel):
    id: int
    kind: Literal["comment", "proposal"]
    author: str
    body: str
    at: datetime
    tally: Tally | None = Field(default=None, description="proposals only")
    my_vote: Literal["for", "against", "abstain"] | None = None


class CaseFacts(BaseModel):
    """What the consultation is about; never the reporter's phone."""

    id: int
    kind: str
    state: str
    department: str | None
    site_id: str
    building: str | None = None
    unit: str | None = None
    description: str = ""
    photos: list[str] = Field(default_factory=list, description="evidence hashes (the API)")


class ConsultationDetail(ConsultationSummary):
    case: CaseFacts
    posts: list[Post]
    can_take_part: bool = Field(description="the caller may comment, propose and vote")


class TextBody(BaseModel):
    body: str = Field(min_length=1, max_length=service.MAX_TEXT * 2)


class VoteBody(BaseModel):
    choice: Literal["for", "against", "abstain"]


class VoteResult(BaseModel):
    tally: Tally
    agreed: bool
    state: str


def _summary(consultation: Consultation, case: Case) -> ConsultationSummary:
    return ConsultationSummary(
        id=consultation.id,
        case_id=consultation.case_id,
        site_id=consultation.site_id,
        category=case.kind,
        state=consultation.state,
        quorum=consultation.quorum,
        deadline_at=consultation.deadline_at,
        opened_at=consultation.opened_at,
        closed_at=consultation.closed_at,
        outcome=consultation.outcome,
    )


def _tally(tally: service.Tally) -> Tally:
    return Tally.model_validate(
        {"for": tally.for_, "against": tally.against, "abstain": tally.abstain}
    )


def case_facts(session: SessionDep, case: Case) -> CaseFacts:
    """The case's facts from its first resident report (category, place, description) and
    every report's photos; never a phone number."""
    report = session.scalars(
        select(ResidentReport)
        .where(ResidentReport.case_id == case.id)
        .order_by(ResidentReport.created_at, ResidentReport.id)
        .limit(1)
    ).one_or_none()
    photos = list(
        session.scalars(
            select(ReportPhoto.sha256)
            .join(ResidentReport, ResidentReport.id == ReportPhoto.report_id)
            .where(ResidentReport.case_id == case.id)
            .order_by(ReportPhoto.id)
        )
    )
    return CaseFacts(
        id=case.id,
        kind=case.kind,
        state=str(case.state),
        department=case.department,
        site_id=case.site_id,
        building=report.building if report else None,
        unit=report.unit if report else None,
        description=report.description if report else "",
        photos=photos,
    )


def detail(session: SessionDep, view: service.ConsultationView) -> ConsultationDetail:
    summary = _summary(view.consultation, view.case)
    posts = [
        Post(
            id=p.id,
            kind=p.kind,
            author=p.author,
            body=p.body,
            at=p.at,
            tally=_tally(p.tally) if p.kind == service.PostKind.PROPOSAL.value else None,
            my_vote=p.my_vote,
        )
        for p in view.posts
    ]
    return ConsultationDetail(
        **summary.model_dump(),
        case=case_facts(session, view.case),
        posts=posts,
        can_take_part=view.can_take_part,
    )


def reroute_of(context: ContextDep) -> Reroute | None:
    """Property management's route at agreement: the intake's router, where the server has one."""
    return context.intake.router.assignment if context.intake is not None else None


@router.get("/consultations", response_model=list[ConsultationSummary])
def list_consultations(session: SessionDep, principal: PrincipalDep) -> list[ConsultationSummary]:
    """The consultations the caller may read (a council member: their site's), open first."""
    return [_summary(c, case) for c, case in service.listed(session, principal)]


@router.get(
    "/consultations/{consultation_id}",
    response_model=ConsultationDetail,
    responses={404: REFUSALS[404]},
)
def get_consultation(
    consultation_id: RowIdPath, session: SessionDep, principal: PrincipalDep
) -> ConsultationDetail:
    """One consultation: the case's facts, the thread, each proposal's tally and the caller's
    own vote."""
    consultation = service.visible_consultation(session, principal, consultation_id)
    return detail(session, service.view(session, principal, consultation))


@router.post(
    "/consultations/{consultation_id}/comments",
    response_model=Post,
    status_code=status.HTTP_201_CREATED,
    responses=REFUSALS,
)
def post_comment(
    consultation_id: RowIdPath, body: TextBody, session: SessionDep, principal: PrincipalDep
) -> Post:
    post = service.comment(session, principal, consultation_id, body.body, utcnow())
    session.commit()
    return Post(id=post.id, kind="comment", author=post.author, body=post.body, at=post.at)


@router.post(
    "/consultations/{consultation_id}/proposals",
    response_model=Post,
    status_code=status.HTTP_201_CREATED,
    responses=REFUSALS,
)
def post_proposal(
    consultation_id: RowIdPath, body: TextBody, session: SessionDep, principal: PrincipalDep
) -> Post:
    post = service.propose(session, principal, consultation_id, body.body, utcnow())
    session.commit()
    return Post(
        id=post.id,
        kind="proposal",
        author=post.author,
        body=post.body,
        at=post.at,
        tally=_tally(service.Tally()),
    )


@router.post(
    "/consultations/{consultation_id}/proposals/{proposal_id}/votes",
    response_model=VoteResult,
    responses=REFUSALS,
)
def post_vote(
    consultation_id: RowIdPath,
    proposal_id: RowIdPath,
    body: VoteBody,
    session: SessionDep,
    principal: PrincipalDep,
    context: ContextDep,
) -> VoteResult:
    """Cast or change the caller's vote; the proposal carrying settles the consultation."""
    result = service.vote(
        session,
        principal,
        consultation_id,
        proposal_id,
        body.choice,
        utcnow(),
        reroute_of(context),
    )
    session.commit()
    state = service.ConsultationState.AGREED if result.agreed else service.ConsultationState.OPEN
    return VoteResult(tally=_tally(result.tally), agreed=result.agreed, state=state.value)


__all__ = ["router"]
