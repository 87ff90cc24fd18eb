"""The three rates (docs/rates.md) on hand-built cases: the accept deadline met or missed, a
transfer, a reopen, zero denominators and the residents' ratings; then the same counted from
real rows on SQLite and PostgreSQL (time zones, merged cases, scoping, source, by site)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert

from contracts.sites import SiteRegistry
from dispatch.reports.figures import count_figures
from dispatch.reports.period import Period, Scope, resolve_place, window
from dispatch.reports.rates import (
    BASIC,
    SATISFIED,
    UNSATISFIED,
    CaseFacts,
    GroupBy,
    Rates,
    Source,
    facts_of,
    measure,
    measure_sites,
    resolved,
    responded,
    tally,
)
from dispatch.workflow import Action
from storage.database import SessionFactory
from storage.tables import Case, CaseTransition, ResidentReport
from tests.factories import OTHER_SITE, SITE, make_registry, migrated_database

SHANGHAI = ZoneInfo("Asia/Shanghai")
MIN = timedelta(minutes=1)
T0 = datetime(2026, 5, 6, 2, tzinfo=UTC)  # Wednesday 10:00 in Shanghai
END = datetime(2026, 5, 10, 16, tzinfo=UTC)  # that week's end: Monday 00:00 in Shanghai


def facts(**values: Any) -> CaseFacts:
    base: dict[str, Any] = {
        "accepted_at": None,
        "resolved_at": None,
        "ack_due_at": T0 + 10 * MIN,
        "sla_due_at": T0 + 120 * MIN,
        "reopened": False,
    }
    return CaseFacts(**(base | values))


def row(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "acknowledged_at": None,
        "resolved_at": None,
        "closed_at": None,
        "ack_due_at": T0 + 10 * MIN,
        "sla_due_at": T0 + 120 * MIN,
    }
    return base | values


# --- the definitions ----------------------------------------------------------------------------


def test_accepted_at_the_deadline_responds_and_a_minute_late_does_not() -> None:
    assert responded(facts(accepted_at=T0 + 10 * MIN), END)
    assert not responded(facts(accepted_at=T0 + 11 * MIN), END)
    assert not responded(facts(), END)  # never accepted
    # no accept deadline: accepted at all is in time
    assert responded(facts(accepted_at=T0 + 600 * MIN, ack_due_at=None), END)
    # accepted after the period's end: not yet, so a finished period never changes
    assert not responded(facts(accepted_at=END, ack_due_at=None), END)


def test_resolved_by_the_resolve_deadline_counts_later_or_never_does_not() -> None:
    assert resolved(facts(resolved_at=T0 + 120 * MIN), END)
    assert not resolved(facts(resolved_at=T0 + 121 * MIN), END)
    assert not resolved(facts(), END)
    assert resolved(facts(resolved_at=T0 + 999 * MIN, sla_due_at=None), END)
    assert not resolved(facts(resolved_at=T0 + 5 * MIN, reopened=True), END)


def test_a_transfer_hands_the_case_over_and_the_holder_is_judged_on_its_own_acceptance() -> None:
    entries = [
        (Action.DISPATCH.value, T0),
        (Action.ACCEPT.value, T0 + 30 * MIN),  # the first department, late
        (Action.TRANSFER.value, T0 + 40 * MIN),
        (Action.ACCEPT.value, T0 + 45 * MIN),  # the holder, within its restarted deadline
    ]
    found = facts_of(row(ack_due_at=T0 + 50 * MIN), entries, END)
    assert found.accepted_at == T0 + 45 * MIN
    assert responded(found, END)
    # transferred and not accepted again: the first department's acceptance does not count
    unanswered = facts_of(row(ack_due_at=T0 + 50 * MIN), entries[:3], END)
    assert unanswered.accepted_at is None
    assert not responded(unanswered, END)
    # ... even though the row never had acknowledged_at reset by hand: entries win over the row
    assert facts_of(row(acknowledged_at=T0), entries[:3], END).accepted_at is None


def test_a_reopened_case_is_not_resolved_on_its_first_pass_and_keeps_its_first_acceptance() -> None:
    entries = [
        (Action.ACCEPT.value, T0 + 5 * MIN),
        (Action.RESOLVE.value, T0 + 60 * MIN),
        (Action.REOPEN.value, T0 + 90 * MIN),  # e.g. a resident rated 不满意
        (Action.ACCEPT.value, T0 + 200 * MIN),
        (Action.RESOLVE.value, T0 + 210 * MIN),
    ]
    found = facts_of(row(), entries, END)
    assert found.reopened
    assert found.accepted_at == T0 + 5 * MIN  # the reopen does not undo the response
    assert responded(found, END)
    assert not resolved(found, END)
    # a reopen after the period's end does not change the finished period
    early_end = T0 + 80 * MIN
    assert resolved(facts_of(row(), entries, early_end), early_end)


def test_rows_without_audit_entries_fall_back_to_their_own_times() -> None:
    found = facts_of(row(acknowledged_at=T0 + MIN, closed_at=T0 + 100 * MIN), [], END)
    assert (found.accepted_at, found.resolved_at) == (T0 + MIN, T0 + 100 * MIN)
    assert responded(found, END)
    assert resolved(found, END)


def test_zero_denominators_give_no_rate_never_zero() -> None:
    empty = Rates()
    assert (empty.response_rate, empty.resolution_rate, empty.satisfaction_rate) == (
        None,
        None,
        None,
    )
    only_ratings = tally([], END, [SATISFIED])
    assert only_ratings.response_rate is None
    assert only_ratings.satisfaction_rate == 1.0
    no_ratings = tally([facts()], END)
    assert (no_ratings.response_rate, no_ratings.satisfaction_rate) == (0.0, None)


def test_satisfied_and_basically_satisfied_count_of_all_ratings_given() -> None:
    counted = tally([], END, [SATISFIED, BASIC, UNSATISFIED, UNSATISFIED, ""])
    assert (counted.ratings, counted.satisfied) == (4, 2)
    assert counted.satisfaction_rate == 0.5
    assert tally([], END, ["unknown"]).satisfied == 0
    assert (Rates(2, 1, 0, 4, 3) + Rates(2, 2, 1, 0, 0)) == Rates(4, 3, 1, 4, 3)


# --- counted from real rows -------------------------------------------------------------------


def case_row(case_id: int, created: datetime, **values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": case_id,
        "violation_id": uuid.uuid4(),
        "kind": "illegal_parking",
        "site_id": SITE,
        "gateway_id": "gw",
        "camera_id": "cam",
        "zone_id": "zone",
        "zone_kind": "no_parking",
        "state": "accepted",
        "department": "law_enforcement",
        "started_at": created,
        "opened_at": created,
        "last_observed_at": created,
        "dwell_seconds": 300.0,
        "created_at": created,
        "updated_at": created,
        "overdue": False,
        "chain_broken": False,
        "escalation_level": 0,
        "ack_due_at": created + 10 * MIN,
        "sla_due_at": created + 120 * MIN,
    }
    return base | values


def report_row(report_id: int, case_id: int, rating: str | None, at: datetime) -> dict[str, Any]:
    return {
        "id": report_id,
        "tracking_code": f"CODE{report_id:04d}",
        "case_id": case_id,
        "joined": False,
        "channel": "web",
        "category": "illegal_parking",
        "site_id": SITE,
        "description": "",
        "contact_consent": False,
        "client_address": "",
        "created_at": at,
        "rating": rating,
        "rated_at": at if rating else None,
    }


def entry(case_id: int, action: Action, at: datetime) -> CaseTransition:
    return CaseTransition(
        case_id=case_id, from_state=None, to_state="x", actor="t", at=at, action=action.value
    )


@pytest.fixture
def sessions(database_url: str) -> Iterator[SessionFactory]:
    with migrated_database(database_url) as (_engine, factory):
        yield factory


@pytest.fixture
def registry() -> SiteRegistry:
    return make_registry()


def seed(sessions: SessionFactory) -> None:
    monday = datetime(2026, 5, 4, 0, 30, tzinfo=SHANGHAI).astimezone(UTC)  # Sunday in UTC
    rows = [
        # law: accepted in time, resolved in time (no entries: the row's own times)
        case_row(1, T0, acknowledged_at=T0 + 5 * MIN, resolved_at=T0 + 60 * MIN),
        # law: accepted late, resolved then reopened
        case_row(2, T0, acknowledged_at=T0 + 30 * MIN, source="web"),
        # law: registered 00:30 Monday local (Sunday 16:30 UTC): this week; accepted in time
        case_row(3, monday, acknowledged_at=monday + MIN),
        # fire: never accepted
        case_row(4, T0, department="fire_rescue", kind="fire_lane_blocking"),
        # not counted: merged, never dispatched, the week before, resolved by nobody
        case_row(5, T0, state="merged", acknowledged_at=T0 + MIN),
        case_row(6, T0, department=None, state="new"),
        case_row(7, monday - 40 * MIN, acknowledged_at=monday),  # Sunday 23:50 local
        # the other site: fire, accepted in time
        case_row(8, T0, site_id=OTHER_SITE, department="fire_rescue", acknowledged_at=T0),
    ]
    with sessions.begin() as session:
        session.execute(insert(Case), rows)
        session.add_all(
            [
                entry(2, Action.ACCEPT, T0 + 30 * MIN),
                entry(2, Action.RESOLVE, T0 + 60 * MIN),
                entry(2, Action.REOPEN, T0 + 70 * MIN),
            ]
        )
        session.execute(
            insert(ResidentReport),
            [
                report_row(1, 2, UNSATISFIED, T0 + 70 * MIN),
                report_row(2, 2, BASIC, T0 + 75 * MIN),
                report_row(3, 1, SATISFIED, T0 + 80 * MIN),
                report_row(4, 1, None, T0),  # no rating: not counted
                report_row(5, 7, SATISFIED, monday - 40 * MIN),  # rated the week before
            ],
        )


def test_rates_per_department_and_per_site_from_real_rows(
    sessions: SessionFactory, registry: SiteRegistry
) -> None:
    seed(sessions)
    now = datetime(2026, 5, 20, tzinfo=UTC)
    with sessions() as session:
        table = measure(session, registry, Period.WEEK, now, at=date(2026, 5, 7))
        by_site = measure(session, registry, Period.WEEK, now, at=date(2026, 5, 7), by=GroupBy.SITE)
        residents = measure(
            session, registry, Period.WEEK, now, at=date(2026, 5, 7), source=Source.RESIDENT
        )
        law_only = measure(
            session,
            registry,
            Period.WEEK,
            now,
            at=date(2026, 5, 7),
            visible=Case.department == "law_enforcement",
        )
        span = window(Period.WEEK, date(2026, 5, 7), SHANGHAI)
        one_site = measure_sites(session, [SITE], span)
    assert (table.first_day, table.last_day) == (date(2026, 5, 4), date(2026, 5, 10))
    assert table.rows["law_enforcement"] == Rates(
        dispatched=3, responded=2, resolved=1, ratings=3, satisfied=2
    )
    assert table.rows["fire_rescue"] == Rates(dispatched=2, responded=1)
    assert table.rows["fire_rescue"].satisfaction_rate is None
    assert table.total == Rates(5, 3, 1, 3, 2)
    assert by_site.rows == {
        SITE: Rates(4, 2, 1, 3, 2),
        OTHER_SITE: Rates(1, 1, 0, 0, 0),
    }
    # residents' complaints only: the cases with a resident report
    assert residents.rows == {"law_enforcement": Rates(2, 1, 1, 3, 2)}
    assert list(law_only.rows) == ["law_enforcement"]
    assert one_site["fire_rescue"] == Rates(1, 0, 0, 0, 0)


def test_the_previous_period_and_each_sites_today(
    sessions: SessionFactory, registry: SiteRegistry
) -> None:
    seed(sessions)
    with sessions() as session:
        # "now" is the next Monday 01:00 local (still Sunday in UTC): the week is the next one
        now = datetime(2026, 5, 11, 1, tzinfo=SHANGHAI).astimezone(UTC)
        this_week = measure(session, registry, Period.WEEK, now)
        last_week = measure(session, registry, Period.WEEK, now, back=1)
    assert this_week.first_day == date(2026, 5, 11)
    assert this_week.rows == {}
    assert last_week.first_day == date(2026, 5, 4)
    assert last_week.total.dispatched == 5


def test_the_rating_values_are_the_ones_the_tracking_page_stores() -> None:
    followup = pytest.importorskip("dispatch.residents.followup")
    assert {rating.value for rating in followup.Rating} == {SATISFIED, BASIC, UNSATISFIED}
    # and each fits the column (String(16))
    assert all(len(value) <= 16 for value in (SATISFIED, BASIC, UNSATISFIED))


def test_the_analysis_report_reads_the_same_rates_satisfaction_included(
    sessions: SessionFactory, registry: SiteRegistry
) -> None:
    seed(sessions)
    place = resolve_place(registry, Scope.SITE, SITE)
    span = window(Period.WEEK, date(2026, 5, 7), place.zone)
    with sessions() as session:
        figures = count_figures(session, registry, place, span)
        expected = measure_sites(session, [SITE], span)
    law = next(d for d in figures.departments if d.department == "law_enforcement")
    assert law.rates == expected["law_enforcement"]
    assert (law.response_rate, law.resolution_rate) == (2 / 3, 1 / 3)
    assert law.satisfaction_rate == 2 / 3
    unassigned = next(d for d in figures.departments if d.department == "none")
    assert (unassigned.response_rate, unassigned.satisfaction_rate) == (None, None)
