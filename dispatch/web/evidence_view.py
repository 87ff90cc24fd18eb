"""A case's evidence as the pages show it: each image with the zone and box to draw over it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from contracts.sites import SiteRegistry, ZoneConfig
from dispatch.config import Role
from dispatch.http.deps import API_PREFIX, Principal
from storage.tables import Case

AFTER_PHOTO = "after_photo"
# Frames whose pixels are the camera's view: the zone and box are drawn over these only.
_CROPS = frozenset({"closeup", AFTER_PHOTO})


@dataclass(frozen=True)
class EvidenceView:
    """One evidence image with the zone and box to draw over it (in the image's pixels)."""

    url: str
    original_url: str | None
    label: str
    width: int
    height: int
    captured_at: datetime
    zone_points: str | None
    box: tuple[float, float, float, float] | None


def _zone_of(registry: SiteRegistry, case: Case) -> ZoneConfig | None:
    found = registry.camera(case.camera_id)
    return found[2].zone(case.zone_id) if found else None


def evidence_views(registry: SiteRegistry, case: Case, principal: Principal) -> list[EvidenceView]:
    zone = _zone_of(registry, case)
    points = " ".join(f"{x:g},{y:g}" for x, y in zone.polygon) if zone else None
    box = None
    if None not in (case.box_x1, case.box_y1, case.box_x2, case.box_y2):
        box = (
            float(case.box_x1 or 0),
            float(case.box_y1 or 0),
            float(case.box_x2 or 0),
            float(case.box_y2 or 0),
        )
    frames = []
    for item in case.evidence:
        url = f"{API_PREFIX}/evidence/{item.sha256}"  # the API serves the blurred copy by default
        scene = item.label not in _CROPS
        frames.append(
            EvidenceView(
                url=url,
                original_url=f"{url}?original=true"
                if principal.role is Role.DISPATCHER and item.redacted_sha256
                else None,
                label=item.label,
                width=item.width,
                height=item.height,
                captured_at=item.captured_at,
                zone_points=points if scene else None,
                box=box if scene else None,
            )
        )
    return frames
