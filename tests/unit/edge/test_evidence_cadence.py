"""Bounded evidence at the source, and captions in the site's local time with no words."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from contracts.events import Phase
from contracts.sites import ZoneConfig
from edge.config import EvidenceSettings, TrackerSettings
from edge.evidence import caption_text
from edge.evidence_cadence import MAX_UPDATES_WITH_FRAMES, update_carries_frames
from edge.rules import DwellRule
from edge.violation_evidence import ViolationEvidence
from edge.zones import PolygonZone
from tests.unit.edge.conftest import frame_at, tracked

PARKED = (150.0, 150.0, 250.0, 200.0)
SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_updates_carry_frames_at_doubling_intervals_up_to_a_cap() -> None:
    carrying = [n for n in range(1, 10_000) if update_carries_frames(n)]
    assert carrying == [1, 2, 4, 8, 16, 32][:MAX_UPDATES_WITH_FRAMES]
    assert [n for n in range(1, 20) if update_carries_frames(n, cap=3)] == [1, 2, 4]
    with pytest.raises(ValueError, match="start at 1"):
        update_carries_frames(0)


def test_a_violation_that_runs_an_hour_sends_a_bounded_number_of_frames(zone: ZoneConfig) -> None:
    rule = DwellRule(
        "cam-1",
        zone,
        TrackerSettings(),
        EvidenceSettings(update_interval_seconds=60),
        timezone=SHANGHAI,
    )
    events = []
    for i, t in enumerate(range(0, 65 * 60, 10)):
        events += rule.update(frame_at(t, i), tracked((7, "car", PARKED)))
    updated = [e for e in events if e.phase is Phase.UPDATED]
    assert len(updated) >= 60, "an update still goes out every minute"
    with_frames = [e for e in updated if e.evidence]
    assert len(with_frames) == MAX_UPDATES_WITH_FRAMES
    # Minutes after the opening at which pictures went: 1, 2, 4, 8, 16, 32.
    opened_at = next(e for e in events if e.phase is Phase.OPENED).observed_at
    minutes = [round((e.observed_at - opened_at).total_seconds() / 60) for e in with_frames]
    assert minutes == [1, 2, 4, 8, 16, 32]
    assert sum(len(e.evidence) for e in updated) == 2 * MAX_UPDATES_WITH_FRAMES


def test_a_caption_is_local_time_with_its_offset_and_ids_only() -> None:
    at = datetime(2026, 12, 3, 11, 40, 12, 500_000, tzinfo=UTC)
    assert caption_text(at, SHANGHAI, "cam-gate", "fire-lane") == (
        "2026-12-03 19:40:12 +08:00  cam-gate  fire-lane"
    )
    assert caption_text(at, UTC, "cam-gate") == "2026-12-03 11:40:12 +00:00  cam-gate"
    # The burnt-in font draws ASCII only: a plate's province character is left out, not a "?".
    assert caption_text(at, SHANGHAI, "cam-gate", "京A12345").endswith("cam-gate  A12345")


def test_violation_pictures_are_captioned_in_the_sites_time(zone: ZoneConfig) -> None:
    pictures = ViolationEvidence("cam-1", PolygonZone(zone), EvidenceSettings(), SHANGHAI)
    at = frame_at(0).timestamp  # 08:00 UTC
    caption = pictures.caption(at)
    assert caption.startswith("2024-05-01 16:00:00 +08:00")
    assert "UTC" not in caption
    assert "entry" not in caption
    assert pictures.caption(at, "B12345").endswith("cam-1  gate-no-parking  B12345")
