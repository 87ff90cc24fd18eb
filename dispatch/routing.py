"""Which department gets a new case, at what tier, priority and SLA, and when it is due."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from contracts.events import ViolationKind
from contracts.sites import SiteRegistry, ZoneKind
from dispatch.calendar import WorkingCalendar
from dispatch.config import (
    DeadlineClock,
    Department,
    Route,
    RoutingRule,
    RoutingSettings,
    Tier,
)
from dispatch.kinds import DEFAULT_ROUTES
from dispatch.workflow import Assignment
from storage.routing import OpenedCase, RouteDecision
from storage.tables import Case

DISPATCH_ACTOR = "dispatch"


class Router:
    """Matches the rule table. ``calendar`` counts working-clock deadlines; ``registry`` gives
    each site's time zone for time-of-day rules (else the calendar's zone applies)."""

    def __init__(
        self,
        settings: RoutingSettings,
        calendar: WorkingCalendar | None = None,
        registry: SiteRegistry | None = None,
    ) -> None:
        self._rules = settings.rules
        self.calendar = calendar or WorkingCalendar()
        self._site_zones: dict[str, ZoneInfo] = {}
        for site in registry.sites if registry is not None else ():
            try:
                self._site_zones[site.id] = ZoneInfo(site.timezone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"site {site.id}: unknown time zone {site.timezone!r}") from exc

    def site_zone(self, site_id: str) -> ZoneInfo:
        return self._site_zones.get(site_id, self.calendar.zone)

    def route(
        self,
        kind: str,
        zone_kind: str,
        zone_id: str,
        site_id: str,
        at: datetime | None = None,
    ) -> Route:
        """The route of a case; ``at`` (when it was seen) is needed for time-of-day rules, which
        never match without it."""
        return self._match(kind, zone_kind, zone_id, site_id, at)[0]

    def route_for_department(
        self,
        department: Department,
        kind: str,
        zone_kind: str,
        zone_id: str,
        site_id: str,
        at: datetime | None = None,
    ) -> Route:
        """The route a case takes once it is with ``department`` (a transfer, an escalation out
        of the community tier): the first matching rule for that department, else the kind's
        default if it names the department, else the case's own route sent there."""
        matcher = (ViolationKind(kind), ZoneKind(zone_kind), zone_id, site_id)
        local = self._local_time(site_id, at)
        for rule in self._rules:
            if rule.department == department and _matches(rule, *matcher, local):
                return rule
        default = DEFAULT_ROUTES[ViolationKind(kind)]
        if default.department == department:
            return default
        own = self.route(kind, zone_kind, zone_id, site_id, at)
        return Route(
            department=department,
            tier=Tier.DEPARTMENT,
            priority=own.priority,
            ack_minutes=own.ack_minutes,
            sla_minutes=own.sla_minutes,
            clock=own.clock,
        )

    def after(self, clock: DeadlineClock, start: datetime, minutes: float) -> datetime:
        """``minutes`` after ``start`` on ``clock``."""
        if clock is DeadlineClock.WORKING:
            return self.calendar.add_working_minutes(start, minutes)
        return start + timedelta(minutes=minutes)

    def assignment(self, case: Case, department: Department, start: datetime) -> Assignment:
        """The Workflow's reroute hook: ``case``'s route once with ``department``, due from
        ``start`` (a dispatch, a transfer, the community tier running out of time)."""
        route = self.route_for_department(
            department, case.kind, case.zone_kind, case.zone_id, case.site_id, case.opened_at
        )
        ack_due_at, sla_due_at = self.deadlines(route, start)
        community = route.tier is Tier.COMMUNITY and route.escalate_to is not None
        return Assignment(
            tier=route.tier.value,
            priority=route.priority.value,
            ack_due_at=ack_due_at,
            sla_due_at=sla_due_at,
            escalate_to=route.escalate_to.value if community and route.escalate_to else None,
        )

    def deadlines(self, route: Route, start: datetime) -> tuple[datetime, datetime]:
        """(acknowledge by, resolve by) for a case on ``route`` whose clock starts at ``start``."""
        return (
            self.after(route.clock, start, route.ack_minutes),
            self.after(route.clock, start, route.sla_minutes),
        )

    def dispatch_new_cases(self, cases: Sequence[OpenedCase]) -> list[RouteDecision]:
        """The router ingest calls with the cases a batch opens: one decision per case, which
        ingest writes as the case's dispatch. Time of day is when the camera saw it; the SLA
        clock starts when ingest received it."""
        decisions = []
        for case in cases:
            route, why, facts = self._match(
                case.kind, case.zone_kind, case.zone_id, case.site_id, case.opened_at
            )
            ack_due_at, sla_due_at = self.deadlines(route, case.received_at)
            decisions.append(
                RouteDecision(
                    department=route.department.value,
                    tier=route.tier.value,
                    priority=route.priority.value,
                    ack_due_at=ack_due_at,
                    sla_due_at=sla_due_at,
                    escalate_to=route.escalate_to.value if route.escalate_to else None,
                    actor=DISPATCH_ACTOR,
                    reason=f"{why}: {describe_route(route)}",
                    detail=facts | route_facts(route),
                )
            )
        return decisions

    def _match(
        self, kind: str, zone_kind: str, zone_id: str, site_id: str, at: datetime | None
    ) -> tuple[Route, str, dict[str, object]]:
        """The first matching rule, else the default for the kind; with the audit text of which
        and the same as facts (the timeline tells them in the page's language)."""
        matcher = (ViolationKind(kind), ZoneKind(zone_kind), zone_id, site_id)
        local = self._local_time(site_id, at)
        for number, rule in enumerate(self._rules, start=1):
            if _matches(rule, *matcher, local):
                facts: dict[str, object] = {
                    "why": "routing_rule",
                    "rule": number,
                    "match": _matchers(rule),
                }
                return rule, f"routing rule #{number}{_describe(rule)}", facts
        default: dict[str, object] = {"why": "default_route", "kind": kind}
        return DEFAULT_ROUTES[ViolationKind(kind)], f"default route for {kind}", default

    def _local_time(self, site_id: str, at: datetime | None) -> datetime | None:
        return None if at is None else at.astimezone(self.site_zone(site_id))


