"""Every kind is complete on every side; a new kind needs only the four files docs/kinds.md names.

The catalogue (contracts.kinds) declares each kind once; the edge (edge.kinds), the server
(dispatch.kinds) and both locale files add their facts. ``completeness_problems`` lists what
any side lacks; the second half adds a kind to a copy of the sources, exactly as docs/kinds.md
shows, and watches it flow through routing, Open311, verification and the labels.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

import pytest

from contracts.events import ViolationKind
from contracts.kinds import (
    ZONE_KINDS,
    EdgeRule,
    IncompleteKindsError,
    ZoneKind,
    require_every_kind,
    zone_kinds_of,
)
from contracts.sites import ZoneConfig
from dispatch.kinds import DEFAULT_ROUTES, DISPATCH_KINDS, VERIFIED_KINDS
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
        if not zone_kinds_of(kind):
            problems.append(f"{kind}: no zone kind reports it")
        registered = DISPATCH_KINDS.get(kind)
        if registered is None:
            problems.append(f"{kind}: no entry in dispatch.kinds.DISPATCH_KINDS")
        else:
            service = registered.service
            if not all((service.name, service.description, service.keywords, service.group)):
                problems.append(f"{kind}: an Open311 service with an empty field")
            watched = all(rule_parts(zone).dwell for zone in zone_kinds_of(kind))
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
        '    EBIKE_CHARGING = "ebike_charging"\n',
    ),
    (
        "contracts/kinds.py",
        '    NO_BUILD = "no_build"',
        '    CORRIDOR = "corridor"  # a residential building\'s corridor or stairwell\n',
    ),
    (
        "contracts/kinds.py",
        "ZONE_KINDS: Mapping[ZoneKind, ZoneKindFacts] = MappingProxyType(\n    {\n",
        """\
        ZoneKind.CORRIDOR: ZoneKindFacts(
            ViolationKind.EBIKE_CHARGING,
            EdgeRule.BLOCKED_LANE,
            ("bicycle", "motorcycle", STATIONARY_OBJECT),
        ),
""",
    ),
    (
        "dispatch/kinds.py",
        "DISPATCH_KINDS: Mapping[ViolationKind, DispatchKind] = MappingProxyType(\n    {\n",
        """\
        ViolationKind.EBIKE_CHARGING: DispatchKind(
            default_route=Route(
                department=Department.PROPERTY_MANAGEMENT,
                priority=Priority.HIGH,
                ack_minutes=30,
                sla_minutes=240,
            ),
            service=ServiceListing(
                "楼道电动车充电",
                "楼道内停放电动自行车或私拉电线充电",
                "电动车,充电,楼道",
                "消防安全",
            ),
            camera_verifies=True,
        ),
""",
    ),
    (
        "dispatch/web/locales/en.yaml",
        "kind:\n",
        "  ebike_charging: E-bike charging indoors\n",
    ),
    ("dispatch/web/locales/zh-CN.yaml", "kind:\n", "  ebike_charging: 楼道电动车充电\n"),
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
corridor = ZoneConfig(id="stair-3", kind="corridor", polygon=[[0, 0], [9, 0], [9, 9]])
kind = corridor.kind.violation_kind
assert kind is ViolationKind("ebike_charging")
assert corridor.watched_classes == ("bicycle", "motorcycle", "stationary_object")
assert rule_parts(ZoneKind.CORRIDOR).stationary
route = Router(RoutingSettings()).route(kind, corridor.kind, corridor.id, "estate")
assert (route.department, route.priority) == (Department.PROPERTY_MANAGEMENT, Priority.HIGH)
assert DISPATCH_KINDS[kind].service.name == "楼道电动车充电"
assert kind in VERIFIED_KINDS
folder = copy / "dispatch" / "web" / "locales"
assert load_catalogue("en", folder)[kind.label_key] == "E-bike charging indoors"
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
    assert "ebike_charging" in run.stderr
