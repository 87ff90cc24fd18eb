"""The console's site plans: each site's cameras as dots on its plan image, and a case's place.

A camera's dot: where an admin put it on the plan (``CameraPlacement``), else the config's
``plan_position``. A site without a plan image (uploaded or configured) is drawn from its config
instead: a grid with a block per building its zones name, so the plan is never an empty grid
where the config says where things are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.sites import PlanPosition, SiteConfig, SiteRegistry
from dispatch.http.deps import get_context
from dispatch.places import Place, place_of, plan_url
from dispatch.schemas import CameraPublic
from storage.tables import CameraPlacement, Case, SitePlanImage


@dataclass(frozen=True)
class PlanDot:
    camera: CameraPublic
    x: float
    y: float


@dataclass(frozen=True)
class Building:
    """A building drawn on a site without a plan image: its label around its zones' points."""

    name: str
    x: float
    y: float


@dataclass(frozen=True)
class SitePlan:
    site_id: str
    name: str
    image_url: str | None
    dots: list[PlanDot]
    unplaced: list[CameraPublic]
    buildings: list[Building]


PLAN_WIDTH = 1000
PLAN_HEIGHT = 600


def camera_placements(session: Session) -> dict[str, PlanPosition]:
    """Where admins put cameras on the plans: camera id -> point (fractions)."""
    rows = session.scalars(select(CameraPlacement)).all()
    return {row.camera_id: PlanPosition(x=row.x, y=row.y) for row in rows}


def uploaded_plans(session: Session) -> frozenset[str]:
    """The sites with an uploaded plan image."""
    return frozenset(session.scalars(select(SitePlanImage.site_id)).all())


def camera_position(
    registry: SiteRegistry, placements: Mapping[str, PlanPosition], camera_id: str
) -> PlanPosition | None:
    found = registry.camera(camera_id)
    return placements.get(camera_id) or (found[2].plan_position if found else None)


def site_buildings(site: SiteConfig, placements: Mapping[str, PlanPosition]) -> list[Building]:
    """Each building the site's zones name, at the mean of its zones' points on the plan."""
    points: dict[str, list[PlanPosition]] = {}
    for gateway in site.gateways:
        for camera in gateway.cameras:
            fallback = placements.get(camera.id) or camera.plan_position
            for zone in camera.zones:
                point = zone.plan_position or fallback
                if zone.building and point is not None:
                    points.setdefault(zone.building, []).append(point)
    return [
        Building(
            name,
            sum(p.x for p in found) / len(found) * PLAN_WIDTH,
            sum(p.y for p in found) / len(found) * PLAN_HEIGHT,
        )
        for name, found in sorted(points.items())
    ]


def site_plans(
    registry: SiteRegistry,
    cameras: list[CameraPublic],
    placements: Mapping[str, PlanPosition] | None = None,
    uploaded: frozenset[str] = frozenset(),
) -> list[SitePlan]:
    """Each site's plan: cameras with a plan position as dots, the rest listed beside it."""
    placements = placements or {}
    plans = []
    for site in registry.sites:
        dots: list[PlanDot] = []
        unplaced: list[CameraPublic] = []
        for camera in cameras:
            if camera.site_id != site.id:
                continue
            position = camera_position(registry, placements, camera.camera_id)
            if position is None:
                unplaced.append(camera)
            else:
                dots.append(PlanDot(camera, position.x * PLAN_WIDTH, position.y * PLAN_HEIGHT))
        has_image = site.id in uploaded or site.plan_image is not None
        plans.append(
            SitePlan(
                site_id=site.id,
                name=site.name or site.id,
                image_url=plan_url(site.id) if has_image else None,
                dots=dots,
                unplaced=unplaced,
                buildings=[] if has_image else site_buildings(site, placements),
            )
        )
    return plans


def site_plans_for_page(
    request: Request, session: Session, cameras: list[CameraPublic]
) -> list[SitePlan]:
    """``site_plans`` with the admins' placements and uploaded images read from the database."""
    return site_plans(
        get_context(request).registry, cameras, camera_placements(session), uploaded_plans(session)
    )


def place_for_page(request: Request, session: Session, case: Case) -> Place:
    """``case``'s place for a page's ``{% include "_place.html" %}`` (pass it as ``place``)."""
    return place_of(
        get_context(request).registry, camera_placements(session), case, uploaded_plans(session)
    )
