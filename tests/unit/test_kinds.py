"""Every kind is complete on every side; a new kind needs only the four files docs/kinds.md names.

The catalogue (contracts.kinds) declares each kind once; the edge (edge.kinds), the server
(dispatch.kinds) and both locale files add their facts. ``completeness_problems`` lists what
any side lacks; the second half adds a kind to a copy of the sources, exactly as docs/kinds.md
shows, and watches it flow through routing, Open311, verification and the labels.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

import pytest

from contracts.events import ViolationKind
from contracts.kinds import (
    CAMERA_KINDS,
    RESIDENT_ONLY_KINDS,
    ZONE_KINDS,
    EdgeRule,
    IncompleteKindsError,
    ZoneKind,
    require_every_kind,
    zone_kinds_of,
)
from contracts.sites import ZoneConfig
from dispatch.config import Department, Tier
from dispatch.kinds import DEFAULT_ROUTES, DISPATCH_KINDS, VERIFIED_KINDS, DispatchKind
from dispatch.web.i18n import LANGUAGES, LOCALES_DIR, load_catalogue
from edge.kinds import EDGE_RULES, rule_parts

REPO = Path(__file__).resolve().parents[2]
SQUARE = [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]]


def completeness_problems(locales: Path = LOCALES_DIR) -> list[str]:
    """What any side lacks for any kind; empty when every kind is complete everywhere."""
    problems: list[str] = []
    for zone_kind in ZoneKind:
        if zone_kind not in ZONE_KINDS:
            problems.append(f"zone kind {zone_kind}: no facts in contracts.kinds.ZONE_KINDS")
            continue
        parts = EDGE_RULES.get(zone_kind.edge_rule)
        if parts is None:
            problems.append(f"zone kind {zone_kind}: edge rule {zone_kind.edge_rule} unregistered")
        elif not (parts.dwell or parts.stationary or parts.structures):
            problems.append(f"edge rule {zone_kind.edge_rule} runs nothing")
        detects = parts is not None and (parts.dwell or parts.stationary)
        if detects and not zone_kind.default_classes:
            problems.append(f"zone kind {zone_kind}: a detecting rule but no default classes")
    catalogues = {language: load_catalogue(language, locales) for language in LANGUAGES}
    for kind in ViolationKind:
        registered = DISPATCH_KINDS.get(kind)
        if registered is None:
            problems.append(f"{kind}: no entry in dispatch.kinds.DISPATCH_KINDS")
        else:
            service = registered.service
            if not all((service.name, service.description, service.keywords, service.group)):
                problems.append(f"{kind}: an Open311 service with an empty field")
            zones = zone_kinds_of(kind)  # none: a resident category no camera sees
            watched = bool(zones) and all(rule_parts(zone).dwell for zone in zones)
            if registered.camera_verifies and not watched:
                # Camera verification reads the occupants of dwell-rule zones.
                problems.append(f"{kind}: verified by camera, but no rule watches its occupants")
        for language, messages in catalogues.items():
            if not messages.get(kind.label_key):
                problems.append(f"{kind}: no label {kind.label_key} in {language}.yaml")
    return problems


def test_every_kind_is_complete_on_every_side() -> None:
    assert completeness_problems() == []


def test_a_missing_label_is_found(tmp_path: Path) -> None:
    for language in LANGUAGES:
        shutil.copytree(LOCALES_DIR / language, tmp_path / language)  # the areas' files
        text = (LOCALES_DIR / f"{language}.yaml").read_text(encoding="utf-8")
        kept = [line for line in text.splitlines() if not line.startswith("  illegal_structure:")]
        (tmp_path / f"{language}.yaml").write_text("\n".join(kept) + "\n", encoding="utf-8")
    assert completeness_problems(tmp_path) == [
        f"illegal_structure: no label kind.illegal_structure in {language}.yaml"
        for language in LANGUAGES
    ]


@pytest.mark.parametrize(
    ("registry", "kinds"),
    [(ZONE_KINDS, ZoneKind), (EDGE_RULES, EdgeRule), (DISPATCH_KINDS, ViolationKind)],
    ids=["contracts", "edge", "dispatch"],
)
def test_a_registry_missing_a_kind_is_refused(
    registry: Mapping[StrEnum, object], kinds: type[StrEnum]
) -> None:
    first = next(iter(kinds))
    require_every_kind(registry, kinds, "complete")
    without = {key: value for key, value in registry.items() if key is not first}
    with pytest.raises(
        IncompleteKindsError, match=f"incomplete: no entry for {kinds.__name__} {first.value} "
    ):
        require_every_kind(without, kinds, "incomplete")


def test_the_registries_hold_todays_facts() -> None:
    """The move into the catalogue changed nothing: the facts the server and edge used before."""
    assert {zone: zone.violation_kind for zone in ZoneKind} == {
        ZoneKind.NO_PARKING: ViolationKind.ILLEGAL_PARKING,
        ZoneKind.FIRE_LANE: ViolationKind.FIRE_LANE_BLOCKING,
        ZoneKind.NO_BUILD: ViolationKind.ILLEGAL_STRUCTURE,
    }
    assert ZoneConfig(id="z", kind=ZoneKind.NO_PARKING, polygon=SQUARE).watched_classes == (
        "car",
        "truck",
        "bus",
    )
    assert [zone for zone in ZoneKind if rule_parts(zone).dwell] == [
        ZoneKind.NO_PARKING,
        ZoneKind.FIRE_LANE,
    ]
    assert [zone for zone in ZoneKind if rule_parts(zone).stationary] == [ZoneKind.FIRE_LANE]
    assert [zone for zone in ZoneKind if rule_parts(zone).structures] == [ZoneKind.NO_BUILD]
    assert {ViolationKind.ILLEGAL_PARKING, ViolationKind.FIRE_LANE_BLOCKING} == VERIFIED_KINDS
    assert set(DEFAULT_ROUTES) == set(ViolationKind)


# -- a new kind, added as docs/kinds.md shows ---------------------------------------------

# (file, the line to insert after, the lines to insert): the worked example of docs/kinds.md.
NEW_KIND_EDITS: list[tuple[str, str, str]] = [
    (
        "contracts/kinds.py",
        '    ILLEGAL_STRUCTURE = "illegal_structure"\n',
        '    STAIRWELL_BLOCKING = "stairwell_blocking"\n',
    ),
    (
        "contracts/kinds.py",
        '    NO_BUILD = "no_build"',
        '    STAIRWELL = "stairwell"  # a residential building\'s stairwell or corridor\n',
    ),
    (
        "contracts/kinds.py",
        "ZONE_KINDS: Mapping[ZoneKind, ZoneKindFacts] = MappingProxyType(\n    {\n",
        """\
        ZoneKind.STAIRWELL: ZoneKindFacts(
            ViolationKind.STAIRWELL_BLOCKING,
            EdgeRule.BLOCKED_LANE,
            ("bicycle", "motorcycle", STATIONARY_OBJECT),
        ),
