"""A seeded month for the analysis report's benchmark and test: two compounds on one street,
cameras placed on a plan, and N cases bulk-inserted with the timestamps, departments,
deadlines, plates, close reasons and camera health changes a month of real use leaves."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from PIL import Image, ImageDraw
from sqlalchemy import insert

from contracts.sites import (
    CameraConfig,
    GatewayConfig,
    PlanPosition,
    SiteConfig,
    SiteRegistry,
    ZoneConfig,
)
from contracts.status import CameraHealth
from dispatch.workflow import Action, CloseReason
from storage.database import SessionFactory
from storage.tables import CameraHealthChange, Case, CaseState, CaseTransition

STREET = "鼓楼街道"
SITES = ("compound-east", "compound-west")
ZONE = ZoneInfo("Asia/Shanghai")
_SQUARE = [[0.0, 0.0], [100.0, 0.0], [100.0, 100.0], [0.0, 100.0]]
# (kind, zone kind, department, resolve minutes)
_KINDS = (
    ("illegal_parking", "no_parking", "law_enforcement", 120),
    ("fire_lane_blocking", "fire_lane", "fire_rescue", 30),
    ("illegal_structure", "no_build", "law_enforcement", 7 * 24 * 60),
)
_PLATES = [f"沪A{n:05d}" for n in range(40)]


def seed_registry(plan_image: Path | None = None) -> SiteRegistry:
    """Two compounds of one street, three cameras each, zones placed on the plan."""
    sites = []
    for s, site_id in enumerate(SITES):
        cameras = []
        for c in range(3):
            zones = [
                ZoneConfig(
                    id=f"z{c}-{zone_kind}",
                    name=f"{['北门', '东侧', '地库口'][c]}{['车位', '消防通道', '绿地'][k]}",
                    kind=zone_kind,
                    polygon=_SQUARE,
                    location=f"{s + 1}号院{c + 1}区",
                    building=f"{c + 1}号楼",
                    plan_position=PlanPosition(x=0.15 + 0.3 * c, y=0.2 + 0.3 * k),
                )
                for k, (_, zone_kind, _, _) in enumerate(_KINDS)
            ]
            cameras.append(
                CameraConfig(
                    id=f"{site_id}-cam{c}",
                    name=f"{['北门', '东侧', '地库口'][c]}摄像头{s + 1}",
                    source="rtsp://camera.invalid/stream",
                    zones=zones,
                    plan_position=PlanPosition(x=0.15 + 0.3 * c, y=0.5),
                )
            )
        sites.append(
            SiteConfig(
                id=site_id,
                name=["东苑小区", "西苑小区"][s],
                street=STREET,
                address=f"鼓楼路{s + 1}号",
                plan_image=str(plan_image) if plan_image else None,
                gateways=[GatewayConfig(id=f"gw-{site_id}", cameras=cameras)],
            )
        )
    return SiteRegistry(sites=sites)


def draw_plan(path: Path) -> Path:
    """A plain site plan picture: buildings as grey blocks."""
    picture = Image.new("RGB", (800, 600), "white")
    pen = ImageDraw.Draw(picture)
    for x in range(60, 800, 240):
        for y in range(60, 600, 180):
            pen.rectangle((x, y, x + 150, y + 100), fill="#cfd8dc", outline="#607d8b", width=3)
    picture.save(path)
    return path


def seed_month(
    sessions: SessionFactory,
    registry: SiteRegistry,
    first_day: date,
    cases: int,
    seed: int = 7,
    with_previous: bool = True,
) -> None:
    """``cases`` cases over the month from ``first_day`` (and a tenth as many in the month
    before, for the trends), bulk-inserted in one transaction."""
    rng = random.Random(seed)
    month_start = datetime.combine(first_day, time(0), tzinfo=ZONE).astimezone(UTC)
    month_end = datetime.combine(
        (first_day.replace(day=28) + timedelta(days=4)).replace(day=1), time(0), tzinfo=ZONE
    ).astimezone(UTC)
    previous_start = month_start - timedelta(days=30)
    spans = [(month_start, month_end, cases)]
    if with_previous:
        spans.append((previous_start, month_start, max(1, cases // 10)))
    cameras = [
        (site.id, gateway.id, camera)
        for site in registry.sites
        for gateway in site.gateways
        for camera in gateway.cameras
    ]
    case_rows: list[dict[str, Any]] = []
    closes: list[dict[str, Any]] = []
    next_id = 1
    for start, end, count in spans:
        seconds = (end - start).total_seconds()
        for _ in range(count):
            site_id, gateway_id, camera = rng.choice(cameras)
            k = rng.choices(range(len(_KINDS)), weights=(6, 3, 1))[0]
            kind, zone_kind, department, resolve_minutes = _KINDS[k]
            zone = camera.zones[k]
            created = start + timedelta(seconds=rng.uniform(0, seconds))
            accepted = created + timedelta(minutes=rng.expovariate(1 / 6))
            resolved = accepted + timedelta(minutes=rng.expovariate(1 / (resolve_minutes * 0.6)))
            closed = resolved + timedelta(minutes=rng.uniform(5, 60))
            state = CaseState.CLOSED.value if rng.random() < 0.8 else CaseState.ACCEPTED.value
            done = state == CaseState.CLOSED.value
            case_rows.append(
                {
                    "id": next_id,
                    "violation_id": uuid.UUID(int=rng.getrandbits(128)),
                    "kind": kind,
                    "site_id": site_id,
                    "gateway_id": gateway_id,
                    "camera_id": camera.id,
                    "zone_id": zone.id,
                    "zone_kind": zone_kind,
                    "state": state,
                    "department": department,
                    "tier": "department",
                    "priority": "normal",
                    "sla_due_at": created + timedelta(minutes=resolve_minutes),
                    "ack_due_at": created + timedelta(minutes=10),
                    "overdue": False,
                    "started_at": created - timedelta(minutes=5),
                    "opened_at": created,
                    "last_observed_at": created,
                    "dwell_seconds": 300.0,
                    "created_at": created,
                    "updated_at": closed if done else accepted,
                    "location": zone.location,
                    "plate_text": rng.choice(_PLATES) if kind != "illegal_structure" else None,
                    # a decided reading: the report's repeat plates count only those
                    "plate_confidence": 0.95 if kind != "illegal_structure" else None,
                    "acknowledged_at": accepted,
                    "resolved_at": resolved if done else None,
                    "closed_at": closed if done else None,
                    "chain_broken": False,
                    "escalation_level": 0,
                }
            )
            if done and rng.random() < 0.08:
                reason = rng.choice((CloseReason.FALSE_ALARM, CloseReason.NOT_A_VIOLATION))
                closes.append(
                    {
                        "case_id": next_id,
                        "from_state": CaseState.RESOLVED.value,
                        "to_state": CaseState.CLOSED.value,
                        "actor": "dispatcher",
                        "reason": "",
                        "at": closed,
                        "action": Action.CLOSE.value,
                        "detail": {"close_reason": reason.value},
                    }
                )
            next_id += 1
    health: list[dict[str, Any]] = []
    for site_id, _gateway, camera in cameras:
        at = previous_start
        state = CameraHealth.OK.value
        while at < month_end:
            health.append({"camera_id": camera.id, "site_id": site_id, "health": state, "at": at})
            up = state == CameraHealth.OK.value
            at += timedelta(hours=rng.uniform(20, 120) if up else rng.uniform(0.5, 6))
            state = CameraHealth.OFFLINE.value if up else CameraHealth.OK.value
    with sessions.begin() as session:
        session.execute(insert(Case), case_rows)
        if closes:
            session.execute(insert(CaseTransition), closes)
        session.execute(insert(CameraHealthChange), health)
