from __future__ import annotations

from uuid import uuid4

from contracts.events import ViolationKind
from contracts.sites import ZoneKind
from dispatch.config import (
    DEFAULT_ROUTES,
    Department,
    Priority,
    RoutingRule,
    RoutingSettings,
    Tier,
)
from dispatch.routing import DISPATCH_ACTOR, Router
from ingest.store import OpenedCase, RouteDecision

PARKING = (ViolationKind.ILLEGAL_PARKING, ZoneKind.NO_PARKING, "gate", "site-a")
FIRE = (ViolationKind.FIRE_LANE_BLOCKING, ZoneKind.FIRE_LANE, "north-lane", "site-a")


def test_defaults_send_parking_to_law_enforcement_and_fire_lanes_to_fire_rescue() -> None:
    router = Router(RoutingSettings())
    assert router.route(*PARKING).department is Department.LAW_ENFORCEMENT
    fire = router.route(*FIRE)
    assert fire.department is Department.FIRE_RESCUE
    assert fire.priority is Priority.URGENT
    assert fire == DEFAULT_ROUTES[ViolationKind.FIRE_LANE_BLOCKING]


def test_first_matching_rule_wins_and_unmatched_fall_back_to_defaults() -> None:
    community = RoutingRule(
        site_id="site-a",
        zone_kind=ZoneKind.NO_PARKING,
        department=Department.PROPERTY_MANAGEMENT,
        tier=Tier.COMMUNITY,
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


def test_new_cases_get_one_decision_each_with_the_audit_text() -> None:
    community = RoutingRule(
        site_id="site-a",
        zone_kind=ZoneKind.NO_PARKING,
        department=Department.PROPERTY_MANAGEMENT,
        tier=Tier.COMMUNITY,
        priority=Priority.LOW,
        sla_minutes=60 * 24,
    )
    router = Router(RoutingSettings(rules=[community]))
    parking, fire = (OpenedCase(uuid4(), *key) for key in (PARKING, FIRE))
    decisions = router.dispatch_new_cases([parking, fire, parking])
    by_rule = RouteDecision(
        department="property_management",
        tier="community",
        priority="low",
        sla_minutes=1440,
        actor=DISPATCH_ACTOR,
        reason="routing rule #1 (zone_kind=no_parking, site_id=site-a): "
        "property_management, community, low, SLA 1440 min",
    )
    by_default = RouteDecision(
        department="fire_rescue",
        tier="department",
        priority="urgent",
        sla_minutes=30,
        actor=DISPATCH_ACTOR,
        reason="default route for fire_lane_blocking: fire_rescue, department, urgent, SLA 30 min",
    )
    assert decisions == [by_rule, by_default, by_rule]