""",
    ),
    (
        "dispatch/kinds.py",
        "DISPATCH_KINDS: Mapping[ViolationKind, DispatchKind] = MappingProxyType(\n    {\n",
        """\
        ViolationKind.STAIRWELL_BLOCKING: DispatchKind(
            default_route=Route(
                department=Department.PROPERTY_MANAGEMENT,
                priority=Priority.HIGH,
                ack_minutes=30,
                sla_minutes=240,
            ),
            service=ServiceListing(
                "堵塞楼梯间",
                "楼梯间、楼道内堆放杂物或停放车辆",
                "楼梯间,楼道,堆物",
                "消防安全",
            ),
            camera_verifies=True,
        ),
""",
    ),
    (
        "dispatch/web/locales/en.yaml",
        "\nkind:\n  illegal_parking:",
        "  stairwell_blocking: Stairwell blocked\n",
    ),
    (
        "dispatch/web/locales/zh-CN.yaml",
        "\nkind:\n  illegal_parking:",
        "  stairwell_blocking: 楼梯间堵塞\n",
    ),
]

# Runs in the copy: the new kind flows through every side.
FLOW_THROUGH = """
import sys
from pathlib import Path

import contracts.kinds
from contracts.events import ViolationKind
from contracts.sites import ZoneConfig, ZoneKind
from dispatch.config import Department, Priority, RoutingSettings
from dispatch.kinds import DISPATCH_KINDS, VERIFIED_KINDS
from dispatch.routing import Router
from dispatch.web.i18n import load_catalogue
from edge.kinds import rule_parts
from kinds_check import completeness_problems