def describe_route(route: Route) -> str:
    """The audit-trail text of a route: department, tier, priority and SLA."""
    clock = " working" if route.clock is DeadlineClock.WORKING else ""
    return f"{route.department}, {route.tier}, {route.priority}, SLA {route.sla_minutes}{clock} min"


def route_facts(route: Route) -> dict[str, object]:
    """The route as facts for the transition's detail: what ``describe_route`` says in prose."""
    return {
        "department": route.department.value,
        "tier": route.tier.value,
        "priority": route.priority.value,
        "sla_minutes": route.sla_minutes,
        "clock": route.clock.value,
    }


def _matches(
    rule: RoutingRule,
    kind: ViolationKind,
    zone_kind: ZoneKind,
    zone_id: str,
    site_id: str,
    local: datetime | None,
) -> bool:
    return (
        (rule.kind is None or rule.kind == kind)
        and (rule.zone_kind is None or rule.zone_kind == zone_kind)
        and (rule.zone_id is None or rule.zone_id == zone_id)
        and (rule.site_id is None or rule.site_id == site_id)
        and (rule.hours is None or (local is not None and rule.hours.contains(local.time())))
    )


def _matchers(rule: RoutingRule) -> dict[str, str]:
    """What a rule matches on, as text, in a fixed order (absent: matches anything)."""
    matchers = {
        "kind": rule.kind,
        "zone_kind": rule.zone_kind,
        "zone_id": rule.zone_id,
        "site_id": rule.site_id,
        "hours": f"{rule.hours.start:%H:%M}-{rule.hours.end:%H:%M}" if rule.hours else None,
    }
    return {key: str(value) for key, value in matchers.items() if value is not None}


def _describe(rule: RoutingRule) -> str:
    named = [f"{key}={value}" for key, value in _matchers(rule).items()]
    return f" ({', '.join(named)})" if named else " (matches anything)"
