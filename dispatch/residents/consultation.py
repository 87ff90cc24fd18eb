"""小事协商: the consultation between the residents' council and property management on a
community-tier case (opened by the intake, or by a resident's request for mediation).

Who takes part: the council members (Role.COUNCIL) of the consultation's site and property
management's people (its supervisors and workers). The dispatcher and the admin may read; a
council member of another site, another department's people and integrations get 404
(``consultation_not_found``: whether it exists is not confirmed).

The steps: a participant comments, proposes a resolution, and votes on a proposal (for, against
or abstain; one vote per person per proposal, which may change until the consultation closes).
A proposal carries when its ``for`` votes reach the consultation's ``quorum`` and exceed its
``against`` votes: the consultation is ``agreed``, its ``outcome`` is the proposal's text and
``closed_at`` is set. Every step is an entry of the case's audit chain: ``consult_comment``,
``consult_propose``, ``consult_vote``, ``consult_agreed`` and (see below) ``consult_escalated``;
each keeps the case's state.

The deadline. While the consultation is open, the case's resolve deadline (``sla_due_at``) is
the consultation's deadline, so the SLA sweep's community-tier transfer to ``escalate_to`` is
the escalation to 大事派单; the workflow then calls :func:`escalate_for_transfer`, which marks
the consultation ``escalated`` (closed_at, a ``consult_escalated`` entry). A dispatcher moving
the case away from property management by hand (transfer, or dispatch of a returned case)
escalates it the same way. Once agreed, property
management carries the outcome out through the normal workflow (accept, resolve): at agreement
the case's ``sla_due_at`` moves to property management's normal route deadline counted from the
agreement (``Reroute``, the router's assignment), and the entry records the move
(deadline_from/deadline_to). An agreed consultation never escalates; should property management
then miss that deadline, the sweep still transfers the case (the tier's rule), but the
consultation stays ``agreed``. Without a router (a server with no residents' intake) the deadline
is left as it was.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from fastapi import status
from sqlalchemy import ColumnElement, and_, false, func, select, true
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from dispatch.config import Department, Role
from dispatch.errors import ApiError
from dispatch.residents.consultation_record import (
    ConsultAction,
    record_step,
)
from dispatch.residents.consultation_record import (
    ConsultationState as ConsultationState,  # re-exported: pages and the API name it here
)
from dispatch.workflow import Actor, Reroute
from storage.tables import (
    Case,
    CaseState,
    Consultation,
    ConsultationPost,
    ConsultationVote,
)

MAX_TEXT = 2000  # characters of a comment or a proposal
AGREED_ACTOR = "system"  # the agreement follows from the votes, nobody's own act
READERS = frozenset({Role.DISPATCHER, Role.ADMIN})


class PostKind(StrEnum):
    COMMENT = "comment"
    PROPOSAL = "proposal"


class Choice(StrEnum):
    FOR = "for"
    AGAINST = "against"
    ABSTAIN = "abstain"


class ConsultationRefused(ApiError):  # noqa: N818 - a refusal the routes answer, not a bug
    """A step refused, with a ``consultation_*`` code (error.<code> in both languages)."""

    def __init__(
        self,
        code: str,
        params: dict[str, object] | None = None,
        status_code: int = status.HTTP_422_UNPROCESSABLE_CONTENT,
    ) -> None:
        super().__init__(status_code, code, params)


# --- who takes part -----------------------------------------------------------------------------


def participates(actor: Actor, consultation: Consultation) -> bool:
    """A council member of its site, or one of property management's people."""
    if actor.role is Role.COUNCIL:
        return actor.site_id is not None and actor.site_id == consultation.site_id
    return (
        actor.role
        in (
            Role.SUPERVISOR,
            Role.WORKER,
        )
        and actor.department is Department.PROPERTY_MANAGEMENT
    )


