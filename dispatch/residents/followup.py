"""回访: what happens after a resident's case is handled, by tracking code.

* ``rate_report``: 满意 / 基本满意 / 不满意 once per report, after the case (the one that lives on,
  for a merged case) is resolved or closed. The rating is an audit entry ``rate`` on that case.
  A first 不满意 on a case reopens it, once, to its department's supervisor (escalation level 1,
  the level the SLA sweep gives a supervisor); any later 不满意 is recorded and flagged for the
  dispatcher, never reopens again.
* ``request_mediation``: a household-tier (私事自治) case the intake guided and closed becomes a
  community-tier case (小事协商): property management, fresh deadlines, a consultation.

Both act as the system actor ``resident`` through the Workflow, in the caller's transaction
(the caller commits; a refusal raises ReportRefused before anything is written).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from fastapi import status
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.kinds import ViolationKind
from dispatch.config import Department, Role, Tier
from dispatch.residents.consultation_record import open_consultation
from dispatch.residents.intake import RESIDENT_ACTOR, IntakeDeps, ReportRefused
from dispatch.residents.privacy import phone_for, reporter_visible
from dispatch.residents.tiers import community_route, route_for_report
from dispatch.routing import Router, route_facts
from dispatch.workflow import Action, Command, Workflow, system_actor
from storage.audit import append_entry
from storage.tables import Case, CaseState, CaseTransition, ResidentReport

# The longest rating comment kept (characters, after trimming).
COMMENT_CHARS = 500
# Merged into merged into ...: a chain longer than this is a loop, not history.
_MAX_MERGE_HOPS = 32
_UNSTORABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# The escalation level a supervisor hears at (dispatch/sla.py ESCALATION_TARGETS).
SUPERVISOR_LEVEL = 1
RATEABLE_STATES = frozenset({CaseState.RESOLVED.value, CaseState.CLOSED.value})


class Rating(StrEnum):
    SATISFIED = "satisfied"  # 满意
    BASIC = "basic"  # 基本满意 (the column holds 16 characters: "basically_satisfied" does not fit)
    UNSATISFIED = "dissatisfied"  # 不满意


@dataclass(frozen=True, slots=True)
class RatingOutcome:
    rating: Rating
    case_id: int  # the case rated: the one that lives on
    reopened: bool  # this rating sent the case back to the supervisor
    flagged: bool  # a 不满意 that could not reopen again: the dispatcher sees it flagged


@dataclass(frozen=True, slots=True)
class ReportView:
    """A resident's report as one role may see it on the case panel: the phone whole for
    dispatchers, masked for a department the resident agreed to be called by, else absent."""

    tracking_code: str
    case_id: int
    channel: str
    created_at: datetime
    building: str | None
    unit: str | None
    description: str
    reporter_shown: bool  # False: "the resident did not agree to be contacted" (departments)
    phone: str | None
    submitted_by: str | None
    rating: str | None
    rating_comment: str


def reports_for(session: Session, case_id: int, role: Role) -> list[ReportView]:
    """The reports on ``case_id`` and on the cases merged into it, oldest first, for ``role``."""
    merged = select(Case.id).where(Case.duplicate_of == case_id)
    rows = session.scalars(
        select(ResidentReport)
        .where((ResidentReport.case_id == case_id) | ResidentReport.case_id.in_(merged))
        .order_by(ResidentReport.created_at, ResidentReport.id)
    )
    return [
        ReportView(
            tracking_code=row.tracking_code,
            case_id=row.case_id,
            channel=row.channel,
            created_at=row.created_at,
            building=row.building,
            unit=row.unit,
            description=row.description,
            reporter_shown=reporter_visible(role, row.contact_consent),
            phone=phone_for(role, row.phone, row.contact_consent),
            submitted_by=row.submitted_by if reporter_visible(role, row.contact_consent) else None,
            rating=row.rating,
            rating_comment=row.rating_comment,
        )
        for row in rows
    ]


def living_case(session: Session, case: Case) -> Case:
    """``case``, or the case it was merged into (and so on): the one that lives on."""
    seen = {case.id}
    for _ in range(_MAX_MERGE_HOPS):
        if case.state != CaseState.MERGED.value or case.duplicate_of is None:
            return case
        target = session.get(Case, case.duplicate_of)
        if target is None or target.id in seen:
            return case
        seen.add(target.id)
        case = target
    return case


def report_case(session: Session, report: ResidentReport) -> Case:
    case = session.get(Case, report.case_id)
    assert case is not None  # a foreign key
    return living_case(session, case)


def may_rate(session: Session, report: ResidentReport) -> bool:
    return report.rating is None and report_case(session, report).state in RATEABLE_STATES


def may_request_mediation(session: Session, report: ResidentReport) -> bool:
    case = report_case(session, report)
    return (
        case.state == CaseState.CLOSED.value
        and case.tier == Tier.HOUSEHOLD.value
        and not _mediated(session, case)
    )


def mediation_requested(session: Session, report: ResidentReport) -> bool:
    return _mediated(session, report_case(session, report))


def clean_comment(text: str) -> str:
    """The comment as stored: NFC, line ends unified, trimmed, bounded; control characters and
    direction overrides refused (ReportRefused)."""
    cleaned = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n").strip()
    if _UNSTORABLE.search(cleaned):
        raise ReportRefused("report_comment_invalid")
    if len(cleaned) > COMMENT_CHARS:
        raise ReportRefused("report_comment_too_long", {"limit": COMMENT_CHARS})
    return cleaned


def rate_report(
    session: Session,
    report: ResidentReport,
    rating: str,
    comment: str,
    *,
    workflow: Workflow,
    now: datetime,
    router: Router | None = None,
) -> RatingOutcome:
    """Store the report's one rating and act on it. Raises ReportRefused (nothing written)."""
    try:
        value = Rating(rating)
    except ValueError:
        raise ReportRefused("report_bad_rating") from None
    text = clean_comment(comment)
    if report.rating is not None:
        raise ReportRefused("report_already_rated", {}, status.HTTP_409_CONFLICT)
    case = report_case(session, report)
    if case.state not in RATEABLE_STATES:
        raise ReportRefused("report_not_finished", {}, status.HTTP_409_CONFLICT)
    report.rating = value.value
    report.rating_comment = text
    report.rated_at = now
    unsatisfied = value is Rating.UNSATISFIED
    # A household matter (私事自治) has no department to reopen to: its way on is mediation.
    household = case.tier == Tier.HOUSEHOLD.value or case.department is None
    reopen = unsatisfied and not household and not _reopened_for_rating(session, case)
    flagged = unsatisfied and not reopen
    detail: dict[str, Any] = {"tracking_code": report.tracking_code, "rating": value.value}
    if flagged and not household:
        detail["unsatisfied_again"] = True
    elif flagged:
        detail["unsatisfied_household"] = True
    _append(session, case, "rate", text, now, detail)
    if reopen:
        _reopen_to_supervisor(session, case, report.tracking_code, text, workflow, now, router)
    session.flush()
    return RatingOutcome(value, case.id, reopen, flagged)


