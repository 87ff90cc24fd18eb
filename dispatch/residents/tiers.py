"""Which tier a report-born case gets, and the route it takes in that tier.

The tier rule table (``server.residents.tier_rules``) is matched first: category, site, hours
and weekday of the report in the site's time zone; the first match wins, else the category's
default route's tier. The route then comes from the routing rules (those that name no zone or
zone kind: a report has neither) or the category's default route, bent to the tier:

- department (大事派单): a community route goes to its ``escalate_to`` department;
- community (小事协商): property management first, the route's department as ``escalate_to``;
- household (私事自治): no department owns it; ``escalate_to`` says who takes it if mediation
  fails too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from contracts.kinds import ViolationKind
from contracts.sites import SiteRegistry
from dispatch.calendar import WorkingCalendar
from dispatch.config import Department, Route, RoutingRule, RoutingSettings, Tier, TierRule
from dispatch.kinds import DEFAULT_ROUTES
from dispatch.routing import Router

COMMUNITY_DEPARTMENT = Department.PROPERTY_MANAGEMENT
# Who takes a community matter over when property management's own route names nobody.
FALLBACK_ESCALATION = Department.LAW_ENFORCEMENT


def tier_for(
    rules: Sequence[TierRule], kind: ViolationKind, site_id: str, local: datetime
) -> tuple[Tier, dict[str, object]]:
    """The tier of a new report-born case reported at ``local`` (the site's local time), with
    the audit facts of why (the rule's number, or the default)."""
    for number, rule in enumerate(rules, start=1):
        if (
            (rule.categories is None or kind in rule.categories)
            and (rule.sites is None or site_id in rule.sites)
            and (rule.hours is None or rule.hours.contains(local.time().replace(tzinfo=None)))
            and (rule.weekdays is None or local.isoweekday() in rule.weekdays)
        ):
            return rule.tier, {"why": "tier_rule", "rule": number, "tier": rule.tier.value}
    tier = DEFAULT_ROUTES[kind].tier
    return tier, {"why": "default_tier", "kind": kind.value, "tier": tier.value}


def route_for_report(
    rules: Sequence[RoutingRule],
    kind: ViolationKind,
    site_id: str,
    local: datetime,
    tier: Tier,
) -> tuple[Route, dict[str, object]]:
    """The route of a report-born case in ``tier``, with the audit facts of which rule."""
    base: Route = DEFAULT_ROUTES[kind]
    facts: dict[str, object] = {"why": "default_route", "kind": kind.value}
    for number, rule in enumerate(rules, start=1):
        # A rule naming a zone or zone kind is about a camera's place: a report has neither.
        if _report_rule_matches(rule, kind, site_id, local):
            base, facts = rule, {"why": "routing_rule", "rule": number}
            break
    return in_tier(base, tier), facts


def in_tier(route: Route, tier: Tier) -> Route:
    """``route`` bent to ``tier`` (the module's docstring says how)."""
    if route.tier is tier:
        return _plain(route)
    terms = {
        "priority": route.priority,
        "ack_minutes": route.ack_minutes,
        "sla_minutes": route.sla_minutes,
        "clock": route.clock,
    }
    if tier is Tier.DEPARTMENT:
        department = route.escalate_to if route.tier is Tier.COMMUNITY else None
        return Route(department=department or route.department, tier=tier, **terms)
    if tier is Tier.COMMUNITY:
        return community_route(route)
    return Route(
        department=route.department,
        tier=Tier.HOUSEHOLD,
        escalate_to=route.escalate_to or _other_than(route.department),
        **terms,
    )


def community_route(route: Route) -> Route:
    """``route`` as a community-tier route: property management and the council first, the
    route's department (or its own escalation) when the consultation runs out. R4's mediation
    request turns a household case into this."""
    if route.tier is Tier.COMMUNITY:
        return _plain(route)
    if route.department is not COMMUNITY_DEPARTMENT:
        escalate_to = route.department
    else:
        escalate_to = route.escalate_to or FALLBACK_ESCALATION
    return Route(
        department=COMMUNITY_DEPARTMENT,
        tier=Tier.COMMUNITY,
        escalate_to=escalate_to,
        priority=route.priority,
        ack_minutes=route.ack_minutes,
        sla_minutes=route.sla_minutes,
        clock=route.clock,
    )


def _plain(route: Route) -> Route:
    """A routing rule's terms without its matchers."""
    return Route.model_validate(route.model_dump(include=set(Route.model_fields)))


def _other_than(department: Department) -> Department:
    return FALLBACK_ESCALATION if department is not FALLBACK_ESCALATION else COMMUNITY_DEPARTMENT


def _report_rule_matches(
    rule: RoutingRule, kind: ViolationKind, site_id: str, local: datetime | None
) -> bool:
    """A routing rule matching a report: none naming a zone or zone kind (a camera's place);
    a time-of-day rule never matches without a time, as in the Router."""
    return (
        rule.zone_kind is None
        and rule.zone_id is None
        and (rule.kind is None or rule.kind == kind)
        and (rule.site_id is None or rule.site_id == site_id)
        and (
            rule.hours is None
            or (local is not None and rule.hours.contains(local.time().replace(tzinfo=None)))
        )
    )


def report_route_for_department(
    rules: Sequence[RoutingRule],
    department: Department,
    kind: ViolationKind,
    site_id: str,
    local: datetime | None,
) -> Route:
    """A report-born case's route once with ``department`` (a transfer, the community tier
    running out): as Router.route_for_department, for a case without a zone."""
    for rule in rules:
        if rule.department == department and _report_rule_matches(rule, kind, site_id, local):
            return _plain(rule)
    default = DEFAULT_ROUTES[kind]
    if default.department == department and default.tier is not Tier.HOUSEHOLD:
        return _plain(default)
    own = in_tier(default, Tier.DEPARTMENT)
    return Route(
        department=department,
        tier=Tier.DEPARTMENT,
        priority=own.priority,
        ack_minutes=own.ack_minutes,
        sla_minutes=own.sla_minutes,
        clock=own.clock,
    )


class ResidentAwareRouter(Router):
    """The Router, also for cases no camera saw. The Router matches a case's zone kind, which a
    report-born case has none of (an empty string); the workflow (transfers), the SLA sweep
    (escalation clocks, community-tier transfers) and the console all ask it about such cases.
    Camera cases go to the Router unchanged; report-born ones through the functions above."""

    def __init__(
        self,
        settings: RoutingSettings,
        calendar: WorkingCalendar | None = None,
        registry: SiteRegistry | None = None,
    ) -> None:
        super().__init__(settings, calendar, registry)
        self._report_rules = list(settings.rules)

    def _local(self, site_id: str, at: datetime | None) -> datetime | None:
        return None if at is None else at.astimezone(self.site_zone(site_id))

    def route(
        self,
        kind: str,
        zone_kind: str,
        zone_id: str,
        site_id: str,
        at: datetime | None = None,
    ) -> Route:
        if zone_kind:
            return super().route(kind, zone_kind, zone_id, site_id, at)
        violation = ViolationKind(kind)
        local = self._local(site_id, at)
        for rule in self._report_rules:
            if _report_rule_matches(rule, violation, site_id, local):
                return _plain(rule)
        return DEFAULT_ROUTES[violation]

    def route_for_department(
        self,
        department: Department,
        kind: str,
        zone_kind: str,
        zone_id: str,
        site_id: str,
        at: datetime | None = None,
    ) -> Route:
        if zone_kind:
            return super().route_for_department(department, kind, zone_kind, zone_id, site_id, at)
        return report_route_for_department(
            self._report_rules, department, ViolationKind(kind), site_id, self._local(site_id, at)
        )
