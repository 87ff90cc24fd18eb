"""deadline_status: each deadline's own state, and "due soon" relative to the deadline's window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dispatch.sla import DeadlineState, deadline_status
from storage.tables import Case, CaseState

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def _case(ack: int | None, resolve: int | None, state: CaseState = CaseState.DISPATCHED) -> Case:
    """A case opened at T0 with deadlines ``ack`` and ``resolve`` minutes later."""
    return Case(
        state=state.value,
        opened_at=T0,
        ack_due_at=None if ack is None else T0 + ack * MIN,
        sla_due_at=None if resolve is None else T0 + resolve * MIN,
    )


def _resolve_state(case: Case, now: datetime, **kwargs: datetime) -> DeadlineState:
    resolve = deadline_status(case, now, **kwargs).resolve
    assert resolve is not None
    return resolve.state


def test_a_fire_lane_case_is_not_due_soon_from_the_moment_it_opens() -> None:
    fire = _case(ack=5, resolve=30)
    at_open = deadline_status(fire, T0 + MIN)
    assert at_open.resolve is not None
    assert at_open.resolve.state is DeadlineState.OK
    # the last quarter of a 30-minute window: 7.5 minutes
    assert _resolve_state(fire, T0 + 22 * MIN) is DeadlineState.OK
    assert _resolve_state(fire, T0 + 23 * MIN) is DeadlineState.SOON


def test_due_soon_is_capped_at_thirty_minutes_on_a_long_window() -> None:
    long = _case(ack=60, resolve=24 * 60)
    assert _resolve_state(long, T0 + (24 * 60 - 31) * MIN) is DeadlineState.OK
    assert _resolve_state(long, T0 + (24 * 60 - 30) * MIN) is DeadlineState.SOON


def test_a_missed_accept_deadline_is_over_while_the_resolve_deadline_runs_on() -> None:
    case = _case(ack=5, resolve=120)
    status = deadline_status(case, T0 + 10 * MIN)
    assert status.accept is not None
    assert status.accept.state is DeadlineState.OVER
    assert status.accept.minutes_left == -5
    assert status.resolve is not None
    assert status.resolve.state is DeadlineState.OK
    assert status.resolve.minutes_left == 110
    assert status.current is status.accept
    assert status.worst is DeadlineState.OVER


def test_an_accepted_case_has_met_its_accept_deadline_and_runs_on_the_resolve_one() -> None:
    case = _case(ack=5, resolve=120, state=CaseState.ACCEPTED)
    case.acknowledged_at = T0 + 7 * MIN
    status = deadline_status(case, T0 + 80 * MIN)
    assert status.accept is not None
    assert status.accept.state is DeadlineState.MET
    assert status.accept.late
    assert status.accept.met_at == T0 + 7 * MIN
    assert status.resolve is not None
    assert status.resolve.state is DeadlineState.OK
    assert status.current is status.resolve
    assert deadline_status(case, T0 + 121 * MIN).worst is DeadlineState.OVER


def test_a_case_closed_without_a_fix_owes_nothing() -> None:
    case = _case(ack=5, resolve=30, state=CaseState.CLOSED)
    status = deadline_status(case, T0 + 60 * MIN)
    assert status.accept is not None
    assert status.accept.state is DeadlineState.OFF
    assert status.resolve is not None
    assert status.resolve.state is DeadlineState.OFF
    assert status.worst is None


def test_a_parked_case_still_shows_its_missed_deadline() -> None:
    case = _case(ack=5, resolve=30, state=CaseState.PARKED)
    assert _resolve_state(case, T0 + 60 * MIN) is DeadlineState.OVER


def test_a_case_without_deadlines_has_none() -> None:
    status = deadline_status(_case(None, None, CaseState.NEW), T0)
    assert status.accept is None
    assert status.resolve is None
    assert status.current is None


@pytest.mark.parametrize("restart_minute", [60, 90])
def test_the_margin_counts_from_when_the_clock_restarted(restart_minute: int) -> None:
    # transferred at restart_minute with a fresh 30-minute window: the margin is 7.5 minutes,
    # not a quarter of the time since the case opened
    start = T0 + restart_minute * MIN
    case = _case(ack=restart_minute + 5, resolve=restart_minute + 30)
    status = deadline_status(case, start + 20 * MIN, clock_started_at=start)
    assert status.resolve is not None
    assert status.resolve.state is DeadlineState.OK
    assert _resolve_state(case, start + 20 * MIN) is DeadlineState.SOON
