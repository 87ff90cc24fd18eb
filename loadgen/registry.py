"""The simulated site registry: cameras the server must know before loadgen publishes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from contracts.mqtt import BrokerSettings
from contracts.sites import (
    CameraConfig,
    GatewayConfig,
    SiteConfig,
    SiteRegistry,
    ZoneConfig,
    ZoneKind,
)

PREFIX_DEFAULT = "load"
PARKING_ZONE = "no-parking"
FIRE_LANE_ZONE = "fire-lane"
ZONE_DWELL_SECONDS = {PARKING_ZONE: 300.0, FIRE_LANE_ZONE: 30.0}


class LoadgenError(Exception):
    """A loadgen run that cannot start; the message says what to fix."""


# --- the simulated registry -------------------------------------------------------------------


def simulated_registry(
    cameras: int, cameras_per_gateway: int, prefix: str = PREFIX_DEFAULT
) -> SiteRegistry:
    """One site, ``cameras`` cameras spread over gateways, each with a parking and a fire-lane zone.

    Deterministic: the same arguments give the same ids, so the config written for the server
    and the running loadgen agree.
    """
    if cameras < 1 or cameras_per_gateway < 1:
        raise LoadgenError("--cameras and --cameras-per-gateway must be at least 1")
    square = [[0.0, 0.0], [160.0, 0.0], [160.0, 120.0], [0.0, 120.0]]
    zones = [
        ZoneConfig(
            id=PARKING_ZONE,
            kind=ZoneKind.NO_PARKING,
            polygon=square,
            dwell_seconds=ZONE_DWELL_SECONDS[PARKING_ZONE],
        ),
        ZoneConfig(
            id=FIRE_LANE_ZONE,
            kind=ZoneKind.FIRE_LANE,
            polygon=square,
            dwell_seconds=ZONE_DWELL_SECONDS[FIRE_LANE_ZONE],
        ),
    ]
    gateways = []
    for start in range(0, cameras, cameras_per_gateway):
        number = start // cameras_per_gateway + 1
        gateway_cameras = [
            CameraConfig(
                id=f"{prefix}-cam-{index + 1:05d}",
                source=f"rtsp://{prefix}.invalid/cam-{index + 1:05d}",
                zones=zones,
            )
            for index in range(start, min(start + cameras_per_gateway, cameras))
        ]
        gateways.append(GatewayConfig(id=f"{prefix}-gw-{number:04d}", cameras=gateway_cameras))
    return SiteRegistry(sites=[SiteConfig(id=f"{prefix}-site", gateways=gateways)])


def write_config(
    path: Path, registry: SiteRegistry, base: Path | None, broker: BrokerSettings | None
) -> None:
    """Write a civicwatch config whose sites are ``registry``; other sections come from ``base``."""
    document: dict[str, Any] = {}
    if base is not None:
        loaded = yaml.safe_load(base.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise LoadgenError(f"{base}: the config must be a mapping of sections")
        document = loaded
    document["sites"] = registry.model_dump(mode="json", exclude_defaults=True)["sites"]
    if broker is not None:
        document["broker"] = {
            **document.get("broker", {}),
            "host": broker.host,
            "port": broker.port,
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), "utf-8")


def check_registry_covers(config: SiteRegistry, simulated: SiteRegistry) -> None:
    """Refuse to run when the server lacks a simulated camera: ingest would refuse its events."""
    for site in simulated.sites:
        for gateway in site.gateways:
            for camera in gateway.cameras:
                found = config.camera(camera.id)
                if found is None or (found[0].id, found[1].id) != (site.id, gateway.id):
                    raise LoadgenError(
                        f"camera {camera.id!r} of {site.id}/{gateway.id} is not in the config's "
                        "site registry; write a matching config with --write-config first"
                    )