def visible_consultations(actor: Actor) -> ColumnElement[bool]:
    """The SQL condition on Consultation for the ones ``actor`` may read."""
    if actor.role is Role.COUNCIL:
        return Consultation.site_id == actor.site_id if actor.site_id else false()
    if actor.role in READERS:
        return true()
    if actor.role in (Role.SUPERVISOR, Role.WORKER):
        return true() if actor.department is Department.PROPERTY_MANAGEMENT else false()
    return false()


def visible_consultation(session: Session, actor: Actor, consultation_id: int) -> Consultation:
    """The consultation; 404 when there is none or ``actor`` may not read it."""
    consultation = session.scalars(
        select(Consultation).where(
            and_(Consultation.id == consultation_id, visible_consultations(actor))
        )
    ).one_or_none()
    if consultation is None:
        raise ConsultationRefused(
            "consultation_not_found",
            {"consultation_id": consultation_id},
            status.HTTP_404_NOT_FOUND,
        )
    return consultation


def consultation_of_case(session: Session, actor: Actor, case_id: int) -> Consultation | None:
    """The case's consultation where ``actor`` may read it (the case panel links to it)."""
    return session.scalars(
        select(Consultation).where(Consultation.case_id == case_id, visible_consultations(actor))
    ).one_or_none()


def _writable(session: Session, actor: Actor, consultation_id: int, now: datetime) -> Consultation:
    """The consultation ``actor`` may take a step in now (locked for this transaction)."""
    consultation = visible_consultation(session, actor, consultation_id)
    if not participates(actor, consultation):
        raise ConsultationRefused(
            "consultation_read_only", {"role": actor.role.value}, status.HTTP_403_FORBIDDEN
        )
    # Lock the row so two last votes never both carry (PostgreSQL; SQLite writes one at a time).
    session.execute(
        select(Consultation.id).where(Consultation.id == consultation.id).with_for_update()
    )
    session.refresh(consultation)
    if consultation.state != ConsultationState.OPEN.value:
        raise ConsultationRefused(
            "consultation_closed",
            {"consultation_id": consultation.id, "state": consultation.state},
            status.HTTP_409_CONFLICT,
        )
    if consultation.deadline_at <= now:
        raise ConsultationRefused(
            "consultation_deadline_passed",
            {"consultation_id": consultation.id},
            status.HTTP_409_CONFLICT,
        )
    return consultation


def clean_text(text: str) -> str:
    """A comment's or proposal's text, stripped; refused when empty, too long or unstorable.
    Markup is kept as typed: pages escape it."""
    body = text.strip()
    if not body:
        raise ConsultationRefused("consultation_text_empty")
    if len(body) > MAX_TEXT:
        raise ConsultationRefused("consultation_text_too_long", {"limit": MAX_TEXT})
    if any(unicodedata.category(c) in ("Cc", "Cs") and c not in "\n\r\t" for c in body):
        raise ConsultationRefused("consultation_text_invalid")
    return body


# --- the steps ----------------------------------------------------------------------------------


def comment(
    session: Session, actor: Actor, consultation_id: int, text: str, now: datetime
) -> ConsultationPost:
    return _post(session, actor, consultation_id, text, now, PostKind.COMMENT)


def propose(
    session: Session, actor: Actor, consultation_id: int, text: str, now: datetime
) -> ConsultationPost:
    return _post(session, actor, consultation_id, text, now, PostKind.PROPOSAL)


def _post(
    session: Session,
    actor: Actor,
    consultation_id: int,
    text: str,
    now: datetime,
    kind: PostKind,
) -> ConsultationPost:
    consultation = _writable(session, actor, consultation_id, now)
    body = clean_text(text)
    post = ConsultationPost(
        consultation_id=consultation.id, kind=kind.value, author=actor.name, body=body, at=now
    )
    session.add(post)
    session.flush()
    action = ConsultAction.COMMENT if kind is PostKind.COMMENT else ConsultAction.PROPOSE
    detail = {"consultation_id": consultation.id, "post_id": post.id}
    record_step(
        session, session.get_one(Case, consultation.case_id), action, actor.name, body, now, detail
    )
    return post


