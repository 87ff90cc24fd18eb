"""The residents' vehicle registry as the gateways see it: plates only, never a name or phone.

The server holds the registry (dispatch/registry.py, table ``registry_vehicles``); both the rule
documents it signs for the gateways (dispatch/exemptions.py) and ingest's check of stored events
(ingest/exemption_check.py) add its plates to a site's rules with ``with_registry``:

- residents' plates: one site-wide ``allowlist`` (category ``resident``), id ``registry-resident``;
- service vehicles' plates: one site-wide ``allowlist`` (category ``service``), id
  ``registry-service``;
- family plates (a resident's family, 孝心车位): added to every family bay's ``family_plates``.

Their ``issued_at`` is the registry's newest change; they hold from ``REGISTRY_SINCE`` with no
end (an entry holds until it is deleted from the registry).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from contracts.exemptions import (
    MAX_PLATES,
    AllowlistCategory,
    AllowlistRule,
    FamilyBayRule,
    Rule,
)

REGISTRY_SINCE = datetime(2000, 1, 1, tzinfo=UTC)
RESIDENT_RULE_ID = "registry-resident"
SERVICE_RULE_ID = "registry-service"


@dataclass(frozen=True)
class RegistryPlates:
    """A site's registered plates by category, and the newest change (None: no entry)."""

    resident: tuple[str, ...] = ()
    service: tuple[str, ...] = ()
    family: tuple[str, ...] = ()
    changed_at: datetime | None = None

    @classmethod
    def of(cls, rows: Iterable[tuple[str, str, datetime]]) -> RegistryPlates:
        """From ``(plate, category, updated_at)`` rows; an unknown category is left out."""
        by: dict[str, list[str]] = {"resident": [], "service": [], "family": []}
        newest: datetime | None = None
        for plate, category, at in rows:
            if category in by:
                by[category].append(plate)
            newest = at if newest is None or at > newest else newest
        return cls(
            tuple(sorted(by["resident"])),
            tuple(sorted(by["service"])),
            tuple(sorted(by["family"])),
            newest,
        )


def with_registry(rules: list[Rule], plates: RegistryPlates, site_id: str) -> list[Rule]:
    """``rules`` with the registry's plates added (see the module's text); at most MAX_PLATES in
    each list (the registry refuses more entries than that on a site)."""
    out: list[Rule] = []
    for rule in rules:
        if isinstance(rule, FamilyBayRule) and plates.family:
            merged = sorted(set(rule.family_plates) | set(plates.family))[:MAX_PLATES]
            rule = FamilyBayRule.model_validate(rule.model_dump() | {"family_plates": merged})
        out.append(rule)
    return out + registry_allowlists(site_id, plates.resident, plates.service, plates.changed_at)


def registry_allowlists(
    site_id: str,
    resident: Sequence[str],
    service: Sequence[str],
    changed_at: datetime | None,
    *,
    checked: bool = False,
) -> list[Rule]:
    """The registry's two site-wide allowlists (resident, service), each only if it lists a
    plate; at most MAX_PLATES plates each. ``checked``: the plates were validated already (a
    gateway's parsed, signed set), so the rules are built without checking 10,000 plates
    again; the rules are the same either way."""
    issued = changed_at or REGISTRY_SINCE
    make = AllowlistRule.model_construct if checked else AllowlistRule
    return [
        make(
            id=rule_id,
            site_id=site_id,
            zone_id=None,
            valid_from=REGISTRY_SINCE,
            valid_to=None,
            reason=f"vehicle registry: {category.value}",
            issued_at=issued,
            type="allowlist",
            category=category,
            plates=_plates(listed, checked),
        )
        for rule_id, category, listed in (
            (RESIDENT_RULE_ID, AllowlistCategory.RESIDENT, resident),
            (SERVICE_RULE_ID, AllowlistCategory.SERVICE, service),
        )
        if listed
    ]


def _plates(listed: Sequence[str], checked: bool) -> list[str]:
    """At most MAX_PLATES plates as a list. A checked set's own list goes into its rule as it
    is, not copied (a gateway of a 10,000-plate site holds one list, not two): neither is ever
    changed in place (a patch edits copies, contracts.rule_signing.PlatesPart.patched)."""
    if checked and isinstance(listed, list) and len(listed) <= MAX_PLATES:
        return listed
    return list(listed[:MAX_PLATES])
