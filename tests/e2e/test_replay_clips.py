"""End to end on real footage: `civicwatch replay` -> Mosquitto -> `civicwatch server` -> API.

The detector is the real YOLO11n (OpenVINO INT8) from ../shared/models; the clips are real.
Dwell is timed by the clip's own clock (frame index / fps).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import SHARED_DATA, MosquittoProcess
from tests.e2e.harness import DEPARTMENT_TOKENS, Deployment

pytestmark = pytest.mark.slow

VTEST = SHARED_DATA / "clips" / "vtest.avi"
INTERSECTION = SHARED_DATA / "clips" / "intersection-demo1.mp4"
VTEST_FRAMES = 795  # 79.5 s at 10 fps


def _new(
    deploy: list[Deployment], tmp_path: Path, site: str, broker: MosquittoProcess, url: str
) -> Deployment:
    deployment = Deployment(tmp_path, site, broker.port, url)
    deploy.append(deployment)
    return deployment


def test_parked_vehicles_in_vtest_become_one_case_each(
    deploy: list[Deployment], tmp_path: Path, mosquitto: MosquittoProcess, database_url: str
) -> None:
    site = _new(deploy, tmp_path, "vtest.yaml", mosquitto, database_url)
    site.start_server()

    summary = site.replay("cam-building", VTEST)

    assert summary["events_published"] == summary["events_confirmed"] > 0
    opened = summary["violations"]
    assert sorted(v["class_name"] for v in opened) in (["car", "truck"], ["car", "car"])
    assert summary["opened"] == 2
    assert summary["split"] == 0, "pedestrians walking in front must not split a parked vehicle"
    assert all(v["kind"] == "illegal_parking" for v in opened)

    law = site.get("/api/v1/cases?department=law_enforcement", DEPARTMENT_TOKENS["law_enforcement"])
    assert law.status_code == 200, law.text
    cases = law.json()
    assert len(cases) == 2, cases
    assert {c["violation_id"] for c in cases} == {v["violation_id"] for v in opened}
    for case in cases:
        assert case["department"] == "law_enforcement"
        assert case["kind"] == "illegal_parking"
        assert case["evidence_count"] >= 3, "the queue counts and links each case's evidence"
        linked = site.get(case["evidence_url"]).json()
        assert 3 <= len(linked) <= case["evidence_count"]
        detail = site.get(f"/api/v1/cases/{case['id']}").json()
        assert len(detail["evidence"]) >= 3
        for evidence in detail["evidence"]:
            # The console gets the copy with faces blurred; the dispatcher may ask for the original.
            shown = site.get(evidence["url"])
            assert shown.status_code == 200
            assert shown.headers["content-type"] == "image/jpeg"
            assert hashlib.sha256(shown.content).hexdigest() == evidence["redacted_sha256"]
            original = site.get(evidence["url"] + "?original=true")
            assert hashlib.sha256(original.content).hexdigest() == evidence["sha256"]

    everything = site.get("/api/v1/cases").json()
    assert len(everything) == 2, "pedestrians must raise nothing"
    fire = site.get("/api/v1/cases", DEPARTMENT_TOKENS["fire_rescue"]).json()
    assert fire == []


def test_holding_the_last_frame_exercises_a_dwell_of_minutes(
    deploy: list[Deployment], tmp_path: Path, mosquitto: MosquittoProcess, database_url: str
) -> None:
    """No-parking dwells run to minutes; the 79.5 s clip plus 60 s of its last frame covers 2."""
    site = Deployment(tmp_path, "vtest.yaml", mosquitto.port, database_url, dwell_seconds=120)
    deploy.append(site)
    site.start_server()

    summary = site.replay("cam-building", VTEST, "--hold-last", "60")

    assert summary["clip_seconds"] >= 139
    opened = summary["violations"]
    assert len(opened) == 2
    assert all(v["dwell_seconds"] >= 120 for v in opened)
    cases = site.get("/api/v1/cases").json()
    assert sorted(c["violation_id"] for c in cases) == sorted(v["violation_id"] for v in opened)


def test_cars_stopping_briefly_at_the_line_raise_nothing(
    deploy: list[Deployment], tmp_path: Path, mosquitto: MosquittoProcess, database_url: str
) -> None:
    site = _new(deploy, tmp_path, "intersection.yaml", mosquitto, database_url)
    site.start_server()

    summary = site.replay("cam-junction", INTERSECTION)

    assert summary["frames"] == 298
    assert summary["violations"] == []
    assert site.get("/api/v1/cases").json() == []


def test_events_published_while_ingest_is_down_arrive_once(
    deploy: list[Deployment], tmp_path: Path, mosquitto: MosquittoProcess, database_url: str
) -> None:
    site = _new(deploy, tmp_path, "vtest.yaml", mosquitto, database_url)
    site.start_server()  # creates ingest's persistent session on the broker
    site.stop_server()

    replay = site.replay_process("cam-building", VTEST, "--confirm-timeout", "300", terminal=True)
    # The whole clip runs and publishes while nothing consumes; then ingest comes back.
    deadline = time.monotonic() + 240
    while f"replay: {VTEST_FRAMES} frames" not in site.replay_log():
        assert replay.poll() is None, site.replay_log()[-3000:]
        assert time.monotonic() < deadline, "the clip did not end in 240 s"
        time.sleep(0.05)
    assert replay.poll() is None, "the replay ended with nothing confirmed"
    site.start_server()
    out, _ = replay.communicate(timeout=300)
    assert replay.returncode == 0, (tmp_path / "replay.log").read_text()[-3000:]

    summary = json.loads(out)
    assert summary["events_published"] == summary["events_confirmed"] > 0
    cases = site.get("/api/v1/cases").json()
    assert len(cases) == len(summary["violations"]) == 2
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*), count(DISTINCT message_id) FROM events"))
            total, distinct = stored.one()
    finally:
        engine.dispose()
    assert total == distinct == summary["events_published"]