@dataclass(frozen=True)
class Tally:
    for_: int = 0
    against: int = 0
    abstain: int = 0

    def carries(self, quorum: int) -> bool:
        return self.for_ >= quorum and self.for_ > self.against


def tallies(session: Session, proposal_ids: Sequence[int]) -> dict[int, Tally]:
    """Each proposal's votes by choice."""
    counts: dict[int, dict[str, int]] = {pid: {} for pid in proposal_ids}
    if proposal_ids:
        rows = session.execute(
            select(ConsultationVote.proposal_id, ConsultationVote.choice, func.count())
            .where(ConsultationVote.proposal_id.in_(proposal_ids))
            .group_by(ConsultationVote.proposal_id, ConsultationVote.choice)
        )
        for pid, choice, count in rows:
            counts[pid][choice] = int(count)
    return {
        pid: Tally(c.get("for", 0), c.get("against", 0), c.get("abstain", 0))
        for pid, c in counts.items()
    }


@dataclass(frozen=True)
class VoteResult:
    tally: Tally
    agreed: bool


def vote(
    session: Session,
    actor: Actor,
    consultation_id: int,
    proposal_id: int,
    choice: str,
    now: datetime,
    reroute: Reroute | None = None,
) -> VoteResult:
    """Cast or change ``actor``'s vote; a proposal reaching the quorum settles the consultation
    (``reroute``: the router's assignment, for property management's deadline)."""
    try:
        chosen = Choice(choice)
    except ValueError:
        raise ConsultationRefused("consultation_bad_choice", {"choice": str(choice)[:16]}) from None
    consultation = _writable(session, actor, consultation_id, now)
    proposal = session.get(ConsultationPost, proposal_id)
    if (
        proposal is None
        or proposal.consultation_id != consultation.id
        or proposal.kind != PostKind.PROPOSAL.value
    ):
        raise ConsultationRefused(
            "consultation_proposal_not_found",
            {"proposal_id": proposal_id},
            status.HTTP_404_NOT_FOUND,
        )
    existing = session.get(ConsultationVote, (proposal.id, actor.name))
    if existing is None and not _insert_vote(session, proposal.id, actor.name, chosen, now):
        # the same person's other first vote committed meanwhile: this one changes it (or is
        # the same vote again), as if it had come second
        existing = session.get(ConsultationVote, (proposal.id, actor.name), populate_existing=True)
    previous = existing.choice if existing is not None else None
    if previous == chosen.value:
        raise ConsultationRefused(
            "consultation_same_vote", {"choice": chosen.value}, status.HTTP_409_CONFLICT
        )
    if existing is not None:
        existing.choice = chosen.value
        existing.at = now
    session.flush()
    case = session.get_one(Case, consultation.case_id)
    detail: dict[str, Any] = {
        "consultation_id": consultation.id,
        "proposal_id": proposal.id,
        "choice": chosen.value,
    }
    if previous is not None:
        detail["from_choice"] = previous
    record_step(session, case, ConsultAction.VOTE, actor.name, "", now, detail)
    tally = tallies(session, [proposal.id])[proposal.id]
    agreed = tally.carries(consultation.quorum)
    if agreed:
        _agree(session, consultation, case, proposal, tally, now, reroute)
    return VoteResult(tally, agreed)


def _insert_vote(
    session: Session, proposal_id: int, voter: str, choice: Choice, now: datetime
) -> bool:
    """Insert a first vote unless the (proposal, voter) row exists, committed by a concurrent
    request of the same person (PostgreSQL waits for it, then skips): never a primary-key
    error. True: inserted."""
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(ConsultationVote)
        .values(proposal_id=proposal_id, voter=voter, choice=choice.value, at=now)
        .on_conflict_do_nothing(index_elements=["proposal_id", "voter"])
    )
    result = session.execute(statement)
    return bool(getattr(result, "rowcount", 0))


