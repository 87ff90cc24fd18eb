"""The warning stage end to end on real footage (issue 13 point 3): vtest.avi's parked van and
car through a gateway's live pipeline (real detector, tracker, dwell rules, exemption gate and
warning stage, signed rule store, outbox, MQTT publisher), a private Mosquitto and `civicwatch
server` (ingest, API, rule documents) on SQLite and PostgreSQL.

The deployment (broker, server, signing key, the 15 s clip) is
tests/e2e/test_exemptions_replay.py's, imported; the gateway is `civicwatch replay` itself.
Warned-and-stayed: a 6 s grace, both still there (the clip's last frame held 10 s past its end,
which spares the detector): each item goes to the department after its grace, with its before
and after frames. Warned-and-gone: the vehicles never leave in the clip, so a generated 25 s
copy paints the kerb over from 12 s; within the 30 s grace they clear, and each item closes as
warned, complied.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from contracts.announce import read_announcement
from contracts.exemptions import WarningStageRule
from contracts.mqtt import MqttSession
from contracts.topics import ROOT
from edge.detections import Image
from storage.tables import utcnow
from tests.e2e.test_exemptions_replay import (
    CAMERA,
    LONG_CLIP_SECONDS,
    SITE,
    Site,
    clip,
    cut_vtest,
    site,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

__all__ = ["clip", "site"]  # the imported module-scoped fixtures this module runs on

PAINT_FROM_SECONDS = 12.0
KERB = (560, 0, 768, 150)  # x1, y1, x2, y2: the zone [[600, 30], [768, 118]] and a margin
STAYED_HOLD_SECONDS = 10.0  # the 15 s clip and its last frame: the 6 s grace ends at 16 s


def _paint_kerb(at: float, image: Image) -> None:
    if at >= PAINT_FROM_SECONDS:
        x1, y1, x2, y2 = KERB
        image[y1:y2, x1:x2] = 128


@pytest.fixture(scope="module")
def gone_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vtest.avi's first 25 s with the kerb painted grey from PAINT_FROM_SECONDS on."""
    path = tmp_path_factory.mktemp("clip") / "vtest-25s-gone.avi"
    return cut_vtest(path, LONG_CLIP_SECONDS, _paint_kerb)


def stage(grace_minutes: float) -> WarningStageRule:
    now = utcnow()
    return WarningStageRule(
        id=f"warn-{uuid.uuid4().hex[:8]}",
        site_id=SITE,
        valid_from=now - timedelta(minutes=5),
        reason="先提醒后执法 warn first",
        issued_at=now,
        grace_minutes=grace_minutes,
        channels=["announce"],
        repeat_warnings=50,
        repeat_days=1,
    )


def announcements(site: Site) -> tuple[MqttSession, list[Any]]:
    heard: list[Any] = []
    listener = MqttSession(
        site.broker.settings,
        f"announce-{uuid.uuid4().hex[:8]}",
        subscriptions=lambda: [(f"{ROOT}/+/+/announce", 1)],
        on_message=lambda m: heard.append(read_announcement(m.topic, bytes(m.payload))),
    )
    listener.start()
    assert listener.connected.wait(10)
    return listener, heard


def run(
    site: Site, clip_path: Path, grace_minutes: float, *extra: str
) -> tuple[dict[str, list[Any]], list[Any]]:
    """`civicwatch replay` (the real wiring, announcements included; no plates: vtest.avi's
    cannot be read, and none is needed to warn) under a fresh warning_stage rule; the events
    the gateway published, by violation, and the announcements heard."""
    listener, heard = announcements(site)
    rule = stage(grace_minutes)
    before = len(site.published)
    try:
        with site.service() as service:
            service.issue_rule(rule, "pm-chief")
            try:
                summary = site.deployment.replay(CAMERA, clip_path, *extra)
            finally:
                service.revoke(rule.id, "pm-chief", "test over")
    finally:
        listener.stop()
    assert summary["all_confirmed"], summary
    by_violation: dict[str, list[Any]] = {}
    for event in site.published[before:]:
        by_violation.setdefault(event["violation_id"], []).append(event)
    assert by_violation, "the van and the car crossed their dwell"
    return by_violation, heard


def case_of(site: Site, violation_id: str) -> dict[str, Any] | None:
    cases = site.api("GET", "/cases?limit=200").json()
    return next((c for c in cases if c.get("violation_id") == violation_id), None)


def test_warned_and_stayed_goes_to_the_department_after_the_grace(site: Site, clip: Path) -> None:
    by_violation, heard = run(site, clip, 0.1, "--hold-last", str(STAYED_HOLD_SECONDS))
    for violation_id, events in by_violation.items():
        phases = [e["phase"] for e in events]
        assert phases[:2] == ["warned", "opened"], phases
        warned, opened = events[0], events[1]
        assert warned["warning"]["announced"]
        assert opened["warning"] == warned["warning"]
        assert opened["observed_at"] >= warned["warning"]["grace_until"]
        assert any(str(a.violation_id) == violation_id for a in heard), "announced at the gate"

        def dispatched(v: str = violation_id) -> bool:
            case = case_of(site, v)
            return case is not None and case["state"] == "dispatched"

        wait_for(dispatched, 30, f"{violation_id}'s item dispatched")
        case = case_of(site, violation_id)
        assert case is not None
        assert case["department"]
        text = json.dumps(site.api("GET", f"/cases/{case['id']}").json())
        assert "dwell_crossed" in text, "the before frames"
        assert "latest" in text, "the after frames"


def test_warned_and_gone_closes_as_warned_complied(site: Site, gone_clip: Path) -> None:
    by_violation, heard = run(site, gone_clip, grace_minutes=0.5)
    for violation_id, events in by_violation.items():
        phases = [e["phase"] for e in events]
        assert phases == ["warned", "complied"], phases

        def closed(v: str = violation_id) -> bool:
            case = case_of(site, v)
            return case is not None and case["state"] == "closed"

        wait_for(closed, 30, f"{violation_id}'s item closed")
        case = case_of(site, violation_id)
        assert case is not None
        assert case["department"] is None, "never went to a department"
        detail = site.api("GET", f"/cases/{case['id']}").json()
        [closing] = [
            step
            for step in detail["transitions"]
            if step.get("from_state") == "warned" and step.get("to_state") == "closed"
        ]
        assert closing["reason"] == "warned, complied"
    assert {str(a.violation_id) for a in heard} == set(by_violation)
    assert {a.camera_id for a in heard} == {CAMERA}
