"""A warned item whose gateway never reports back (SQLite and PostgreSQL): once its grace and the
configured margin have passed, the sweep leader's ``warning-timeouts`` job hands it to the
dispatchers' queue (state new, no department) with a bilingual timeline entry on the audit chain,
counts it in /metrics, and does it once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from civicwatch.config import CivicwatchConfig, ServerSettings
from civicwatch.server import Server, build_server
from contracts.events import Phase, ViolationEvent, WarningNotice
from dispatch.exemption_settings import ExemptionSettings
from dispatch.web.i18n import translator
from dispatch.web.timeline import TimelineText
from ingest.config import IngestSettings
from ingest.validation import Refusal
from storage.audit import verify_chain
from storage.tables import Case, CaseState, CaseTransition, utcnow
from tests.factories import EventFactory, make_registry, start_from_migrated_template

GRACE = timedelta(minutes=5)
MARGIN_MINUTES = 3.0
METRIC = "civicwatch_warning_timeouts_total"


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    config = CivicwatchConfig(
        sites=make_registry().sites,
        server=ServerSettings(
            database_url=database_url,
            ingest=IngestSettings(client_id="warning-timeout-test", evidence_dir=tmp_path / "ev"),
            exemptions=ExemptionSettings(warning_silence_margin_minutes=MARGIN_MINUTES),
        ),
    )
    start_from_migrated_template(database_url)
    built = build_server(config)  # built, not started: the job is run by hand
    try:
        yield built
    finally:
        built.stop()


def warn(server: Server, warned_at_ago: timedelta) -> int:
    """Store a warned item as ingest does; its id."""
    warned_at = utcnow() - warned_at_ago
    notice = WarningNotice(
        rule_id="warn", warned_at=warned_at, grace_until=warned_at + GRACE, announced=True
    )
    event = EventFactory().event(Phase.WARNED, frames=1, at=warned_at, warning=notice)
    server.service.store(event)
    with server.session_factory() as session:
        case_id = session.scalar(select(Case.id).where(Case.violation_id == event.violation_id))
    assert case_id is not None
    return case_id


def run_job(server: Server) -> None:
    job = server.scheduler.get_job("warning-timeouts")
    assert job is not None
    job.func()  # the scheduler's guarded job: only the sweep leader acts


def state_of(server: Server, case_id: int) -> tuple[str, str | None]:
    with server.session_factory() as session:
        case = session.get(Case, case_id)
        assert case is not None
        return case.state, case.department


def timeouts(server: Server) -> float:
    return server.metrics.registry.get_sample_value(METRIC) or 0.0


def test_a_silent_gateway_sends_the_item_to_the_dispatchers_once(server: Server) -> None:
    silent = warn(server, GRACE + timedelta(minutes=MARGIN_MINUTES + 1))
    in_margin = warn(server, GRACE + timedelta(minutes=MARGIN_MINUTES - 1))
    in_grace = warn(server, timedelta(minutes=1))

    run_job(server)
    run_job(server)  # idempotent: nothing moves twice

    assert state_of(server, silent) == (CaseState.NEW.value, None)
    assert state_of(server, in_margin) == (CaseState.WARNED.value, None)
    assert state_of(server, in_grace) == (CaseState.WARNED.value, None)
    assert timeouts(server) == 1
    with server.session_factory() as session:
        entries = session.scalars(
            select(CaseTransition)
            .where(CaseTransition.case_id == silent)
            .order_by(CaseTransition.seq)
        ).all()
        assert [(e.action, e.to_state) for e in entries] == [
            ("register", "new"),
            ("warn", "warned"),
            ("warning_timeout", "new"),
        ]
        last = entries[-1]
        assert (last.from_state, last.actor) == ("warned", "sla-sweep")
        assert last.detail["why"] == "warning_gateway_silent"
        assert last.detail["margin_minutes"] == MARGIN_MINUTES
        assert verify_chain(session).problems == []
        lines = {
            language: TimelineText(translator(language), lambda value, _site: str(value))(
                last, None
            )
            for language in ("en", "zh-CN")
        }
    assert "Gateway never reported back after the warning" in " ".join(lines["en"].facts)
    assert "提醒后网关未回报" in " ".join(lines["zh-CN"].facts)


def test_a_late_report_after_the_move_does_not_bring_it_back(server: Server) -> None:
    silent = warn(server, GRACE + timedelta(minutes=MARGIN_MINUTES + 1))
    run_job(server)
    with server.session_factory.begin() as session:  # a person dispatches it meanwhile
        case = session.get(Case, silent)
        assert case is not None
        case.state = CaseState.DISPATCHED.value
    run_job(server)
    assert state_of(server, silent)[0] == CaseState.DISPATCHED.value
    assert timeouts(server) == 1


def test_the_margin_is_validated() -> None:
    for bad in (0, -1, 1441):
        with pytest.raises(ValidationError):
            ExemptionSettings(warning_silence_margin_minutes=bad)


def silent_item(server: Server, factory: EventFactory) -> tuple[ViolationEvent, WarningNotice]:
    """A warned item its gateway never reported on, moved to the dispatchers by the job."""
    warned_at = utcnow() - GRACE - timedelta(minutes=MARGIN_MINUTES + 1)
    notice = WarningNotice(
        rule_id="warn", warned_at=warned_at, grace_until=warned_at + GRACE, announced=True
    )
    warned = factory.event(Phase.WARNED, frames=1, at=warned_at, warning=notice)
    server.service.store(warned)
    run_job(server)
    return warned, notice


def entries_of(server: Server, violation_id: object) -> tuple[Case, list[CaseTransition]]:
    with server.session_factory() as session:
        case = session.scalar(select(Case).where(Case.violation_id == violation_id))
        assert case is not None
        entries = session.scalars(
            select(CaseTransition)
            .where(CaseTransition.case_id == case.id)
            .order_by(CaseTransition.seq)
        ).all()
        assert verify_chain(session).problems == []
        session.expunge_all()
        return case, list(entries)


def told(entry: CaseTransition) -> dict[str, str]:
    return {
        language: " ".join(
            TimelineText(translator(language), lambda value, _site: str(value))(entry, None).facts
        )
        for language in ("en", "zh-CN")
    }


def test_a_late_complied_closes_an_item_nobody_has_touched(server: Server) -> None:
    factory = EventFactory()
    warned, notice = silent_item(server, factory)
    left_at = notice.warned_at + GRACE / 2
    late = factory.event(Phase.COMPLIED, warned.violation_id, frames=1, at=left_at, warning=notice)
    server.service.store(late)  # the gateway's outbox, back after the move: taken, not refused

    case, entries = entries_of(server, warned.violation_id)
    assert (case.state, case.department) == (CaseState.CLOSED.value, None)
    assert case.cleared_at is not None
    assert [(e.action, e.from_state, e.to_state) for e in entries] == [
        ("register", None, "new"),
        ("warn", "new", "warned"),
        ("warning_timeout", "warned", "new"),
        ("close", "new", "closed"),
    ]
    assert entries[-1].detail["why"] == "complied_late"
    assert entries[-1].detail["close_reason"] == "warned_complied"
    lines = told(entries[-1])
    assert "reported late" in lines["en"]
    assert "提醒超时后才回报" in lines["zh-CN"]
    with pytest.raises(Refusal, match="warning_order"):  # one compliance per warning
        server.service.store(
            factory.event(Phase.COMPLIED, warned.violation_id, frames=1, at=left_at)
        )


def test_a_late_complied_on_a_dispatched_item_is_told_not_undone(server: Server) -> None:
    factory = EventFactory()
    warned, notice = silent_item(server, factory)
    with server.session_factory.begin() as session:  # a dispatcher sent someone meanwhile
        case = session.scalar(select(Case).where(Case.violation_id == warned.violation_id))
        assert case is not None
        case.state, case.department = CaseState.DISPATCHED.value, "urban_management"
    server.service.store(
        factory.event(
            Phase.COMPLIED,
            warned.violation_id,
            frames=1,
            at=notice.warned_at + GRACE / 2,
            warning=notice,
        )
    )
    case, entries = entries_of(server, warned.violation_id)
    assert (case.state, case.department) == (CaseState.DISPATCHED.value, "urban_management")
    last = entries[-1]
    assert (last.action, last.from_state, last.to_state) == (
        "late_complied",
        "dispatched",
        "dispatched",
    )
    assert last.detail["left_at"] == (notice.warned_at + GRACE / 2).isoformat()
    assert "the car left within the grace period" in told(last)["en"]


def test_a_late_opened_leaves_the_item_with_the_dispatchers(server: Server) -> None:
    factory = EventFactory()
    warned, notice = silent_item(server, factory)
    late_opened = factory.event(
        Phase.OPENED, warned.violation_id, frames=1, at=notice.grace_until, warning=notice
    )
    server.service.store(late_opened)
    case, entries = entries_of(server, warned.violation_id)
    # A late "still there" is kept as an event but routes nothing: a dispatcher decides.
    assert (case.state, case.department) == (CaseState.NEW.value, None)
    assert [e.action for e in entries] == ["register", "warn", "warning_timeout"]
    with pytest.raises(Refusal, match="warning_order"):  # seen still there: no late compliance
        server.service.store(
            factory.event(Phase.COMPLIED, warned.violation_id, frames=1, at=notice.grace_until)
        )


def test_only_the_sweep_leader_moves_an_item(
    server: Server, database_url: str, tmp_path: Path
) -> None:
    silent = warn(server, GRACE + timedelta(minutes=MARGIN_MINUTES + 1))
    run_job(server)  # the first server asks first: it leads
    other_item = warn(server, GRACE + timedelta(minutes=MARGIN_MINUTES + 1))
    config = CivicwatchConfig(
        sites=make_registry().sites,
        server=ServerSettings(
            database_url=database_url,
            ingest=IngestSettings(client_id="warning-timeout-other", evidence_dir=tmp_path / "o"),
            exemptions=ExemptionSettings(warning_silence_margin_minutes=MARGIN_MINUTES),
        ),
    )
    follower = build_server(config)
    try:
        run_job(follower)  # not the leader: does nothing
        assert state_of(server, other_item)[0] == CaseState.WARNED.value
        assert (follower.metrics.registry.get_sample_value(METRIC) or 0.0) == 0
    finally:
        follower.stop()
    assert state_of(server, silent)[0] == CaseState.NEW.value
    run_job(server)
    assert state_of(server, other_item)[0] == CaseState.NEW.value
