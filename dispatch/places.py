"""Where a case is, in words people use and in links a phone can follow.

A case carries only ids (site, camera, zone). ``place_of`` turns them into the compound's name and
address, the street, the zone's name and building, a point on the site plan and navigation links.

Coordinates in the config (``SiteConfig.lat``/``long``) are WGS-84, as a GPS receiver reports
them and as Open311 and ``geo:`` URIs expect. Maps in mainland China (AMap/高德 among them) draw
in GCJ-02, a datum offset from WGS-84 by a few hundred metres; the AMap link is converted with
the published WGS-84 -> GCJ-02 formula (``wgs84_to_gcj02``) so its pin lands on the gate, not
in the next block.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from contracts.sites import PlanPosition, SiteRegistry
from storage.tables import Case

# The GCJ-02 formula's ellipsoid (Krasovsky 1940): semi-major axis and first eccentricity squared.
_KRASOVSKY_A = 6378245.0
_KRASOVSKY_EE = 0.00669342162296594323


def outside_china(lat: float, long: float) -> bool:
    """GCJ-02 offsets only apply inside mainland China's rough bounding box."""
    return not (72.004 <= long <= 137.8347 and 0.8293 <= lat <= 55.8271)


def _offset_lat(x: float, y: float) -> float:
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return ret


def _offset_long(x: float, y: float) -> float:
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return ret


def wgs84_to_gcj02(lat: float, long: float) -> tuple[float, float]:
    """A WGS-84 point as GCJ-02 (lat, long); unchanged outside China, where no offset applies."""
    if outside_china(lat, long):
        return lat, long
    d_lat = _offset_lat(long - 105.0, lat - 35.0)
    d_long = _offset_long(long - 105.0, lat - 35.0)
    rad_lat = lat / 180.0 * math.pi
    magic = 1 - _KRASOVSKY_EE * math.sin(rad_lat) ** 2
    sqrt_magic = math.sqrt(magic)
    d_lat = (d_lat * 180.0) / (
        (_KRASOVSKY_A * (1 - _KRASOVSKY_EE)) / (magic * sqrt_magic) * math.pi
    )
    d_long = (d_long * 180.0) / (_KRASOVSKY_A / sqrt_magic * math.cos(rad_lat) * math.pi)
    return lat + d_lat, long + d_long


@dataclass(frozen=True)
class Place:
    """A case's place for people: names, address, the point on the plan, navigation links."""

    site_id: str
    site_name: str
    address: str
    street: str | None
    camera_id: str
    camera_name: str
    zone_id: str
    zone_name: str
    location: str | None
    building: str | None
    lat: float | None  # WGS-84
    long: float | None
    plan_position: PlanPosition | None
    plan_image_url: str | None  # None: the block draws a plain grid
    geo_uri: str | None  # geo:lat,long (WGS-84, RFC 5870): the phone's own map app
    amap_url: str | None  # AMap marker (GCJ-02)

    @property
    def has_coordinates(self) -> bool:
        return self.lat is not None and self.long is not None


def plan_url(site_id: str) -> str:
    return f"/console/plans/{site_id}"


def place_of(
    registry: SiteRegistry,
    placements: Mapping[str, PlanPosition],
    case: Case,
    uploaded_plans: frozenset[str] = frozenset(),
) -> Place:
    """``case``'s place. The point on the plan: the zone's own plan_position, else where an admin
    put the camera (``placements``, camera id -> point), else the camera's config position.
    ``uploaded_plans``: the sites with an uploaded plan image (the config's file counts too)."""
    site = next((s for s in registry.sites if s.id == case.site_id), None)
    found = registry.camera(case.camera_id)
    camera = found[2] if found else None
    zone = camera.zone(case.zone_id) if camera else None
    position = (
        (zone.plan_position if zone else None)
        or placements.get(case.camera_id)
        or (camera.plan_position if camera else None)
    )
    lat = site.lat if site else None
    long = site.long if site else None
    site_name = (site.name if site else "") or case.site_id
    geo_uri = amap_url = None
    if lat is not None and long is not None:
        geo_uri = f"geo:{lat:.6f},{long:.6f}"
        gcj_lat, gcj_long = wgs84_to_gcj02(lat, long)
        query = urlencode(
            {"position": f"{gcj_long:.6f},{gcj_lat:.6f}", "name": site_name, "coordinate": "gaode"}
        )
        amap_url = f"https://uri.amap.com/marker?{query}"
    has_plan = site is not None and (site.id in uploaded_plans or site.plan_image is not None)
    return Place(
        site_id=case.site_id,
        site_name=site_name,
        address=site.address if site else "",
        street=site.street if site else None,
        camera_id=case.camera_id,
        camera_name=(camera.name if camera else "") or case.camera_id,
        zone_id=case.zone_id,
        zone_name=(zone.name if zone else "") or case.zone_id,
        location=(zone.location if zone else None) or case.location,
        building=zone.building if zone else None,
        lat=lat,
        long=long,
        plan_position=position,
        plan_image_url=plan_url(case.site_id) if has_plan else None,
        geo_uri=geo_uri,
        amap_url=amap_url,
    )
