from __future__ import annotations

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
from dispatch.routing import Router

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
