"""A held exemption that runs out late in a stay must still leave the gateway.

ExemptionGate opens a held violation only with frames, and the dwell rule's updates carry
frames only at the 1st, 2nd, 4th ... 32nd update (edge.evidence_cadence). Before the fix a
family-bay stay that ran over after the 32nd update, or a permit revoked after it, was never
published: with the default minute between updates, a 60-minute family bay was never enforced.
Now the gate asks the rule for frames on the next update (found by
tests/e2e/test_exemptions_replay.py's timing, issue 13).

The pipeline is real (tracker, dwell rule, gate, signed rule store, outbox); the detections are
a fixed car box and the plate reader is tests/e2e/replay_with_plates.KnownPlates.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from contracts.events import ModelInfo, Phase
from contracts.exemptions import FamilyBayRule, RuleDocument
from contracts.rule_signing import (
    generate_key_pair,
    private_key_from_text,
    public_key_from_text,
    sign_document,
)
from contracts.sites import CameraConfig, SiteConfig, ZoneConfig, ZoneKind
from edge.config import EdgeSettings, EvidenceSettings
from edge.detections import Detections, Frame
from edge.outbox import Outbox
from edge.pipeline import CameraPipeline, GatewayServices
from edge.redaction import EvidenceSealer
from edge.rule_store import RuleStore
from tests.e2e.replay_with_plates import KnownPlates

T0 = datetime(2026, 12, 4, 2, tzinfo=UTC)
PLATE = "沪A12345"
ZONE = ZoneConfig(
    id="bay",
    kind=ZoneKind.NO_PARKING,
    polygon=[[0, 0], [400, 0], [400, 300], [0, 300]],
    dwell_seconds=10,
)
UPDATE_SECONDS = 2.0  # frames ride on updates at 12, 14, 18, 26, 42 and 74 s of the stay


def opened_second(tmp_path: Path, bay_minutes: int, stay_seconds: int) -> int | None:
    """When a car staying ``stay_seconds`` in a ``bay_minutes`` family bay opens, if ever."""
    private, public = generate_key_pair()
    site = SiteConfig(id="s1")
    store = RuleStore(tmp_path / "rules.json", public_key_from_text(public), site, "g1")
    bay = FamilyBayRule(
        id="bay-rule",
        site_id="s1",
        zone_id="bay",
        valid_from=T0 - timedelta(days=1),
        reason="孝心车位",
        issued_at=T0,
        max_minutes=bay_minutes,
        max_visits_per_day=3,
        family_max_minutes=bay_minutes,
    )
    document = RuleDocument(site_id="s1", gateway_id="g1", version=1, issued_at=T0, rules=[bay])
    assert store.offer(sign_document(document, private_key_from_text(private)))
    services = GatewayServices(
        model_info=ModelInfo(name="fixed boxes", version="1"),
        outbox=Outbox(tmp_path / "outbox.sqlite"),
        sealer=EvidenceSealer(None),
        plate_reader=KnownPlates(PLATE, PLATE),
        rules=store,
    )
    settings = EdgeSettings(
        data_dir=tmp_path, evidence=EvidenceSettings(update_interval_seconds=UPDATE_SECONDS)
    )
    camera = CameraConfig(id="cam", source="x.avi", zones=[ZONE])
    pipeline = CameraPipeline("s1", "g1", camera, settings, services, fps=1)
    image = np.zeros((300, 400, 3), np.uint8)
    car = Detections.create([(100, 100, 200, 180)], [0.9], [2], {2: "car"}, [1])
    for second in range(stay_seconds):
        frame = Frame(image, second, T0 + timedelta(seconds=second))
        if any(e.phase is Phase.OPENED for e in pipeline.process(frame, car)):
            return second
    assert store.exempted == 1, "held at the dwell crossing"
    return None


def test_a_stay_that_runs_over_while_updates_still_carry_frames_opens(tmp_path: Path) -> None:
    second = opened_second(tmp_path, bay_minutes=1, stay_seconds=200)
    assert second is not None
    assert 60 <= second <= 74  # at the next update with frames after the bay's minute


def test_a_stay_that_runs_over_after_the_last_update_with_frames_still_opens(
    tmp_path: Path,
) -> None:
    second = opened_second(tmp_path, bay_minutes=2, stay_seconds=200)
    assert second is not None, "the car stayed 200 s in a 2-minute bay and no case opened"
    assert 120 <= second <= 125