def _agree(
    session: Session,
    consultation: Consultation,
    case: Case,
    proposal: ConsultationPost,
    tally: Tally,
    now: datetime,
    reroute: Reroute | None,
) -> None:
    consultation.state = ConsultationState.AGREED.value
    consultation.outcome = proposal.body
    consultation.closed_at = now
    detail: dict[str, Any] = {
        "consultation_id": consultation.id,
        "proposal_id": proposal.id,
        "for": tally.for_,
        "against": tally.against,
        "abstain": tally.abstain,
        "quorum": consultation.quorum,
    }
    with_property = case.department == Department.PROPERTY_MANAGEMENT.value
    if reroute is not None and with_property and case.state in _CARRIED_OUT_STATES:
        due = reroute(case, Department.PROPERTY_MANAGEMENT, now).sla_due_at
        detail.update(
            deadline_from=case.sla_due_at.isoformat() if case.sla_due_at else None,
            deadline_to=due.isoformat(),
        )
        case.sla_due_at = due
    record_step(session, case, ConsultAction.AGREED, AGREED_ACTOR, proposal.body, now, detail)


_CARRIED_OUT_STATES = frozenset({CaseState.DISPATCHED, CaseState.ACCEPTED, CaseState.RETURNED})


# --- what a page or the API shows -------------------------------------------------------------


@dataclass(frozen=True)
class PostView:
    id: int
    kind: str
    author: str
    body: str
    at: datetime
    tally: Tally = field(default_factory=Tally)
    my_vote: str | None = None


@dataclass(frozen=True)
class ConsultationView:
    consultation: Consultation
    case: Case
    posts: list[PostView]
    can_take_part: bool


def view(session: Session, actor: Actor, consultation: Consultation) -> ConsultationView:
    """The thread with each proposal's tally and ``actor``'s own vote."""
    posts = list(
        session.scalars(
            select(ConsultationPost)
            .where(ConsultationPost.consultation_id == consultation.id)
            .order_by(ConsultationPost.at, ConsultationPost.id)
        )
    )
    proposal_ids = [p.id for p in posts if p.kind == PostKind.PROPOSAL.value]
    counted = tallies(session, proposal_ids)
    mine: dict[int, str] = {}
    if proposal_ids:
        votes = session.execute(
            select(ConsultationVote.proposal_id, ConsultationVote.choice).where(
                ConsultationVote.proposal_id.in_(proposal_ids),
                ConsultationVote.voter == actor.name,
            )
        )
        mine = {proposal_id: choice for proposal_id, choice in votes}
    views = [
        PostView(p.id, p.kind, p.author, p.body, p.at, counted.get(p.id, Tally()), mine.get(p.id))
        for p in posts
    ]
    return ConsultationView(
        consultation,
        session.get_one(Case, consultation.case_id),
        views,
        participates(actor, consultation),
    )


def listed(
    session: Session, actor: Actor, recent: int = 20, limit: int = 200
) -> list[tuple[Consultation, Case]]:
    """``actor``'s visible consultations: the open ones by deadline (soonest first), then the
    ``recent`` latest closed ones, newest first."""
    base = (
        select(Consultation, Case)
        .join(Case, Case.id == Consultation.case_id)
        .where(visible_consultations(actor))
    )
    is_open = Consultation.state == ConsultationState.OPEN.value
    open_rows = session.execute(
        base.where(is_open).order_by(Consultation.deadline_at, Consultation.id).limit(limit)
    )
    closed_rows = session.execute(
        base.where(~is_open)
        .order_by(Consultation.closed_at.desc(), Consultation.id.desc())
        .limit(recent)
    )
    return [(c, case) for c, case in open_rows] + [(c, case) for c, case in closed_rows]
