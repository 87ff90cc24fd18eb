"""The false-alarm and kind-change requests over HTTP, and the per-camera rates in /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from contracts.events import EvidenceLabel, Phase, ViolationKind
from dispatch.config import ApiSettings
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.metrics import CameraFalseAlarmCollector, TrainingDataMetrics
from dispatch.training_data import TrainingDataExporter
from dispatch.workflow import Workflow
from tests.factories import (
    API_TOKENS,
    CAMERA,
    FIRE_LANE_ZONE,
    EventFactory,
    make_frame,
    make_ingest,
    migrated_database,
)


def _auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKENS[who].token.get_secret_value()}"}


@dataclass
class Api:
    client: TestClient
    exporter: TrainingDataExporter
    folder: Path
    parking_id: int
    fire_id: int


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    """Two dispatched cases of one camera, each with a close-up, served as the server serves."""
    with migrated_database(database_url) as (_engine, sessions):
        rig = make_ingest(sessions, tmp_path / "evidence")
        edge = EventFactory()
        closeups = iter(make_frame(90 + n, EvidenceLabel.CLOSEUP) for n in range(2))
        for event in (
            edge.event(Phase.OPENED),
            edge.event(zone_id=FIRE_LANE_ZONE, kind=ViolationKind.FIRE_LANE_BLOCKING),
        ):
            rig.service.store(event.model_copy(update={"evidence": [next(closeups)]}))
        rig.metrics.registry.register(CameraFalseAlarmCollector(sessions))
        exporter = TrainingDataExporter(
            sessions, rig.evidence_store, tmp_path / "training", TrainingDataMetrics()
        )
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=rig.evidence_store,
                settings=ApiSettings(tokens=list(API_TOKENS.values())),
                registry=rig.registry,
                metrics_registry=rig.metrics.registry,
                workflow=Workflow(on_committed=exporter.on_committed),
            )
        )
        with TestClient(app) as client:
            cases = client.get("/api/v1/cases", headers=_auth("dispatcher")).json()
            ids = {case["kind"]: case["id"] for case in cases}
            yield Api(
                client,
                exporter,
                tmp_path / "training",
                ids["illegal_parking"],
                ids["fire_lane_blocking"],
            )
        exporter.close()


def test_a_false_alarm_over_http_is_exported_and_counted(api: Api) -> None:
    url = f"/api/v1/cases/{api.parking_id}/actions"
    returned = api.client.post(
        url, headers=_auth("law"), json={"action": "return", "reason": "nothing there"}
    )
    assert returned.status_code == 200
    wrong = {"action": "note", "reason": "x", "close_reason": "false_alarm"}
    assert api.client.post(url, headers=_auth("dispatcher"), json=wrong).status_code == 422
    unknown = {"action": "close", "reason": "x", "close_reason": "bored"}
    assert api.client.post(url, headers=_auth("dispatcher"), json=unknown).status_code == 422
    close = {"action": "close", "reason": "a shadow", "close_reason": "false_alarm"}
    closed = api.client.post(url, headers=_auth("dispatcher"), json=close)
    assert closed.status_code == 200
    assert closed.json()["state"] == "closed"
    api.exporter.drain()
    (label,) = (api.folder / CAMERA / "labels").iterdir()
    assert label.name.startswith(f"case{api.parking_id}-")

    metrics = api.client.get("/metrics").text
    assert f'civicwatch_camera_false_alarm_ratio{{camera="{CAMERA}"}} 0.5' in metrics
    assert f'civicwatch_camera_cases{{camera="{CAMERA}"}} 2.0' in metrics


def test_a_kind_change_over_http_needs_a_dispatcher_a_reason_and_a_kind(api: Api) -> None:
    url = f"/api/v1/cases/{api.fire_id}/actions"
    change = {"action": "reclassify", "reason": "it is a parked car", "kind": "illegal_parking"}
    assert api.client.post(url, headers=_auth("fire"), json=change).status_code == 403
    no_kind = {"action": "reclassify", "reason": "wrong"}
    assert api.client.post(url, headers=_auth("dispatcher"), json=no_kind).status_code == 422
    changed = api.client.post(url, headers=_auth("dispatcher"), json=change)
    assert changed.status_code == 200
    assert (changed.json()["kind"], changed.json()["state"]) == ("illegal_parking", "dispatched")
    metrics = api.client.get("/metrics").text
    assert f'civicwatch_camera_reclassified{{camera="{CAMERA}"}} 1.0' in metrics