copy = Path(sys.argv[1])
assert Path(contracts.kinds.__file__).is_relative_to(copy), contracts.kinds.__file__
stairwell = ZoneConfig(id="stair-3", kind="stairwell", polygon=[[0, 0], [9, 0], [9, 9]])
kind = stairwell.kind.violation_kind
assert kind is ViolationKind("stairwell_blocking")
assert stairwell.watched_classes == ("bicycle", "motorcycle", "stationary_object")
assert rule_parts(ZoneKind.STAIRWELL).stationary
route = Router(RoutingSettings()).route(kind, stairwell.kind, stairwell.id, "estate")
assert (route.department, route.priority) == (Department.PROPERTY_MANAGEMENT, Priority.HIGH)
assert DISPATCH_KINDS[kind].service.name == "堵塞楼梯间"
assert kind in VERIFIED_KINDS
folder = copy / "dispatch" / "web" / "locales"
assert load_catalogue("en", folder)[kind.label_key] == "Stairwell blocked"
assert completeness_problems(folder) == [], completeness_problems(folder)
print("flowed through")
"""


def _copy_with_new_kind(copy: Path) -> set[str]:
    """The sources, with the new kind added; returns the files it changed."""
    for package in ("contracts", "edge", "dispatch", "storage"):
        shutil.copytree(
            REPO / package, copy / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(Path(__file__), copy / "kinds_check.py")
    for name, anchor, addition in NEW_KIND_EDITS:
        path = copy / name
        text = path.read_text(encoding="utf-8")
        assert text.count(anchor) == 1, f"{name}: update the worked example: {anchor!r}"
        end = text.index("\n", text.index(anchor) + len(anchor) - 1) + 1  # after its line
        path.write_text(text[:end] + addition + text[end:], encoding="utf-8")
    return {name for name, _, _ in NEW_KIND_EDITS}


def test_a_new_kind_touches_four_files_and_flows_through(tmp_path: Path) -> None:
    changed = _copy_with_new_kind(tmp_path)
    assert len(changed) == 4
    run = subprocess.run(
        [sys.executable, "-c", FLOW_THROUGH, str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "flowed through"


def test_a_new_kind_without_its_dispatch_entry_stops_the_import(tmp_path: Path) -> None:
    _copy_with_new_kind(tmp_path)
    dispatch_kinds = tmp_path / "dispatch" / "kinds.py"
    text = dispatch_kinds.read_text(encoding="utf-8")
    entry = next(addition for name, _, addition in NEW_KIND_EDITS if name == "dispatch/kinds.py")
    dispatch_kinds.write_text(text.replace(entry, ""), encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-c", "import dispatch.routing"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode != 0
    assert "IncompleteKindsError: dispatch.kinds.DISPATCH_KINDS: no entry for ViolationKind " in (
        run.stderr
    )
    assert "stairwell_blocking" in run.stderr


# -- resident categories -------------------------------------------------------------------

RESIDENT_CATEGORIES = {
    "noise",
    "garbage",
    "broken_lighting",
    "water_leak",
    "ebike_charging",
    "neighbour_dispute",
}


def test_resident_categories_are_kinds_no_camera_reports() -> None:
    assert {kind.value for kind in RESIDENT_ONLY_KINDS} == RESIDENT_CATEGORIES
    assert {zone.violation_kind for zone in ZoneKind} == CAMERA_KINDS
    assert not CAMERA_KINDS & RESIDENT_ONLY_KINDS
    for kind in RESIDENT_ONLY_KINDS:
        assert zone_kinds_of(kind) == ()
        assert kind not in VERIFIED_KINDS  # no camera can re-check what it never saw


def test_a_resident_category_verified_by_camera_is_a_problem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tests.unit.test_kinds as this

    entry = DISPATCH_KINDS[ViolationKind.NOISE]
    forged = dict(DISPATCH_KINDS)
    forged[ViolationKind.NOISE] = DispatchKind(entry.default_route, entry.service, True)
    monkeypatch.setattr(this, "DISPATCH_KINDS", forged)
    assert completeness_problems() == [
        "noise: verified by camera, but no rule watches its occupants"
    ]


def test_a_camera_event_claiming_a_resident_category_is_refused() -> None:
    # Imported here: this module is copied, alone, into the worked example's source tree.
    from contracts.topics import violation_topic
    from ingest.validation import Refusal, RefusalReason, parse_violation
    from tests.factories import CAMERA, GATEWAY, SITE, EventFactory, make_registry

    document = json.loads(EventFactory().event().to_wire())
    document["kind"] = ViolationKind.EBIKE_CHARGING.value
    with pytest.raises(Refusal) as caught:
        parse_violation(
            violation_topic(SITE, GATEWAY, CAMERA),
            json.dumps(document).encode(),
            make_registry(),
            256 * 1024,
        )
    assert caught.value.reason is RefusalReason.ZONE_KIND
    assert "ebike_charging" in caught.value.detail


def test_resident_routes_follow_the_tiers() -> None:
    """docs/residents.md's table: safety to a department, shared upkeep to the community tier
    (property management, escalating to law enforcement), neighbours to the household tier."""
    routes = {kind.value: DEFAULT_ROUTES[kind] for kind in RESIDENT_ONLY_KINDS}
    assert {kind: (r.department, r.tier, r.escalate_to) for kind, r in routes.items()} == {
        "noise": (Department.PUBLIC_SECURITY, Tier.DEPARTMENT, None),
        "ebike_charging": (Department.FIRE_RESCUE, Tier.DEPARTMENT, None),
        "garbage": (Department.PROPERTY_MANAGEMENT, Tier.COMMUNITY, Department.LAW_ENFORCEMENT),
        "broken_lighting": (
            Department.PROPERTY_MANAGEMENT,
            Tier.COMMUNITY,
            Department.LAW_ENFORCEMENT,
        ),
        "water_leak": (
            Department.PROPERTY_MANAGEMENT,
            Tier.COMMUNITY,
            Department.LAW_ENFORCEMENT,
        ),
        "neighbour_dispute": (
            Department.PROPERTY_MANAGEMENT,
            Tier.HOUSEHOLD,
            Department.PUBLIC_SECURITY,
        ),
    }
