"""The catalogue of kinds: every violation kind and zone kind, declared once with its wire facts.

A zone kind is what an operator draws on a camera; its violation kind is what the edge reports
when the zone's rule fires. The two sides add their own facts by registration, keyed by these
enums: the edge how it runs each rule (edge/kinds.py), the server each violation kind's default
route, Open311 service and camera verification (dispatch/kinds.py). tests/unit/test_kinds.py
proves every kind is complete on every side; docs/kinds.md shows how to add one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TypeVar

# The enums carry no docstrings: pydantic would write them into the published JSON Schemas.


class ViolationKind(StrEnum):
    ILLEGAL_PARKING = "illegal_parking"
    FIRE_LANE_BLOCKING = "fire_lane_blocking"
    ILLEGAL_STRUCTURE = "illegal_structure"
    # Resident categories: reported by people, never by a camera (no zone kind reports them).
    NOISE = "noise"
    GARBAGE = "garbage"
    BROKEN_LIGHTING = "broken_lighting"
    WATER_LEAK = "water_leak"
    EBIKE_CHARGING = "ebike_charging"  # e-bikes charged in a corridor or stairwell
    NEIGHBOUR_DISPUTE = "neighbour_dispute"

    @property
    def label_key(self) -> str:
        """The key of its display name in every locale file (``kind.illegal_parking``)."""
        return f"kind.{self.value}"


class ZoneKind(StrEnum):
    NO_PARKING = "no_parking"
    FIRE_LANE = "fire_lane"
    NO_BUILD = "no_build"  # compared against a registered baseline for new structures

    @property
    def violation_kind(self) -> ViolationKind:
        return ZONE_KINDS[self].violation_kind

    @property
    def edge_rule(self) -> EdgeRule:
        return ZONE_KINDS[self].edge_rule

    @property
    def default_classes(self) -> tuple[str, ...]:
        return ZONE_KINDS[self].default_classes


class EdgeRule(StrEnum):
    """How the edge decides that a zone holds a violation; the edge registers how each runs."""

    DWELL = "dwell"  # a detected object stays past the zone's dwell
    BLOCKED_LANE = "blocked_lane"  # dwell, plus anything stationary and the share blocked
    STRUCTURE = "structure"  # something new against the zone's registered baseline view


STATIONARY_OBJECT = "stationary_object"
"""What the edge's class-agnostic path calls a thing that stopped in a lane: no detector class."""


@dataclass(frozen=True, slots=True)
class ZoneKindFacts:
    """Everything both sides agree on about one zone kind."""

    violation_kind: ViolationKind
    edge_rule: EdgeRule
    default_classes: tuple[str, ...]
    """Detector class names the zone watches unless it lists its own."""


# Default classes are COCO's; on fire lanes anything stationary counts too (stacked goods,
# carts, e-bikes the detector misses). Structures are found by comparing views, not detections.
ZONE_KINDS: Mapping[ZoneKind, ZoneKindFacts] = MappingProxyType(
    {
        ZoneKind.NO_PARKING: ZoneKindFacts(
            ViolationKind.ILLEGAL_PARKING, EdgeRule.DWELL, ("car", "truck", "bus")
        ),
        ZoneKind.FIRE_LANE: ZoneKindFacts(
            ViolationKind.FIRE_LANE_BLOCKING,
            EdgeRule.BLOCKED_LANE,
            ("car", "truck", "bus", "motorcycle", "bicycle", STATIONARY_OBJECT),
        ),
        ZoneKind.NO_BUILD: ZoneKindFacts(ViolationKind.ILLEGAL_STRUCTURE, EdgeRule.STRUCTURE, ()),
    }
)


KindT = TypeVar("KindT", bound=StrEnum)


class IncompleteKindsError(RuntimeError):
    """A kind some side has not registered: raised when that side's module is imported."""


def require_every_kind(
    registered: Mapping[KindT, object], kinds: type[KindT], registry: str
) -> None:
    """Refuse a registry that misses a member of ``kinds`` (or holds something else).

    Each side calls this on its own registry as it is imported, so a kind added without its
    registration stops the program at start, never halfway through handling an event.
    """
    missing = [kind.value for kind in kinds if kind not in registered]
    strangers = [str(key) for key in registered if not isinstance(key, kinds)]
    problems = [f"no entry for {kinds.__name__} {', '.join(missing)}"] if missing else []
    if strangers:
        problems.append(f"keys that are no {kinds.__name__}: {', '.join(strangers)}")
    if problems:
        raise IncompleteKindsError(f"{registry}: {'; '.join(problems)} (see docs/kinds.md)")


CAMERA_KINDS: frozenset[ViolationKind] = frozenset(
    facts.violation_kind for facts in ZONE_KINDS.values()
)
"""The kinds some zone kind reports: a camera can see them. Every kind is a resident category."""
RESIDENT_ONLY_KINDS: frozenset[ViolationKind] = frozenset(ViolationKind) - CAMERA_KINDS
"""The kinds only people report: an edge event claiming one is refused by ingest."""


def zone_kinds_of(kind: ViolationKind) -> tuple[ZoneKind, ...]:
    """The zone kinds whose rule reports ``kind``."""
    return tuple(zone for zone, facts in ZONE_KINDS.items() if facts.violation_kind is kind)


require_every_kind(ZONE_KINDS, ZoneKind, "contracts.kinds.ZONE_KINDS")
