"""The tier rule table and the routes report-born cases take in each tier."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from contracts.kinds import ViolationKind
from dispatch.config import (
    Department,
    HoursOfDay,
    Priority,
    Route,
    RoutingRule,
    RoutingSettings,
    Tier,
    TierRule,
)
from dispatch.kinds import DEFAULT_ROUTES
from dispatch.residents.tiers import (
    ResidentAwareRouter,
    community_route,
    in_tier,
    report_route_for_department,
    route_for_report,
    tier_for,
)
from dispatch.routing import Router

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Tuesday 23:30 and Saturday 10:00, local time of the site.
TUESDAY_NIGHT = datetime(2026, 5, 5, 23, 30, tzinfo=SHANGHAI)
SATURDAY_MORNING = datetime(2026, 5, 9, 10, 0, tzinfo=SHANGHAI)
K = ViolationKind

RULES = [
    TierRule(
        categories=[K.NOISE],
        hours=HoursOfDay.model_validate({"start": "22:00", "end": "07:00"}),
        tier=Tier.DEPARTMENT,
    ),
    TierRule(categories=[K.NOISE], tier=Tier.COMMUNITY),
    TierRule(categories=[K.GARBAGE], sites=["estate-b"], tier=Tier.HOUSEHOLD),
    TierRule(categories=[K.WATER_LEAK], weekdays=[6, 7], tier=Tier.DEPARTMENT),
]


@pytest.mark.parametrize(
    ("kind", "site", "at", "tier", "why"),
    [
        (K.NOISE, "estate-a", TUESDAY_NIGHT, Tier.DEPARTMENT, 1),
        (K.NOISE, "estate-a", SATURDAY_MORNING, Tier.COMMUNITY, 2),
        (K.GARBAGE, "estate-b", SATURDAY_MORNING, Tier.HOUSEHOLD, 3),
        (K.GARBAGE, "estate-a", SATURDAY_MORNING, Tier.COMMUNITY, None),  # its default
        (K.WATER_LEAK, "estate-a", SATURDAY_MORNING, Tier.DEPARTMENT, 4),
        (K.WATER_LEAK, "estate-a", TUESDAY_NIGHT, Tier.COMMUNITY, None),
        (K.NEIGHBOUR_DISPUTE, "estate-a", TUESDAY_NIGHT, Tier.HOUSEHOLD, None),
        (K.FIRE_LANE_BLOCKING, "estate-a", TUESDAY_NIGHT, Tier.DEPARTMENT, None),
    ],
)
def test_first_matching_rule_else_the_default_tier(
    kind: ViolationKind, site: str, at: datetime, tier: Tier, why: int | None
) -> None:
    found, facts = tier_for(RULES, kind, site, at)
    assert found is tier
    if why is None:
        assert facts == {"why": "default_tier", "kind": kind.value, "tier": tier.value}
    else:
        assert facts == {"why": "tier_rule", "rule": why, "tier": tier.value}


def test_hours_are_read_in_the_sites_time_zone() -> None:
    # 15:30 UTC is 23:30 in Shanghai: the night rule matches only on the local clock.
    utc = datetime(2026, 5, 5, 15, 30, tzinfo=UTC)
    assert tier_for(RULES, K.NOISE, "estate-a", utc.astimezone(SHANGHAI))[0] is Tier.DEPARTMENT
    assert tier_for(RULES, K.NOISE, "estate-a", utc)[0] is Tier.COMMUNITY


def test_a_community_route_in_the_department_tier_goes_to_its_escalation() -> None:
    garbage = DEFAULT_ROUTES[K.GARBAGE]
    route = in_tier(garbage, Tier.DEPARTMENT)
    assert (route.department, route.tier, route.escalate_to) == (
        Department.LAW_ENFORCEMENT,
        Tier.DEPARTMENT,
        None,
    )
    assert (route.sla_minutes, route.clock) == (garbage.sla_minutes, garbage.clock)


def test_a_department_route_in_the_community_tier_goes_to_property_management_first() -> None:
    route = community_route(DEFAULT_ROUTES[K.NOISE])
    assert (route.department, route.tier, route.escalate_to) == (
        Department.PROPERTY_MANAGEMENT,
        Tier.COMMUNITY,
        Department.PUBLIC_SECURITY,
    )


def test_mediation_of_a_household_matter_escalates_where_its_route_says() -> None:
    route = community_route(DEFAULT_ROUTES[K.NEIGHBOUR_DISPUTE])
    assert (route.department, route.escalate_to) == (
        Department.PROPERTY_MANAGEMENT,
        Department.PUBLIC_SECURITY,
    )


def test_routing_rules_about_zones_never_match_a_report() -> None:
    rules = [
        RoutingRule(zone_id="fire-lane-north", department=Department.LAW_ENFORCEMENT),
        RoutingRule(
            kind=K.FIRE_LANE_BLOCKING,
            site_id="estate-a",
            department=Department.PROPERTY_MANAGEMENT,
            priority=Priority.HIGH,
        ),
    ]
    route, facts = route_for_report(
        rules, K.FIRE_LANE_BLOCKING, "estate-a", TUESDAY_NIGHT, Tier.DEPARTMENT
    )
    assert facts == {"why": "routing_rule", "rule": 2}
    assert (route.department, route.priority) == (Department.PROPERTY_MANAGEMENT, Priority.HIGH)
    assert type(route) is Route  # the rule's terms, not its matchers
    other, facts = route_for_report(
        rules, K.FIRE_LANE_BLOCKING, "estate-b", TUESDAY_NIGHT, Tier.DEPARTMENT
    )
    assert facts["why"] == "default_route"
    assert other.department is Department.FIRE_RESCUE


def test_a_transfer_of_a_report_case_takes_the_departments_route() -> None:
    rules = [RoutingRule(kind=K.NOISE, department=Department.LAW_ENFORCEMENT, sla_minutes=600)]
    to_rule = report_route_for_department(
        rules, Department.LAW_ENFORCEMENT, K.NOISE, "estate-a", TUESDAY_NIGHT
    )
    assert (to_rule.department, to_rule.sla_minutes) == (Department.LAW_ENFORCEMENT, 600)
    to_default = report_route_for_department(
        [], Department.PROPERTY_MANAGEMENT, K.GARBAGE, "estate-a", TUESDAY_NIGHT
    )
    assert to_default == in_tier(DEFAULT_ROUTES[K.GARBAGE], Tier.COMMUNITY)
    elsewhere = report_route_for_department(
        [], Department.FIRE_RESCUE, K.NOISE, "estate-a", TUESDAY_NIGHT
    )
    assert (elsewhere.department, elsewhere.tier) == (Department.FIRE_RESCUE, Tier.DEPARTMENT)


def test_the_router_answers_for_cases_without_a_zone_kind() -> None:
    rules = RoutingSettings(
        rules=[
            RoutingRule(kind=K.NOISE, department=Department.LAW_ENFORCEMENT, sla_minutes=600),
            RoutingRule(zone_kind="no_parking", department=Department.PROPERTY_MANAGEMENT),
        ]
    )
    router = ResidentAwareRouter(rules)
    with pytest.raises(ValueError, match="''"):
        Router(rules).route_for_department(Department.FIRE_RESCUE, "noise", "", "", "estate-a")
    report = router.route_for_department(Department.FIRE_RESCUE, "noise", "", "", "estate-a")
    assert (report.department, report.tier) == (Department.FIRE_RESCUE, Tier.DEPARTMENT)
    assert router.route("noise", "", "", "estate-a").sla_minutes == 600
    assert router.route("garbage", "", "", "estate-a") == DEFAULT_ROUTES[K.GARBAGE]
    # A camera case is the Router's, unchanged: the zone-kind rule matches it.
    camera = router.route("illegal_parking", "no_parking", "gate", "estate-a")
    assert camera.department is Department.PROPERTY_MANAGEMENT
