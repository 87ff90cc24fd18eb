"""Places: names, address, the point on the plan, navigation links, and WGS-84 -> GCJ-02."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from contracts.sites import PlanPosition, SiteRegistry
from dispatch.places import outside_china, place_of, wgs84_to_gcj02
from storage.tables import Case
from tests.factories import CAMERA, FIRE_LANE_ZONE, PARKING_ZONE, SITE, make_registry

# Published pairs (WGS-84 -> GCJ-02) from the eviltransform project's tests: Shanghai, Shenzhen,
# Beijing.
KNOWN_PAIRS = [
    ((31.1774276, 121.5272106), (31.17530398364597, 121.531541859215)),
    ((22.543847, 113.912316), (22.540796131694766, 113.9171764808363)),
    ((39.911954, 116.377817), (39.91334545536069, 116.38404722455657)),
]


@pytest.mark.parametrize(("wgs", "gcj"), KNOWN_PAIRS)
def test_wgs84_to_gcj02_matches_published_pairs(
    wgs: tuple[float, float], gcj: tuple[float, float]
) -> None:
    lat, long = wgs84_to_gcj02(*wgs)
    assert lat == pytest.approx(gcj[0], abs=1e-9)
    assert long == pytest.approx(gcj[1], abs=1e-9)


def test_gcj02_offset_is_hundreds_of_metres_in_china_and_none_outside() -> None:
    _lat, long = wgs84_to_gcj02(39.9, 116.4)
    assert 0.001 < abs(long - 116.4) < 0.01  # ~500 m: enough to put a pin in the wrong block
    assert outside_china(48.8566, 2.3522)
    assert wgs84_to_gcj02(48.8566, 2.3522) == (48.8566, 2.3522)


def _registry(**site_fields: object) -> SiteRegistry:
    registry = make_registry()
    site = registry.sites[0]
    camera = site.gateways[0].cameras[0]
    zones = [
        zone.model_copy(
            update={"name": "消防通道", "building": "3号楼", "location": "north gate"}
            if zone.id == FIRE_LANE_ZONE
            else {}
        )
        for zone in camera.zones
    ]
    camera = camera.model_copy(update={"zones": zones, "plan_position": PlanPosition(x=0.1, y=0.2)})
    gateway = site.gateways[0].model_copy(update={"cameras": [camera]})
    site = site.model_copy(update={"gateways": [gateway], **site_fields})
    return SiteRegistry(sites=[site, *registry.sites[1:]])


def _case(zone_id: str = FIRE_LANE_ZONE) -> Case:
    return Case(site_id=SITE, camera_id=CAMERA, zone_id=zone_id, location=None)


def test_place_names_the_compound_address_building_and_links_to_the_gate() -> None:
    registry = _registry(
        name="示范小区",
        address="杭州市西湖区文三路 100 号",
        street="文新街道",
        lat=30.28,
        long=120.13,
    )
    place = place_of(registry, {}, _case())
    assert (place.site_name, place.address, place.street) == (
        "示范小区",
        "杭州市西湖区文三路 100 号",
        "文新街道",
    )
    assert (place.zone_name, place.building, place.location) == ("消防通道", "3号楼", "north gate")
    assert place.camera_name == "north gate"
    assert place.geo_uri == "geo:30.280000,120.130000"
    assert place.amap_url is not None
    query = parse_qs(urlsplit(place.amap_url).query)
    gcj_lat, gcj_long = wgs84_to_gcj02(30.28, 120.13)
    assert query["position"] == [f"{gcj_long:.6f},{gcj_lat:.6f}"]  # AMap wants long,lat
    assert query["name"] == ["示范小区"]
    assert query["coordinate"] == ["gaode"]


def test_no_coordinates_no_links_and_ids_stand_in_for_missing_names() -> None:
    place = place_of(_registry(), {}, _case(PARKING_ZONE))
    assert place.geo_uri is None
    assert place.amap_url is None
    assert not place.has_coordinates
    assert place.site_name == SITE
    assert place.zone_name == PARKING_ZONE
    assert place.building is None
    assert place.plan_image_url is None


def test_plan_point_zone_first_then_admin_placement_then_config() -> None:
    registry = _registry()
    placed = {CAMERA: PlanPosition(x=0.5, y=0.6)}
    assert place_of(registry, {}, _case()).plan_position == PlanPosition(x=0.1, y=0.2)
    assert place_of(registry, placed, _case()).plan_position == PlanPosition(x=0.5, y=0.6)
    site = registry.sites[0]
    camera = site.gateways[0].cameras[0]
    zones = [
        z.model_copy(update={"plan_position": PlanPosition(x=0.9, y=0.9)}) for z in camera.zones
    ]
    gateway = site.gateways[0].model_copy(
        update={"cameras": [camera.model_copy(update={"zones": zones})]}
    )
    zoned = SiteRegistry(sites=[site.model_copy(update={"gateways": [gateway]})])
    assert place_of(zoned, placed, _case()).plan_position == PlanPosition(x=0.9, y=0.9)


def test_uploaded_plan_gives_the_block_an_image() -> None:
    place = place_of(_registry(), {}, _case(), uploaded_plans=frozenset({SITE}))
    assert place.plan_image_url == f"/console/plans/{SITE}"


def test_unknown_camera_still_gives_a_place_of_ids() -> None:
    case = Case(site_id="gone", camera_id="cam-gone", zone_id="z", location="lot 4")
    place = place_of(_registry(), {}, case)
    assert (place.site_name, place.camera_name, place.zone_name) == ("gone", "cam-gone", "z")
    assert place.location == "lot 4"
    assert place.plan_position is None


def test_the_demo_config_names_the_place_a_firefighter_goes_to() -> None:
    from civicwatch.config import load_config
    from dispatch.web.plans import site_buildings
    from tests.conftest import REPO_ROOT

    config = load_config(REPO_ROOT / "configs" / "example.yaml", environ={})
    registry = SiteRegistry(sites=config.sites)
    case = Case(site_id="compound-demo", camera_id="cam-gate", zone_id="fire-lane-gate")
    place = place_of(registry, {}, case)
    assert place.address
    assert place.street
    assert place.building
    assert place.amap_url is not None
    assert place.geo_uri is not None
    assert place.plan_position is not None
    # No plan image in the demo: the plan is drawn with the zone's building where it stands.
    buildings = site_buildings(registry.sites[0], {})
    assert [b.name for b in buildings] == [place.building]
    assert (buildings[0].x, buildings[0].y) == (
        place.plan_position.x * 1000,
        place.plan_position.y * 600,
    )
