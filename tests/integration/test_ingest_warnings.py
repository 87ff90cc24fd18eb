"""The warning stage on the server (SQLite and PostgreSQL): a warned item waits with no
department, complied closes it as "warned, complied", opened after the grace routes it with the
before and after frames; out-of-order, early, unknown and repeated messages are refused with a
reason and counted, and nothing of them is stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from sqlalchemy import func, select

from contracts.acks import AckOutcome, IngestAck
from contracts.events import Phase, PlateReading, ViolationEvent, WarningNotice
from contracts.exemptions import WARNED_COMPLIED, PermitRule, WarningStageRule
from contracts.rule_signing import generate_key_pair, private_key_from_text
from dispatch.exemptions import ExemptionService
from dispatch.warning_stage import OWNER_DEPARTMENT, OwnerGateway, OwnerWarningPump
from ingest.exemption_check import FLAG_ACTION
from ingest.validation import RefusalReason
from storage.audit import verify_chain
from storage.tables import (
    Case,
    CaseEvidence,
    CaseState,
    CaseTransition,
    Event,
    Notification,
    RegistryVehicle,
    utcnow,
)
from tests.factories import (
    GATEWAY,
    SITE,
    T0,
    EventFactory,
    IngestRig,
    make_ingest,
    migrated_database,
)

GRACE = timedelta(minutes=5)


@pytest.fixture
def ingest(database_url: str, tmp_path: Path) -> Iterator[IngestRig]:
    with migrated_database(database_url) as (_engine, sessions):
        yield make_ingest(sessions, tmp_path / "evidence")


def notice() -> WarningNotice:
    return WarningNotice(rule_id="warn", warned_at=T0, grace_until=T0 + GRACE, announced=True)


def send(ingest: IngestRig, factory: EventFactory, event: ViolationEvent) -> IngestAck:
    ack = ingest.handler.handle(factory.topic, event.to_wire())
    assert ack is not None
    return ack


def case_of(ingest: IngestRig, event: ViolationEvent) -> Case:
    with ingest.session_factory() as session:
        case = session.scalar(select(Case).where(Case.violation_id == event.violation_id))
        assert case is not None
        session.expunge(case)
        return case


def steps(ingest: IngestRig, case_id: int) -> list[CaseTransition]:
    with ingest.session_factory() as session:
        return list(
            session.scalars(
                select(CaseTransition)
                .where(CaseTransition.case_id == case_id)
                .order_by(CaseTransition.seq)
            )
        )


def evidence_count(ingest: IngestRig, case_id: int) -> int:
    with ingest.session_factory() as session:
        count = session.scalar(
            select(func.count()).select_from(CaseEvidence).where(CaseEvidence.case_id == case_id)
        )
        return int(count or 0)


def sample(ingest: IngestRig, name: str, labels: dict[str, str]) -> float:
    return ingest.metrics.registry.get_sample_value(name, labels) or 0.0


def refused(ingest: IngestRig, reason: RefusalReason) -> float:
    return sample(ingest, "civicwatch_ingest_refusals_total", {"reason": reason.value})


def warned_event(factory: EventFactory) -> ViolationEvent:
    return factory.event(Phase.WARNED, frames=2, at=T0, warning=notice())


def test_a_warned_item_waits_without_a_department(ingest: IngestRig) -> None:
    factory = EventFactory()
    warned = warned_event(factory)
    assert send(ingest, factory, warned).outcome is AckOutcome.STORED
    case = case_of(ingest, warned)
    assert case.state == CaseState.WARNED
    assert case.department is None
    assert case.sla_due_at is None
    assert evidence_count(ingest, case.id) == 2  # the dwell-crossed frames: the "before"
    trail = steps(ingest, case.id)
    assert [(s.action, s.to_state) for s in trail] == [("register", "new"), ("warn", "warned")]
    assert trail[1].detail["grace_until"] == (T0 + GRACE).isoformat()
    assert sample(ingest, "civicwatch_ingest_warnings_total", {"outcome": "warned"}) == 1


def test_gone_within_the_grace_closes_as_warned_complied(ingest: IngestRig) -> None:
    factory = EventFactory()
    warned = warned_event(factory)
    send(ingest, factory, warned)
    complied = factory.event(
        Phase.COMPLIED,
        warned.violation_id,
        frames=1,
        at=T0 + timedelta(minutes=2),
        warning=notice(),
    )
    assert send(ingest, factory, complied).outcome is AckOutcome.STORED
    case = case_of(ingest, warned)
    assert case.state == CaseState.CLOSED
    assert case.department is None
    assert case.closed_at == T0 + timedelta(minutes=2)
    assert case.cleared_at == T0 + timedelta(minutes=2)
    last = steps(ingest, case.id)[-1]
    assert (last.action, last.from_state, last.to_state) == ("close", "warned", "closed")
    assert last.detail["close_reason"] == WARNED_COMPLIED
    assert sample(ingest, "civicwatch_ingest_warnings_total", {"outcome": "complied"}) == 1
    # Anything after the complied is refused: the item is over.
    late = factory.event(Phase.OPENED, warned.violation_id, at=T0 + GRACE, warning=notice())
    ack = send(ingest, factory, late)
    assert ack.outcome is AckOutcome.REJECTED
    assert ack.reason is not None
    assert ack.reason.startswith("warning_order")
    assert case_of(ingest, warned).state == CaseState.CLOSED


def test_still_there_after_the_grace_goes_to_the_department_with_both_frames(
    ingest: IngestRig,
) -> None:
    factory = EventFactory()
    warned = warned_event(factory)
    send(ingest, factory, warned)
    early = factory.event(
        Phase.OPENED, warned.violation_id, at=T0 + GRACE - timedelta(seconds=1), warning=notice()
    )
    ack = send(ingest, factory, early)
    assert ack.outcome is AckOutcome.REJECTED
    assert refused(ingest, RefusalReason.WARNING_GRACE) == 1
    assert case_of(ingest, warned).department is None  # never routed before the grace ends
    opened = factory.event(
        Phase.OPENED, warned.violation_id, frames=2, at=T0 + GRACE, warning=notice()
    )
    assert send(ingest, factory, opened).outcome is AckOutcome.STORED
    case = case_of(ingest, warned)
    assert case.state == CaseState.DISPATCHED
    assert case.department is not None
    assert case.sla_due_at is not None
    assert evidence_count(ingest, case.id) == 4  # before and after
    last = steps(ingest, case.id)[-1]
    assert (last.action, last.from_state, last.to_state) == ("dispatch", "warned", "dispatched")
    assert last.detail["warned_at"] == T0.isoformat()
    assert sample(ingest, "civicwatch_ingest_warnings_total", {"outcome": "enforced"}) == 1
    # A complied after the opened is refused.
    complied = factory.event(Phase.COMPLIED, warned.violation_id, frames=1, at=T0 + GRACE * 2)
    ack = send(ingest, factory, complied)
    assert ack.outcome is AckOutcome.REJECTED
    assert refused(ingest, RefusalReason.WARNING_ORDER) == 1
    assert case_of(ingest, warned).state == CaseState.DISPATCHED


def test_unknown_repeated_and_out_of_order_warnings_are_refused(ingest: IngestRig) -> None:
    factory = EventFactory()
    stray = factory.event(Phase.COMPLIED, uuid4(), frames=1)
    ack = send(ingest, factory, stray)
    assert ack.outcome is AckOutcome.REJECTED
    assert refused(ingest, RefusalReason.WARNING_UNKNOWN) == 1
    warned = warned_event(factory)
    send(ingest, factory, warned)
    # The same message again is a duplicate, as always; a second warning is refused.
    assert send(ingest, factory, warned).outcome is AckOutcome.DUPLICATE
    again = factory.event(Phase.WARNED, warned.violation_id, at=T0, warning=notice())
    assert send(ingest, factory, again).outcome is AckOutcome.REJECTED
    # A violation opened without a warning cannot be warned afterwards.
    opened = factory.event(Phase.OPENED)
    send(ingest, factory, opened)
    late = factory.event(Phase.WARNED, opened.violation_id, at=T0, warning=notice())
    assert send(ingest, factory, late).outcome is AckOutcome.REJECTED
    assert refused(ingest, RefusalReason.WARNING_ORDER) == 2
    with ingest.session_factory() as session:
        stored = set(session.scalars(select(Event.message_id)))
    assert {stray.message_id, again.message_id, late.message_id}.isdisjoint(stored)
    with ingest.session_factory() as session:
        assert verify_chain(session).problems == []


def test_warned_and_complied_in_one_batch(ingest: IngestRig) -> None:
    """An outbox backlog after an outage: both messages in one batch, in sequence order."""
    factory = EventFactory()
    warned = warned_event(factory)
    complied = factory.event(
        Phase.COMPLIED,
        warned.violation_id,
        frames=1,
        at=T0 + timedelta(minutes=1),
        warning=notice(),
    )
    acks = ingest.handler.handle_batch(
        [(factory.topic, complied.to_wire()), (factory.topic, warned.to_wire())]
    )
    assert [a.outcome for a in acks if a is not None] == [AckOutcome.STORED] * 2
    assert case_of(ingest, warned).state == CaseState.CLOSED


def test_the_server_counts_repeat_offenders_on_the_site_into_the_document(
    ingest: IngestRig,
) -> None:
    """K = 2 warnings in D days on the site (the count is per site, whichever gateway warned;
    the test registry has one gateway a site): the plate is listed in the gateway's document; a
    plate warned as often but read below the floor is not."""
    private, _ = generate_key_pair()
    service = ExemptionService(
        ingest.session_factory, ingest.registry, private_key_from_text(private)
    )
    stage = WarningStageRule(
        id="warn-site",
        site_id=SITE,
        valid_from=T0 - timedelta(days=10),
        reason="先提醒后执法",
        issued_at=T0 - timedelta(days=10),
        grace_minutes=5,
        channels=["announce"],
        repeat_warnings=2,
        repeat_days=7,
    )
    service.issue_rule(stage, "test")
    factory = EventFactory()
    for index in range(2):
        for plate, confidence in (("沪A12345", 0.95), ("苏E54321", 0.5)):
            event = warned_event(factory).model_copy(
                update={"plate": PlateReading(text=plate, confidence=confidence)}
            )
            assert send(ingest, factory, event).outcome is AckOutcome.STORED, index
    with ingest.session_factory() as session:
        now = utcnow()
        document = service.document(session, GATEWAY, 99, now)
        assert document.repeat_offenders == ["沪A12345"]
        # Outside the D days the warnings no longer count.
        later = service.document(session, GATEWAY, 100, now + timedelta(days=8))
        assert later.repeat_offenders == []


def test_a_registered_owner_is_messaged_through_the_outbox(ingest: IngestRig) -> None:
    """The owner channel: one outbox row for a registered plate read well (no phone stored in
    it), none for a weak reading or an unregistered plate; delivery reads the phone then. The
    SMS gateway itself cannot run here: an httpx MockTransport stands in for it."""
    private, _ = generate_key_pair()
    service = ExemptionService(
        ingest.session_factory, ingest.registry, private_key_from_text(private)
    )
    service.issue_rule(
        WarningStageRule(
            id="warn-owner",
            site_id=SITE,
            valid_from=T0 - timedelta(days=1),
            reason="先提醒后执法",
            issued_at=T0 - timedelta(days=1),
            grace_minutes=5,
            channels=["owner"],
            repeat_warnings=3,
            repeat_days=7,
        ),
        "test",
    )
    now = utcnow()
    with ingest.session_factory.begin() as session:
        session.add(
            RegistryVehicle(
                id="v1",
                site_id=SITE,
                plate="沪A12345",
                category="resident",
                owner_name="张三",
                phone="13800000000",
                created_at=now,
                created_by="test",
                updated_at=now,
                updated_by="test",
            )
        )
    url = "https://sms.invalid/send"
    pump = OwnerWarningPump(ingest.session_factory, url, floor=0.8)
    assert pump.pump_all() == 0  # the first run places the cursor at the chain's head
    factory = EventFactory()
    notice_owner = WarningNotice(
        rule_id="warn-owner", warned_at=T0, grace_until=T0 + GRACE, announced=False
    )
    for plate, confidence in (("沪A12345", 0.95), ("沪A12345", 0.5), ("苏E54321", 0.95)):
        event = factory.event(Phase.WARNED, frames=1, warning=notice_owner).model_copy(
            update={"plate": PlateReading(text=plate, confidence=confidence)}
        )
        assert send(ingest, factory, event).outcome is AckOutcome.STORED
    assert pump.pump_all() == 1
    with ingest.session_factory() as session:
        [row] = session.scalars(select(Notification))
        assert row.department == OWNER_DEPARTMENT
        assert "13800000000" not in json.dumps(row.payload, ensure_ascii=False)
        assert "张三" not in json.dumps(row.payload, ensure_ascii=False)
        payload = row.payload
    sent: list[dict[str, str]] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(gateway)) as http:
        OwnerGateway(ingest.session_factory, url).deliver(http, url, payload)
    [body] = sent
    assert body["phone"] == "13800000000"
    assert body["plate"] == "沪A12345"
    assert body["message_zh"].startswith("沪A12345")
    assert "5 min" in body["message_en"]


def test_a_warning_that_should_have_been_exempt_is_flagged_once(ingest: IngestRig) -> None:
    """The server checks a warned stop against the rules like an opened one: a permit holder
    warned is flagged on the item; its later opened (same stop) is not flagged again."""
    private, _ = generate_key_pair()
    service = ExemptionService(
        ingest.session_factory, ingest.registry, private_key_from_text(private)
    )
    service.issue_rule(
        PermitRule(
            id="permit-1",
            site_id=SITE,
            plate="沪A12345",
            valid_from=T0 - timedelta(hours=1),
            valid_to=T0 + timedelta(hours=1),
            reason="moving day",
            issued_at=T0 - timedelta(hours=1),
        ),
        "test",
    )
    factory = EventFactory()
    reading = {"plate": PlateReading(text="沪A12345", confidence=0.95)}
    warned = warned_event(factory).model_copy(update=reading)
    send(ingest, factory, warned)
    opened = factory.event(
        Phase.OPENED, warned.violation_id, at=T0 + GRACE, warning=notice()
    ).model_copy(update=reading)
    send(ingest, factory, opened)
    with ingest.session_factory() as session:
        flags = list(
            session.scalars(select(CaseTransition).where(CaseTransition.action == FLAG_ACTION))
        )
    assert len(flags) == 1
    assert flags[0].case_id == case_of(ingest, warned).id