def _reopen_to_supervisor(
    session: Session,
    case: Case,
    code: str,
    comment: str,
    workflow: Workflow,
    now: datetime,
    router: Router | None,
) -> None:
    reason = f"不满意 / unsatisfied rating ({code})" + (f": {comment}" if comment else "")
    detail: dict[str, Any] = {
        "unsatisfied_rating": True,
        "tracking_code": code,
        "level": SUPERVISOR_LEVEL,
        "to": "supervisor",
    }
    if router is not None and case.department:
        # The department's clock starts again: the old deadlines passed while it was resolved.
        assignment = router.assignment(case, Department(case.department), now)
        detail.update(
            deadline_from=_iso(case.sla_due_at),
            deadline_to=assignment.sla_due_at.isoformat(),
            ack_deadline_from=_iso(case.ack_due_at),
            ack_deadline_to=assignment.ack_due_at.isoformat(),
        )
        case.ack_due_at = assignment.ack_due_at
        case.sla_due_at = assignment.sla_due_at
    workflow.apply(
        session,
        case,
        Command(Action.REOPEN, reason=reason, detail=detail),
        system_actor(RESIDENT_ACTOR),
        now,
    )
    # Back to the same department, its supervisor's: the level the notification carries
    # (case.escalation_level) and the console's escalation marks show.
    case.escalation_level = SUPERVISOR_LEVEL
    case.escalated_at = now
    case.overdue = False


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _reopened_for_rating(session: Session, case: Case) -> bool:
    return any(
        (entry.detail or {}).get("unsatisfied_rating") is True
        for entry in _entries(session, case, Action.REOPEN.value)
    )


