"""The console's site plans: each site's cameras as dots on its plan image."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.sites import SiteRegistry
from dispatch.schemas import CameraPublic


@dataclass(frozen=True)
class PlanDot:
    camera: CameraPublic
    x: float
    y: float


@dataclass(frozen=True)
class SitePlan:
    site_id: str
    name: str
    image_url: str | None
    dots: list[PlanDot]
    unplaced: list[CameraPublic]


PLAN_WIDTH = 1000
PLAN_HEIGHT = 600


def site_plans(registry: SiteRegistry, cameras: list[CameraPublic]) -> list[SitePlan]:
    """Each site's plan: cameras with a plan position as dots, the rest listed beside it."""
    plans = []
    for site in registry.sites:
        dots: list[PlanDot] = []
        unplaced: list[CameraPublic] = []
        for camera in cameras:
            if camera.site_id != site.id:
                continue
            found = registry.camera(camera.camera_id)
            position = found[2].plan_position if found else None
            if position is None:
                unplaced.append(camera)
            else:
                dots.append(PlanDot(camera, position.x * PLAN_WIDTH, position.y * PLAN_HEIGHT))
        plans.append(
            SitePlan(
                site_id=site.id,
                name=site.name or site.id,
                image_url=f"/console/plans/{site.id}" if site.plan_image else None,
                dots=dots,
                unplaced=unplaced,
            )
        )
    return plans
