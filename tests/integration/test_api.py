"""The REST API over a real database: who sees what, what each role may do."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from contracts.events import Phase, ViolationEvent, ViolationKind
from contracts.status import (
    CameraHealth,
    CameraProblem,
    CameraStatus,
    DetectionPath,
    GatewayState,
    GatewayStatus,
)
from dispatch.config import ApiSettings
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.workflow import Workflow
from storage.tables import Case
from tests.factories import (
    API_TOKENS,
    CAMERA,
    FIRE_LANE_ZONE,
    GATEWAY,
    SITE,
    T0,
    EventFactory,
    IngestRig,
    make_ingest,
    migrated_database,
)
from tests.unit.ingest.helpers import with_redacted_copies

TOKENS = API_TOKENS


@dataclass
class Api:
    client: TestClient
    rig: IngestRig
    parking: ViolationEvent
    fire: ViolationEvent
    parking_id: int
    fire_id: int


def _auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who].token.get_secret_value()}"}


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    with migrated_database(database_url) as (_engine, sessions):
        rig = make_ingest(sessions, tmp_path / "evidence")
        edge = EventFactory()
        parking = edge.event(Phase.OPENED)
        fire = edge.event(
            Phase.OPENED, zone_id=FIRE_LANE_ZONE, kind=ViolationKind.FIRE_LANE_BLOCKING
        )
        rig.service.store(parking)
        rig.service.store(fire)
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=rig.evidence_store,
                settings=ApiSettings(tokens=list(TOKENS.values())),
                registry=rig.registry,
                metrics_registry=rig.metrics.registry,
                workflow=Workflow(),
            )
        )
        with TestClient(app) as client:
            cases = client.get("/api/v1/cases", headers=_auth("dispatcher")).json()
            ids = {case["violation_id"]: case["id"] for case in cases}
            yield Api(
                client,
                rig,
                parking,
                fire,
                ids[str(parking.violation_id)],
                ids[str(fire.violation_id)],
            )


def test_no_or_wrong_token_is_401(api: Api) -> None:
    for url in ("/api/v1/cases", f"/api/v1/cases/{api.parking_id}", "/api/v1/cameras"):
        response = api.client.get(url)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    bad = api.client.get("/api/v1/cases", headers={"Authorization": "Bearer not-a-token-at-all"})
    assert bad.status_code == 401


def test_dispatcher_sees_every_case_sorted_by_sla(api: Api) -> None:
    cases = api.client.get("/api/v1/cases", headers=_auth("dispatcher")).json()
    assert [case["id"] for case in cases] == [api.fire_id, api.parking_id]  # 30 min SLA first
    assert {case["department"] for case in cases} == {"fire_rescue", "law_enforcement"}


def test_department_sees_only_its_own_cases_even_when_asking_for_others(api: Api) -> None:
    law = api.client.get("/api/v1/cases", headers=_auth("law")).json()
    assert [case["id"] for case in law] == [api.parking_id]
    asked = api.client.get(
        "/api/v1/cases", headers=_auth("law"), params={"department": "fire_rescue"}
    )
    assert asked.status_code == 200
    assert asked.json() == []


def test_another_departments_case_is_404_everywhere(api: Api) -> None:
    assert api.client.get(f"/api/v1/cases/{api.fire_id}", headers=_auth("law")).status_code == 404
    action = api.client.post(
        f"/api/v1/cases/{api.fire_id}/actions", headers=_auth("law"), json={"action": "accept"}
    )
    assert action.status_code == 404
    sha = api.fire.evidence[0].sha256
    assert api.client.get(f"/api/v1/evidence/{sha}", headers=_auth("law")).status_code == 404
    assert api.client.get(f"/api/v1/evidence/{sha}", headers=_auth("fire")).status_code == 200


def test_case_detail_lists_evidence_and_audit_trail(api: Api) -> None:
    response = api.client.get(f"/api/v1/cases/{api.parking_id}", headers=_auth("law"))
    assert response.status_code == 200
    detail = response.json()
    assert detail["state"] == "dispatched"
    assert detail["object_class"] == "car"
    assert detail["object_box"] == {"x1": 10.0, "y1": 20.0, "x2": 60.0, "y2": 70.0}
    assert [t["to_state"] for t in detail["transitions"]] == ["new", "dispatched"]
    assert [e["url"] for e in detail["evidence"]] == [
        f"/api/v1/evidence/{frame.sha256}" for frame in api.parking.evidence
    ]


def test_evidence_download_matches_its_hash(api: Api) -> None:
    detail = api.client.get(f"/api/v1/cases/{api.parking_id}", headers=_auth("law")).json()
    for item in detail["evidence"]:
        response = api.client.get(item["url"], headers=_auth("law"))
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/jpeg"
        assert response.content[:2] == b"\xff\xd8"  # a JPEG
        assert hashlib.sha256(response.content).hexdigest() == item["sha256"]


def test_department_works_its_case_and_the_trail_names_the_worker(api: Api) -> None:
    url = f"/api/v1/cases/{api.parking_id}/actions"
    accepted = api.client.post(url, headers=_auth("law"), json={"action": "accept"})
    assert accepted.status_code == 200
    assert accepted.json()["state"] == "accepted"
    resolved = api.client.post(
        url, headers=_auth("law"), json={"action": "resolve", "reason": "vehicle towed"}
    )
    last = resolved.json()["transitions"][-1]
    assert (last["actor"], last["to_state"], last["reason"]) == (
        "officer",
        "resolved",
        "vehicle towed",
    )
    # Verifying the fix (which closes the case) is the command centre's call.
    assert api.client.post(url, headers=_auth("law"), json={"action": "verify"}).status_code == 403
    assert (
        api.client.post(url, headers=_auth("dispatcher"), json={"action": "verify"}).status_code
        == 200
    )
    again = api.client.post(url, headers=_auth("law"), json={"action": "accept"})
    assert again.status_code == 409
    assert "closed" in again.json()["detail"]


def test_return_without_reason_is_422_and_integration_is_read_only(api: Api) -> None:
    url = f"/api/v1/cases/{api.parking_id}/actions"
    assert api.client.post(url, headers=_auth("law"), json={"action": "return"}).status_code == 422
    assert (
        api.client.post(url, headers=_auth("integration"), json={"action": "accept"}).status_code
        == 403
    )
    assert len(api.client.get("/api/v1/cases", headers=_auth("integration")).json()) == 2
    assert api.client.post(url, headers=_auth("law"), json={"action": "fly"}).status_code == 422


def test_list_filters(api: Api) -> None:
    def ids(**params: object) -> list[int]:
        response = api.client.get("/api/v1/cases", headers=_auth("dispatcher"), params=params)
        assert response.status_code == 200, response.text
        return [case["id"] for case in response.json()]

    assert ids(kind="fire_lane_blocking") == [api.fire_id]
    assert ids(department="law_enforcement") == [api.parking_id]
    assert ids(state="dispatched", camera_id=CAMERA, site_id=SITE) == [api.fire_id, api.parking_id]
    assert ids(overdue=True) == []
    assert ids(limit=1, offset=1) == [api.parking_id]
    too_many = api.client.get("/api/v1/cases", headers=_auth("dispatcher"), params={"limit": 501})
    assert too_many.status_code == 422


@pytest.mark.parametrize("path", ["/api/v1/cases", "/api/v1/notifications"])
def test_an_offset_past_a_database_integer_is_refused_as_a_documented_query_error(
    api: Api, path: str
) -> None:
    # The query's own bound, in the OpenAPI document, not the database overflow fallback
    response = api.client.get(path, headers=_auth("dispatcher"), params={"offset": 2**31})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_request"
    assert [error["loc"] for error in response.json()["errors"]] == [["query", "offset"]]


def test_cameras_show_last_reported_health(api: Api) -> None:
    api.rig.service.record_camera_status(
        CameraStatus(
            site_id=SITE,
            gateway_id=GATEWAY,
            camera_id=CAMERA,
            health=CameraHealth.OK,
            at=T0,
            frames_read=99,
            problems=[CameraProblem.BLURRED],
            detection_path=DetectionPath.FOREGROUND_ONLY,
        )
    )
    api.rig.service.record_gateway_status(
        GatewayStatus(site_id=SITE, gateway_id=GATEWAY, state=GatewayState.OFFLINE)
    )
    cameras = {
        c["camera_id"]: c for c in api.client.get("/api/v1/cameras", headers=_auth("fire")).json()
    }
    assert cameras[CAMERA]["health"] == "ok"
    assert cameras[CAMERA]["frames_read"] == 99
    assert cameras[CAMERA]["gateway_state"] == "offline"
    assert cameras[CAMERA]["problems"] == ["blurred"]
    assert cameras[CAMERA]["detection_path"] == "foreground_only"
    assert cameras["cam-b1"]["health"] is None  # registered, never heard from
    assert cameras["cam-b1"]["problems"] == []


def test_health_readiness_metrics_and_docs(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").json() == {"status": "ready"}
    metrics = api.client.get("/metrics").text
    assert "civicwatch_ingest_events_stored_total 2.0" in metrics
    assert 'civicwatch_cases{state="dispatched"} 2.0' in metrics
    schema = api.client.get("/openapi.json").json()
    assert "/api/v1/cases/{case_id}/actions" in schema["paths"]
    assert api.client.get("/docs").status_code == 200


def test_metrics_count_cases_overdue_now_by_department(api: Api) -> None:
    def overdue() -> dict[str, float]:
        found = re.findall(
            r'^civicwatch_cases_overdue_now\{department="(\w+)"\} (\S+)$',
            api.client.get("/metrics").text,
            re.MULTILINE,
        )
        return {department: float(value) for department, value in found}

    assert overdue()["fire_rescue"] == 0.0
    with api.rig.session_factory() as session:
        fire = session.get(Case, api.fire_id)
        parking = session.get(Case, api.parking_id)
        assert fire is not None
        assert parking is not None
        # Past its resolve deadline (no sweep has flagged it): overdue now all the same.
        fire.sla_due_at = datetime.now(UTC) - timedelta(minutes=1)
        # Dispatched and past its accept deadline.
        parking.ack_due_at = datetime.now(UTC) - timedelta(seconds=5)
        session.commit()
    counted = overdue()
    assert (counted["fire_rescue"], counted["law_enforcement"]) == (1.0, 1.0)
    assert counted["public_security"] == 0.0
    accepted = api.client.post(
        f"/api/v1/cases/{api.parking_id}/actions", headers=_auth("law"), json={"action": "accept"}
    )
    assert accepted.status_code == 200
    assert overdue()["law_enforcement"] == 0.0  # accepted: its accept deadline no longer runs


def test_the_live_feed_is_documented_as_an_event_stream(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    feed = schema["paths"]["/api/v1/feed"]["get"]
    assert list(feed["responses"]["200"]["content"]) == ["text/event-stream"]
    assert feed["security"] == schema["paths"]["/api/v1/cases"]["get"]["security"]


def _download(api: Api, url: str, who: str, **params: str) -> tuple[str, str]:
    response = api.client.get(url, headers=_auth(who), params=params)
    assert response.status_code == 200, response.text
    return hashlib.sha256(response.content).hexdigest(), response.headers["X-Evidence-Copy"]


def test_evidence_is_redacted_unless_a_dispatcher_asks_for_the_original(api: Api) -> None:
    """The redacted copies are generated JPEGs standing in for the edge's face blur."""
    event = with_redacted_copies(EventFactory(next_seed=40).event(Phase.OPENED))
    api.rig.service.store(event)
    cases = api.client.get("/api/v1/cases", headers=_auth("dispatcher")).json()
    case_id = next(c["id"] for c in cases if c["violation_id"] == str(event.violation_id))
    detail = api.client.get(f"/api/v1/cases/{case_id}", headers=_auth("dispatcher")).json()
    frames = {frame.sha256: frame for frame in event.evidence}
    assert len(detail["evidence"]) == len(frames) > 0
    for item in detail["evidence"]:
        frame = frames[item["sha256"]]
        assert frame.redacted is not None
        copy = frame.redacted.sha256
        assert item["redacted_sha256"] == copy
        assert item["redacted_url"] == f"/api/v1/evidence/{copy}"
        for who in ("dispatcher", "law", "integration"):
            assert _download(api, item["url"], who) == (copy, "redacted")
            assert _download(api, item["redacted_url"], who) == (copy, "redacted")
        assert _download(api, item["url"], "dispatcher", original="true") == (
            frame.sha256,
            "original",
        )
        for who in ("law", "integration"):  # not theirs to see: they get the copy
            assert _download(api, item["url"], who, original="true") == (copy, "redacted")
        for url in (item["url"], item["redacted_url"]):  # another department's case
            assert api.client.get(url, headers=_auth("fire")).status_code == 404


def test_a_frame_without_a_redacted_copy_is_served_as_it_is(api: Api) -> None:
    detail = api.client.get(f"/api/v1/cases/{api.parking_id}", headers=_auth("law")).json()
    for item in detail["evidence"]:
        assert item["redacted_sha256"] is None
        assert item["redacted_url"] is None
        assert _download(api, item["url"], "law") == (item["sha256"], "original")
