"""The site registry both sides share: sites, gateways, cameras and their zones.

The edge reads it to know what to watch; the server reads it to know which cameras exist
and where each zone sits. Loaded from the YAML config by the composition root.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.events import Identifier
from contracts.kinds import STATIONARY_OBJECT as STATIONARY_OBJECT
from contracts.kinds import ZoneKind as ZoneKind

Point = Annotated[list[float], Field(min_length=2, max_length=2)]


class _ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlanPosition(_ConfigModel):
    """A point (a camera, a zone) on its site's plan image, as fractions of its width and height."""

    x: float = Field(ge=0, le=1)
    y: float = Field(ge=0, le=1)


class ZoneConfig(_ConfigModel):
    id: Identifier
    name: str = ""
    kind: ZoneKind
    polygon: list[Point] = Field(min_length=3, description="pixel corners in the camera frame")
    dwell_seconds: float = Field(
        default=300.0,
        gt=0,
        description="how long an object may stay before a violation; no-build zones ignore it",
    )
    classes: list[str] | None = Field(
        default=None, description="detector classes that count; default depends on the kind"
    )
    location: str | None = Field(
        default=None, description="a site location name shared by zones that see the same place"
    )
    building: str | None = Field(
        default=None, description="the building (楼栋) the zone is at or beside, as people say it"
    )
    plan_position: PlanPosition | None = Field(
        default=None, description="the zone's place on the site plan; default: its camera's dot"
    )

    @property
    def watched_classes(self) -> tuple[str, ...]:
        return tuple(self.classes) if self.classes is not None else self.kind.default_classes


class CameraConfig(_ConfigModel):
    id: Identifier
    name: str = ""
    source: str = Field(
        description=(
            "rtsp://..., http(s)://..., a video or image file path, usb:N, or "
            "pkg://PACKAGE/PATH for a file shipped inside an installed package"
        )
    )
    fps: float | None = Field(
        default=None, gt=0, description="frames per second to process; default: the source's"
    )
    zones: list[ZoneConfig] = Field(default_factory=list)
    plan_position: PlanPosition | None = Field(
        default=None, description="the camera's dot on the site plan (the console's health map)"
    )

    @field_validator("zones")
    @classmethod
    def _unique_zone_ids(cls, zones: list[ZoneConfig]) -> list[ZoneConfig]:
        _require_unique([z.id for z in zones], "zone")
        return zones

    def zone(self, zone_id: str) -> ZoneConfig | None:
        return next((z for z in self.zones if z.id == zone_id), None)


class GatewayConfig(_ConfigModel):
    id: Identifier
    name: str = ""
    cameras: list[CameraConfig] = Field(min_length=1)


class SiteConfig(_ConfigModel):
    id: Identifier
    name: str = ""
    timezone: str = "Asia/Shanghai"
    gateways: list[GatewayConfig] = Field(default_factory=list)
    plan_image: str | None = Field(
        default=None, description="a site plan image (path) the console draws cameras on"
    )
    address: str = Field(default="", description="the postal address people navigate to")
    street: str | None = Field(
        default=None, description="the street (街道) the compound belongs to: reports group by it"
    )
    # Where the site is (WGS-84), for Open311's lat/long and navigation links; optional.
    lat: float | None = Field(default=None, ge=-90, le=90)
    long: float | None = Field(default=None, ge=-180, le=180)


class SiteRegistry(_ConfigModel):
    sites: list[SiteConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> SiteRegistry:
        _require_unique([s.id for s in self.sites], "site")
        _require_unique([g.id for s in self.sites for g in s.gateways], "gateway")
        _require_unique([c.id for s in self.sites for g in s.gateways for c in g.cameras], "camera")
        return self

    def gateway(self, gateway_id: str) -> tuple[SiteConfig, GatewayConfig] | None:
        for site in self.sites:
            for gateway in site.gateways:
                if gateway.id == gateway_id:
                    return site, gateway
        return None

    def camera(self, camera_id: str) -> tuple[SiteConfig, GatewayConfig, CameraConfig] | None:
        return self._cameras_by_id.get(camera_id)

    @cached_property
    def _cameras_by_id(self) -> dict[str, tuple[SiteConfig, GatewayConfig, CameraConfig]]:
        # Ingest looks a camera up for every message; index once, the registry is frozen.
        return {
            camera.id: (site, gateway, camera)
            for site in self.sites
            for gateway in site.gateways
            for camera in gateway.cameras
        }


def _require_unique(ids: list[str], what: str) -> None:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            raise ValueError(f"duplicate {what} id {item!r}")
        seen.add(item)
