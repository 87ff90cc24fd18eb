"""Issue 12's known gaps, closed, on SQLite and PostgreSQL over the real app: a public reply on a
case no resident reported is refused (the API, not only the page); a dispatcher moving a
community-tier case away from property management by hand escalates its open consultation as the
SLA sweep does; two simultaneous first votes of one person answer a clean refusal or an update,
never a primary-key error; and the rates read exactly the rating values the follow-up stores."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from dispatch.config import Role
from dispatch.reports import rates
from dispatch.residents import consultation as service
from dispatch.residents.followup import Rating
from dispatch.web.i18n import translator
from dispatch.workflow import Actor
from storage.tables import Case, CaseTransition, Consultation, ConsultationVote, ResidentReport
from storage.tables import utcnow as now_utc
from tests.factories import SITE, EventFactory, make_ingest
from tests.integration import test_consultation

Rig = test_consultation.Rig
rig = test_consultation.rig  # the consultation tests' app: council, property management, desk


def _transitions(rig: Rig) -> int:
    with rig.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(CaseTransition)) or 0)


def _act(rig: Rig, case_id: int, who: str, body: dict[str, Any]) -> Any:
    return rig.client.post(f"/api/v1/cases/{case_id}/actions", json=body, headers=rig.as_(who))


# --- 1. a reply needs a resident to read it --------------------------------------------------


def test_a_reply_on_a_case_no_resident_reported_is_refused_by_the_api(
    rig: Rig, tmp_path: Path
) -> None:
    make_ingest(rig.sessions, tmp_path / "camera-evidence").service.store(EventFactory().event())
    with rig.sessions() as session:
        camera_case = session.scalars(select(Case.id).where(Case.source != "resident")).one()
        assert (
            session.scalar(select(ResidentReport.id).where(ResidentReport.case_id == camera_case))
            is None
        )
    before = _transitions(rig)
    refused = _act(rig, camera_case, "desk", {"action": "reply", "reason": "已处理"})
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert (body["code"], body["params"]["case_id"]) == ("reply_without_report", camera_case)
    assert _transitions(rig) == before  # nothing half stored
    for language in ("en", "zh-CN"):
        message = translator(language)("error.reply_without_report", case_id=camera_case)
        assert message != "error.reply_without_report"
        assert f"#{camera_case}" in message
    # a resident's case still takes one
    reported = rig.report()
    replied = _act(rig, reported, "pm-worker", {"action": "reply", "reason": "物业明早清运"})
    assert replied.status_code == 200, replied.text


# --- 2. a transfer by hand escalates the open consultation -------------------------------------


def test_a_dispatchers_transfer_away_from_property_management_escalates_the_consultation(
    rig: Rig,
) -> None:
    case_id = rig.report("sofa on the lawn")
    cid = rig.consultation_of(case_id)
    assert rig.post("council-1", f"/{cid}/comments", {"body": "no agreement"}).status_code == 201
    moved = _act(
        rig,
        case_id,
        "desk",
        {"action": "transfer", "department": "law_enforcement", "reason": "大件垃圾，城管处理"},
    )
    assert moved.status_code == 200, moved.text
    with rig.sessions() as session:
        consultation = session.get_one(Consultation, cid)
        assert consultation.state == "escalated"
        assert consultation.closed_at is not None
        entry = session.scalars(
            select(CaseTransition).where(
                CaseTransition.case_id == case_id, CaseTransition.action == "consult_escalated"
            )
        ).one()
        assert entry.detail["department"] == "law_enforcement"
        assert "大件垃圾，城管处理" in entry.reason
    assert rig.actions(case_id)[-2:] == ["transfer", "consult_escalated"]
    late = rig.post("council-1", f"/{cid}/comments", {"body": "too late"})
    assert (late.status_code, late.json()["code"]) == (409, "consultation_closed")
    test_consultation._chain_intact(rig)


def test_a_returned_case_dispatched_elsewhere_escalates_and_an_agreed_one_stays(rig: Rig) -> None:
    returned = rig.report("bikes in the stairwell")
    returned_cid = rig.consultation_of(returned)
    back = _act(rig, returned, "pm-worker", {"action": "return", "reason": "消防通道，不归物业"})
    assert back.status_code == 200, back.text
    dispatched = _act(rig, returned, "desk", {"action": "dispatch", "department": "fire_rescue"})
    assert dispatched.status_code == 200, dispatched.text
    agreed = rig.report("another pile", building="2号楼")
    agreed_cid = rig.consultation_of(agreed)
    pid = rig.post("council-1", f"/{agreed_cid}/proposals", {"body": "clear it"}).json()["id"]
    for who in ("council-1", "council-2", "pm-worker"):
        rig.post(who, f"/{agreed_cid}/proposals/{pid}/votes", {"choice": "for"})
    moved = _act(
        rig,
        agreed,
        "desk",
        {"action": "transfer", "department": "law_enforcement", "reason": "物业未执行"},
    )
    assert moved.status_code == 200, moved.text
    with rig.sessions() as session:
        assert session.get_one(Consultation, returned_cid).state == "escalated"
        assert session.get_one(Consultation, agreed_cid).state == "agreed"
    assert "consult_escalated" not in rig.actions(agreed)
    test_consultation._chain_intact(rig)


# --- 3. two simultaneous first votes of one person ----------------------------------------------


def _proposal(rig: Rig) -> tuple[int, int]:
    case_id = rig.report("a pile by the gate")
    cid = rig.consultation_of(case_id)
    proposal = rig.post("council-1", f"/{cid}/proposals", {"body": "clear it tomorrow"})
    assert proposal.status_code == 201, proposal.text
    return cid, int(proposal.json()["id"])


@pytest.mark.parametrize("second_choice", ["for", "against"])
def test_two_simultaneous_first_votes_of_one_person_never_collide(
    rig: Rig, second_choice: str
) -> None:
    """The first vote's transaction is open when the second arrives on another connection; the
    second waits for it, then answers ``consultation_same_vote`` (409) or changes the vote:
    never the primary key's IntegrityError (a 500)."""
    cid, pid = _proposal(rig)
    voter = Actor("council-2", Role.COUNCIL, None, SITE)
    outcome: dict[str, Any] = {}

    def second() -> None:
        with rig.sessions() as session:
            try:
                result = service.vote(session, voter, cid, pid, second_choice, now_utc())
                session.commit()
                outcome["tally"] = result.tally
            except Exception as exc:  # what the route would have answered
                outcome["error"] = exc

    with rig.sessions() as first:
        service.vote(first, voter, cid, pid, "for", now_utc())
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)  # the second request reaches its insert (or its lock) and waits
        assert thread.is_alive()
        first.commit()
    thread.join(timeout=30)
    assert not thread.is_alive()
    if second_choice == "for":
        error = outcome.get("error")
        assert isinstance(error, service.ConsultationRefused), outcome
        assert (error.status_code, error.code) == (409, "consultation_same_vote")
    else:
        assert "error" not in outcome, outcome
        tally = outcome["tally"]
        assert (tally.for_, tally.against) == (0, 1)
    with rig.sessions() as session:
        votes = session.scalars(select(ConsultationVote)).all()
        assert [(v.voter, v.choice) for v in votes] == [("council-2", second_choice)]
    test_consultation._chain_intact(rig)


# --- 4. the rating values ----------------------------------------------------------------------


def test_rates_read_exactly_the_rating_values_the_follow_up_stores() -> None:
    stored = {rating.value for rating in Rating}
    assert set(rates.RATINGS) == stored
    assert {Rating.SATISFIED.value, Rating.BASIC.value} == rates.SATISFIED_RATINGS
    column = ResidentReport.__table__.c.rating
    assert all(len(value) <= column.type.length for value in stored)  # type: ignore[attr-defined]
    doc = ResidentReport.rating.property.doc or ""
    assert all(value in doc for value in stored)
    assert "basically_satisfied" not in doc
