"""The routing rule table: kind x zone x site x time of day -> department, tier, SLA, deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from civicwatch.config import CivicwatchConfig, ServerSettings
from contracts.events import ViolationKind
from contracts.sites import SiteRegistry, ZoneKind
from dispatch.calendar import CalendarSettings, WorkingCalendar
from dispatch.config import (
    DeadlineClock,
    Department,
    HoursOfDay,
    Priority,
    RoutingRule,
    RoutingSettings,
    Tier,
)
from dispatch.kinds import DEFAULT_ROUTES
from dispatch.routing import DISPATCH_ACTOR, Router
from storage.routing import OpenedCase, RouteDecision
from tests.factories import OTHER_SITE, SITE, make_registry

PARKING = (ViolationKind.ILLEGAL_PARKING, ZoneKind.NO_PARKING, "gate", "site-a")
FIRE = (ViolationKind.FIRE_LANE_BLOCKING, ZoneKind.FIRE_LANE, "north-lane", "site-a")
SHANGHAI = ZoneInfo("Asia/Shanghai")
# Friday 2026-11-27, 14:00 in Shanghai.
FRIDAY_AFTERNOON = datetime(2026, 11, 27, 14, 0, tzinfo=SHANGHAI)

NIGHT_PARKING = RoutingRule(
    kind=ViolationKind.ILLEGAL_PARKING,
    site_id=SITE,
    hours=HoursOfDay.model_validate({"start": "22:00", "end": "07:00"}),
    department=Department.PROPERTY_MANAGEMENT,
    tier=Tier.COMMUNITY,
    escalate_to=Department.LAW_ENFORCEMENT,
    priority=Priority.LOW,
    ack_minutes=60,
    sla_minutes=120,
    clock=DeadlineClock.WORKING,
)
DAY_PARKING = RoutingRule(
    kind=ViolationKind.ILLEGAL_PARKING,
    department=Department.LAW_ENFORCEMENT,
    ack_minutes=15,
    sla_minutes=90,
    clock=DeadlineClock.WORKING,
)


def _opened(key: tuple[str, str, str, str], seen: datetime, received: datetime) -> OpenedCase:
    return OpenedCase(uuid4(), *key, opened_at=seen, received_at=received)


def test_defaults_send_parking_to_law_enforcement_and_fire_lanes_to_fire_rescue() -> None:
    router = Router(RoutingSettings())
    assert router.route(*PARKING).department is Department.LAW_ENFORCEMENT
    fire = router.route(*FIRE)
    assert fire.department is Department.FIRE_RESCUE
    assert fire.priority is Priority.URGENT
    assert fire.clock is DeadlineClock.CALENDAR  # fire lanes run 24/7
    assert fire == DEFAULT_ROUTES[ViolationKind.FIRE_LANE_BLOCKING]


def test_first_matching_rule_wins_and_unmatched_fall_back_to_defaults() -> None:
    community = RoutingRule(
        site_id="site-a",
        zone_kind=ZoneKind.NO_PARKING,
        department=Department.PROPERTY_MANAGEMENT,
        tier=Tier.COMMUNITY,
        escalate_to=Department.LAW_ENFORCEMENT,
        priority=Priority.LOW,
        sla_minutes=60 * 24,
    )
    public_road = RoutingRule(zone_id="gate", department=Department.PUBLIC_SECURITY)
    router = Router(RoutingSettings(rules=[community, public_road]))
    assert router.route(*PARKING) == community  # both match: the first wins
    assert router.route(ViolationKind.ILLEGAL_PARKING, ZoneKind.NO_PARKING, "gate", "site-b") == (
        public_road
    )
    assert router.route(*FIRE).department is Department.FIRE_RESCUE  # no rule matches


@pytest.mark.parametrize(
    ("local", "night"),
    [
        ((21, 59), False),
        ((22, 0), True),
        ((23, 30), True),
        ((0, 0), True),
        ((6, 59), True),
        ((7, 0), False),
        ((12, 0), False),
    ],
)
def test_time_of_day_rules_wrap_midnight_in_the_sites_zone(
    local: tuple[int, int], night: bool
) -> None:
    router = Router(RoutingSettings(rules=[NIGHT_PARKING, DAY_PARKING]), registry=make_registry())
    seen = datetime(2026, 11, 27, *local, tzinfo=SHANGHAI).astimezone(UTC)
    route = router.route(*PARKING, at=seen)
    assert route == (NIGHT_PARKING if night else DAY_PARKING)


def test_a_site_in_another_zone_reads_the_same_instant_as_its_own_local_time() -> None:
    registry = make_registry()
    berlin_site = registry.sites[0].model_copy(update={"timezone": "Europe/Berlin"})
    registry = SiteRegistry(sites=[berlin_site, *registry.sites[1:]])
    router = Router(RoutingSettings(rules=[NIGHT_PARKING, DAY_PARKING]), registry=registry)
    # 23:30 in Shanghai is 16:30 in Berlin: daytime there.
    seen = datetime(2026, 11, 27, 23, 30, tzinfo=SHANGHAI)
    assert router.route(*PARKING, at=seen) == DAY_PARKING
    assert router.route(*PARKING, at=datetime(2026, 11, 27, 23, 30, tzinfo=UTC)) == NIGHT_PARKING


def test_time_of_day_rules_never_match_without_a_time() -> None:
    router = Router(RoutingSettings(rules=[NIGHT_PARKING, DAY_PARKING]))
    assert router.route(*PARKING) == DAY_PARKING


def test_new_cases_get_deadlines_on_their_routes_clock_and_the_audit_text() -> None:
    router = Router(
        RoutingSettings(rules=[NIGHT_PARKING, DAY_PARKING]),
        WorkingCalendar(CalendarSettings()),
        make_registry(),
    )
    night = datetime(2026, 11, 27, 23, 0, tzinfo=SHANGHAI)  # Friday night
    received = night + timedelta(seconds=3)
    parking = _opened(PARKING, night, received)
    fire = _opened(FIRE, night, received)
    decisions = router.dispatch_new_cases([parking, fire])
    assert decisions == [
        RouteDecision(
            department="property_management",
            tier="community",
            priority="low",
            # Working clock: nothing counts until Monday 09:00.
            ack_due_at=datetime(2026, 11, 30, 10, 0, tzinfo=SHANGHAI),
            sla_due_at=datetime(2026, 11, 30, 11, 0, tzinfo=SHANGHAI),
            escalate_to="law_enforcement",
            actor=DISPATCH_ACTOR,
            reason="routing rule #1 (kind=illegal_parking, site_id=site-a, hours=22:00-07:00): "
            "property_management, community, low, SLA 120 working min",
            # The same as facts: the console tells them in the page's language.
            detail={
                "why": "routing_rule",
                "rule": 1,
                "match": {"kind": "illegal_parking", "site_id": "site-a", "hours": "22:00-07:00"},
                "department": "property_management",
                "tier": "community",
                "priority": "low",
                "sla_minutes": 120,
                "clock": "working",
            },
        ),
        RouteDecision(
            department="fire_rescue",
            tier="department",
            priority="urgent",
            # Calendar clock: 24/7 from when ingest received it.
            ack_due_at=received + timedelta(minutes=5),
            sla_due_at=received + timedelta(minutes=30),
            escalate_to=None,
            actor=DISPATCH_ACTOR,
            reason="default route for fire_lane_blocking: fire_rescue, department, urgent, "
            "SLA 30 min",
            detail={
                "why": "default_route",
                "kind": "fire_lane_blocking",
                "department": "fire_rescue",
                "tier": "department",
                "priority": "urgent",
                "sla_minutes": 30,
                "clock": "calendar",
            },
        ),
    ]
    assert all(d.sla_due_at.tzinfo is not None for d in decisions)


def test_time_of_day_comes_from_when_it_was_seen_and_the_clock_from_when_it_arrived() -> None:
    """A violation seen at 06:50 and delivered at 10:10 (an outbox replay) is a night case."""
    router = Router(RoutingSettings(rules=[NIGHT_PARKING, DAY_PARKING]), registry=make_registry())
    seen = datetime(2026, 11, 30, 6, 50, tzinfo=SHANGHAI)
    received = datetime(2026, 11, 30, 10, 10, tzinfo=SHANGHAI)
    (decision,) = router.dispatch_new_cases([_opened(PARKING, seen, received)])
    assert decision.department == "property_management"
    # 120 working minutes from 10:10: 110 to noon, then 10 after the lunch break.
    assert decision.sla_due_at == datetime(2026, 11, 30, 13, 40, tzinfo=SHANGHAI)


def test_route_for_department_prefers_its_rule_then_the_default_then_the_own_route() -> None:
    router = Router(RoutingSettings(rules=[NIGHT_PARKING, DAY_PARKING]), registry=make_registry())
    night = datetime(2026, 11, 27, 23, 0, tzinfo=SHANGHAI)
    assert router.route(*PARKING, at=night) == NIGHT_PARKING
    to_law = router.route_for_department(Department.LAW_ENFORCEMENT, *PARKING, at=night)
    assert to_law == DAY_PARKING  # the first law-enforcement rule that matches
    bare = Router(RoutingSettings(rules=[NIGHT_PARKING]), registry=make_registry())
    assert (
        bare.route_for_department(Department.LAW_ENFORCEMENT, *PARKING, at=night)
        == (DEFAULT_ROUTES[ViolationKind.ILLEGAL_PARKING])
    )
    police = bare.route_for_department(Department.PUBLIC_SECURITY, *PARKING, at=night)
    assert (police.department, police.tier, police.sla_minutes, police.clock) == (
        Department.PUBLIC_SECURITY,
        Tier.DEPARTMENT,
        NIGHT_PARKING.sla_minutes,
        DeadlineClock.WORKING,
    )


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"department": "law_enforcement", "hours": {"start": "08:00", "end": "08:00"}}, "empty"),
        ({"department": "property_management", "tier": "community"}, "escalate_to"),
        (
            {
                "department": "law_enforcement",
                "tier": "community",
                "escalate_to": "law_enforcement",
            },
            "own department",
        ),
        ({"department": "law_enforcement", "clock": "lunar"}, "clock"),
        ({"department": "law_enforcement", "ack_minutes": 300, "sla_minutes": 60}, "exceeds"),
        ({"department": "law_enforcement", "hours": {"start": "25:00", "end": "07:00"}}, "hours"),
    ],
)
def test_bad_rules_say_what_is_wrong(rule: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RoutingRule.model_validate(rule)


def test_the_config_refuses_rules_naming_unknown_places_and_sites_with_unknown_zones() -> None:
    sites = make_registry().sites
    for rule, message in (
        ({"site_id": "nowhere", "department": "law_enforcement"}, "unknown site 'nowhere'"),
        ({"zone_id": "no-such-zone", "department": "law_enforcement"}, "unknown zone"),
    ):
        with pytest.raises(ValidationError, match=message):
            CivicwatchConfig(
                sites=sites,
                server=ServerSettings.model_validate({"routing": {"rules": [rule]}}),
            )
    bad_zone = sites[1].model_copy(update={"timezone": "Asia/Atlantis"})
    with pytest.raises(ValidationError, match=f"site {OTHER_SITE}: unknown time zone"):
        CivicwatchConfig(sites=[sites[0], bad_zone])
    with pytest.raises(ValueError, match="unknown time zone"):
        Router(RoutingSettings(), registry=SiteRegistry(sites=[sites[0], bad_zone]))
