"""How the edge runs each rule the kinds catalogue names (contracts.kinds.EdgeRule).

The catalogue says which rule watches each zone kind; this registers what a camera pipeline
builds for each rule, so a new zone kind on an existing rule needs nothing here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from contracts.kinds import EdgeRule, ZoneKind, require_every_kind


@dataclass(frozen=True, slots=True)
class RuleParts:
    """The parts of a camera pipeline that one rule's zones run through."""

    dwell: bool = False
    """Tracked detector objects through the dwell rule."""
    stationary: bool = False
    """The class-agnostic stationary-foreground path, and the share of the zone blocked."""
    structures: bool = False
    """The structure watch against the zone's registered baseline."""


EDGE_RULES: Mapping[EdgeRule, RuleParts] = MappingProxyType(
    {
        EdgeRule.DWELL: RuleParts(dwell=True),
        EdgeRule.BLOCKED_LANE: RuleParts(dwell=True, stationary=True),
        EdgeRule.STRUCTURE: RuleParts(structures=True),
    }
)


def rule_parts(zone_kind: ZoneKind) -> RuleParts:
    """What the pipeline runs for a zone of ``zone_kind``."""
    return EDGE_RULES[zone_kind.edge_rule]


require_every_kind(EDGE_RULES, EdgeRule, "edge.kinds.EDGE_RULES")
