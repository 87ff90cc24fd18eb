"""What ingest now stores shows on the case API: plate, blocked share, merged violations,
repeat-offender links, chain flag, redacted copies, and camera problems.

Real database (SQLite and PostgreSQL) and the real FastAPI app. Evidence images are small
generated JPEGs.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from contracts.status import CameraHealth, CameraProblem, CameraStatus, DetectionPath
from dispatch.config import ApiSettings, ApiToken, Role
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.workflow import Workflow
from storage.tables import Case, CaseState
from tests.factories import T0, migrated_database
from tests.unit.ingest.helpers import (
    GATEWAY,
    NORTH_CAMERA,
    PLATE,
    SITE,
    SOUTH_CAMERA,
    ZONE,
    camera_factory,
    chained,
    make_rig,
    with_plate,
    with_redacted_copies,
)

TOKEN = ApiToken(name="desk", token=SecretStr("dispatcher-token-0001"), role=Role.DISPATCHER)
AUTH = {"Authorization": f"Bearer {TOKEN.token.get_secret_value()}"}


def test_the_case_api_shows_incident_plate_and_repeat_offender(
    database_url: str, tmp_path: Path
) -> None:
    with migrated_database(database_url) as (_engine, sessions):
        rig = make_rig(sessions, tmp_path / "evidence")
        north, south = camera_factory(NORTH_CAMERA, 1), camera_factory(SOUTH_CAMERA, 100)
        earlier = with_plate(north.event(zone_id=ZONE, at=T0 - timedelta(days=3)), PLATE)
        rig.service.store(earlier)
        with sessions.begin() as session:
            session.scalars(select(Case)).one().state = CaseState.CLOSED
        [seen_north] = chained([with_redacted_copies(north.event(zone_id=ZONE, at=T0))])
        seen_north = with_plate(seen_north, PLATE).model_copy(update={"blocked_share": 0.4})
        seen_south = with_plate(south.event(zone_id=ZONE, at=T0), PLATE)
        rig.service.store_batch([seen_north, seen_south])
        rig.service.record_camera_status(
            CameraStatus(
                site_id=SITE,
                gateway_id=GATEWAY,
                camera_id=NORTH_CAMERA,
                health=CameraHealth.DEGRADED,
                at=T0,
                problems=[CameraProblem.NO_DETECTOR],
                detection_path=DetectionPath.FOREGROUND_ONLY,
            )
        )
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=rig.evidence_store,
                settings=ApiSettings(tokens=[TOKEN]),
                registry=rig.registry,
                metrics_registry=rig.metrics.registry,
                workflow=Workflow(),
            )
        )
        with TestClient(app) as client:
            cases = client.get("/api/v1/cases", headers=AUTH).json()
            assert len(cases) == 2
            first, current = sorted(cases, key=lambda case: case["id"])
            assert current["plate_text"] == PLATE
            assert current["blocked_share"] == 0.4
            assert current["chain_broken"] is False
            assert current["violation_ids"] == [
                str(seen_north.violation_id),
                str(seen_south.violation_id),
            ]
            assert current["related_case_ids"] == [first["id"]]
            assert first["related_case_ids"] == [current["id"]]
            detail = client.get(f"/api/v1/cases/{current['id']}", headers=AUTH).json()
            assert detail["plate_confidence"] == 0.9