def _mediated(session: Session, case: Case) -> bool:
    return bool(_entries(session, case, Action.MEDIATE.value))


def _entries(session: Session, case: Case, action: str) -> list[CaseTransition]:
    return list(
        session.scalars(
            select(CaseTransition).where(
                CaseTransition.case_id == case.id, CaseTransition.action == action
            )
        )
    )


def request_mediation(
    session: Session,
    report: ResidentReport,
    *,
    workflow: Workflow,
    deps: IntakeDeps,
    now: datetime,
) -> Case:
    """申请调解: the household case becomes a community one with property management and a
    consultation. Once per case; only on a closed household-tier case. Raises ReportRefused."""
    case = report_case(session, report)
    if case.tier != Tier.HOUSEHOLD.value or case.state != CaseState.CLOSED.value:
        raise ReportRefused("report_mediation_not_offered", {}, status.HTTP_409_CONFLICT)
    if _mediated(session, case):
        raise ReportRefused("report_mediation_requested", {}, status.HTTP_409_CONFLICT)
    kind = report.category
    local = now.astimezone(deps.router.site_zone(case.site_id))
    base, why = route_for_report(
        deps.routing.rules, ViolationKind(kind), case.site_id, local, Tier.HOUSEHOLD
    )
    route = community_route(base)
    ack_due_at, sla_due_at = deps.router.deadlines(route, now)
    # As the intake places a community case: the consultation's deadline is the resolve one.
    deadline = now + timedelta(hours=deps.settings.consultation_hours)
    sla_due_at = deadline
    ack_due_at = min(ack_due_at, sla_due_at)
    detail: dict[str, Any] = {
        **why,
        **route_facts(route),
        "tracking_code": report.tracking_code,
        "from_tier": case.tier,
        "department": route.department.value,
        "ack_due_at": ack_due_at.isoformat(),
        "sla_due_at": sla_due_at.isoformat(),
    }
    case.department = route.department.value
    case.tier = Tier.COMMUNITY.value
    case.priority = route.priority.value
    case.ack_due_at = ack_due_at
    case.sla_due_at = sla_due_at
    case.escalate_to = route.escalate_to.value if route.escalate_to else None
    case.closed_at = case.resolved_at = case.acknowledged_at = None
    case.escalation_level = 0
    case.overdue = False
    consultation = open_consultation(
        session, case, deps.settings.consultation_quorum, deadline, now
    )
    detail["consultation_id"] = consultation.id
    workflow.apply(
        session,
        case,
        Command(Action.MEDIATE, reason="申请调解 / mediation requested", detail=detail),
        system_actor(RESIDENT_ACTOR),
        now,
    )
    session.flush()
    return case


def _append(
    session: Session, case: Case, action: str, reason: str, now: datetime, detail: dict[str, Any]
) -> None:
    """An audit entry that changes no state (the rating: no Workflow action of its own)."""
    append_entry(
        session,
        CaseTransition(
            case_id=case.id,
            action=action,
            from_state=case.state,
            to_state=case.state,
            actor=RESIDENT_ACTOR,
            reason=reason,
            at=now,
            detail=detail,
        ),
    )
    case.updated_at = now


__all__ = [
    "COMMENT_CHARS",
    "Rating",
    "RatingOutcome",
    "ReportView",
    "clean_comment",
    "living_case",
    "may_rate",
    "may_request_mediation",
    "mediation_requested",
    "rate_report",
    "reports_for",
    "request_mediation",
]
