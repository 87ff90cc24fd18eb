"""Cameras: every registered camera with the last status it and its gateway reported."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.sites import SiteRegistry
from dispatch.http.deps import API_PREFIX, ContextDep, PrincipalDep, SessionDep
from dispatch.schemas import CameraPublic
from storage.tables import CameraStatusRow, GatewayStatusRow

router = APIRouter(prefix=API_PREFIX)


def camera_statuses(session: Session, registry: SiteRegistry) -> list[CameraPublic]:
    """Every camera of ``registry``, in its order, with the status rows stored for it."""
    cameras = {row.camera_id: row for row in session.scalars(select(CameraStatusRow))}
    gateways = {row.gateway_id: row for row in session.scalars(select(GatewayStatusRow))}
    result = []
    for site in registry.sites:
        for gateway in site.gateways:
            gateway_row = gateways.get(gateway.id)
            for camera in gateway.cameras:
                row = cameras.get(camera.id)
                result.append(
                    CameraPublic(
                        site_id=site.id,
                        gateway_id=gateway.id,
                        camera_id=camera.id,
                        name=camera.name,
                        health=row.health if row else None,
                        detail=row.detail if row else "",
                        reported_at=row.at if row else None,
                        frames_read=row.frames_read if row else 0,
                        detection_fps=row.detection_fps if row else 0.0,
                        gateway_state=gateway_row.state if gateway_row else None,
                        gateway_reported_at=gateway_row.at if gateway_row else None,
                        gateway_outbox_pending=gateway_row.outbox_pending if gateway_row else None,
                        problems=list(row.problems) if row else [],
                        detection_path=row.detection_path if row else None,
                    )
                )
    return result


@router.get("/cameras", response_model=list[CameraPublic])
def list_cameras(
    session: SessionDep, _principal: PrincipalDep, context: ContextDep
) -> list[CameraPublic]:
    """Every registered camera with the last status it and its gateway reported."""
    return camera_statuses(session, context.registry)
