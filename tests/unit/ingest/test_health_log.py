"""Ingest logs each change of a camera's health (not each status message): the analysis
report's camera uptime is counted from this log."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from contracts.status import CameraHealth, CameraStatus
from storage.database import SessionFactory
from storage.tables import CameraHealthChange
from tests.factories import CAMERA, GATEWAY, SITE, T0, make_ingest


def test_only_changes_of_health_are_logged_with_the_status_time(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    rig = make_ingest(session_factory, tmp_path / "evidence")
    healths = [
        CameraHealth.OK,
        CameraHealth.OK,
        CameraHealth.OFFLINE,
        CameraHealth.OFFLINE,
        CameraHealth.OFFLINE,
        CameraHealth.OK,
    ]
    for minute, health in enumerate(healths):
        rig.service.record_camera_status(
            CameraStatus(
                site_id=SITE,
                gateway_id=GATEWAY,
                camera_id=CAMERA,
                health=health,
                at=T0 + timedelta(minutes=minute),
            )
        )
    with session_factory() as session:
        log = session.execute(
            select(CameraHealthChange.health, CameraHealthChange.at, CameraHealthChange.site_id)
            .where(CameraHealthChange.camera_id == CAMERA)
            .order_by(CameraHealthChange.id)
        ).all()
    assert [(health, at - T0) for health, at, _ in log] == [
        ("ok", timedelta(0)),
        ("offline", timedelta(minutes=2)),
        ("ok", timedelta(minutes=5)),
    ]
    assert {site for _, _, site in log} == {SITE}
