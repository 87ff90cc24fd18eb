"""Which department gets a new case, at what tier, priority and SLA."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from contracts.events import ViolationKind
from contracts.sites import ZoneKind
from dispatch.config import DEFAULT_ROUTES, Route, RoutingRule, RoutingSettings
from ingest.store import OpenedCase, RouteDecision

DISPATCH_ACTOR = "dispatch"


class Router:
    def __init__(self, settings: RoutingSettings) -> None:
        self._rules = settings.rules

    def route(self, kind: str, zone_kind: str, zone_id: str, site_id: str) -> Route:
        return self._match(kind, zone_kind, zone_id, site_id)[0]

    def _match(self, kind: str, zone_kind: str, zone_id: str, site_id: str) -> tuple[Route, str]:
        """The first matching rule, else the default for the kind; with a description of which."""
        for number, rule in enumerate(self._rules, start=1):
            if _matches(rule, ViolationKind(kind), ZoneKind(zone_kind), zone_id, site_id):
                return rule, f"routing rule #{number}{_describe(rule)}"
        return DEFAULT_ROUTES[ViolationKind(kind)], f"default route for {kind}"

    def dispatch_new_cases(self, cases: Sequence[OpenedCase]) -> list[RouteDecision]:
        """The router ingest calls with the cases a batch opens: one decision per case, which
        ingest writes as the case's dispatch."""
        decisions = []
        for case in cases:
            route, why = self._match(case.kind, case.zone_kind, case.zone_id, case.site_id)
            decisions.append(_decision(route, why, case.received_at))
        return decisions


def _decision(route: Route, why: str, start: datetime) -> RouteDecision:
    return RouteDecision(
        department=route.department.value,
        tier=route.tier.value,
        priority=route.priority.value,
        ack_due_at=start + timedelta(minutes=route.ack_minutes),
        sla_due_at=start + timedelta(minutes=route.sla_minutes),
        escalate_to=route.escalate_to.value if route.escalate_to else None,
        actor=DISPATCH_ACTOR,
        reason=f"{why}: {route.department}, {route.tier}, {route.priority}, "
        f"SLA {route.sla_minutes} min",
    )


def _matches(
    rule: RoutingRule, kind: ViolationKind, zone_kind: ZoneKind, zone_id: str, site_id: str
) -> bool:
    return (
        (rule.kind is None or rule.kind == kind)
        and (rule.zone_kind is None or rule.zone_kind == zone_kind)
        and (rule.zone_id is None or rule.zone_id == zone_id)
        and (rule.site_id is None or rule.site_id == site_id)
    )


def _describe(rule: RoutingRule) -> str:
    matchers = {
        "kind": rule.kind,
        "zone_kind": rule.zone_kind,
        "zone_id": rule.zone_id,
        "site_id": rule.site_id,
    }
    named = [f"{key}={value}" for key, value in matchers.items() if value is not None]
    return f" ({', '.join(named)})" if named else " (matches anything)"
