"""Motion gating on real footage (vtest.avi) and a real still (street.png)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from edge.capture import ReplaySource, read_image
from edge.config import MotionSettings
from edge.detections import Frame
from edge.motion import MotionGate
from tests.unit.edge.conftest import T0

VTEST_SIZE = (768, 576)
# The kerb by the building where a van and a car stay parked the whole clip (tests/e2e config).
PARKED_KERB = [[600, 30], [768, 30], [768, 118], [600, 118]]
# The lower half of the frame, where pedestrians keep walking.
WALKWAY = [[0, 300], [768, 300], [768, 576], [0, 576]]
NO_RECHECK = MotionSettings(recheck_seconds=10_000)


def _detect_share(shared_data: Path, polygon: list[list[int]]) -> float:
    gate = MotionGate([polygon], VTEST_SIZE, NO_RECHECK)
    frames = list(ReplaySource(shared_data / "clips" / "vtest.avi"))
    return sum(gate.should_detect(f) for f in frames) / len(frames)


def test_a_zone_with_parked_vehicles_only_skips_most_frames(shared_data: Path) -> None:
    assert _detect_share(shared_data, PARKED_KERB) < 0.15


def test_a_zone_people_walk_through_is_detected_on_most_frames(shared_data: Path) -> None:
    assert _detect_share(shared_data, WALKWAY) > 0.5


def _still(shared_data: Path, seconds: float, index: int = 0) -> Frame:
    image = read_image(shared_data / "images" / "street.png")
    return Frame(image=image, index=index, timestamp=T0 + timedelta(seconds=seconds))


def _whole_frame(frame: Frame) -> list[list[float]]:
    height, width = frame.image.shape[:2]
    return [[0, 0], [width, 0], [width, height], [0, height]]


def test_a_still_scene_is_rechecked_at_the_interval(shared_data: Path) -> None:
    first = _still(shared_data, 0)
    height, width = first.image.shape[:2]
    gate = MotionGate([_whole_frame(first)], (width, height), MotionSettings(recheck_seconds=5))
    decided = [gate.should_detect(_still(shared_data, s, s)) for s in range(21)]
    assert [s for s, yes in enumerate(decided) if yes] == [0, 5, 10, 15, 20]


def test_a_clock_that_jumps_back_forces_a_check(shared_data: Path) -> None:
    first = _still(shared_data, 100)
    height, width = first.image.shape[:2]
    gate = MotionGate([], (width, height), MotionSettings(recheck_seconds=60))
    assert gate.should_detect(first)
    assert not gate.should_detect(_still(shared_data, 101))
    assert gate.should_detect(_still(shared_data, 50))


def test_only_change_inside_the_zones_counts(shared_data: Path) -> None:
    """The change is generated: a dark block pasted onto the real still, in or out of the zone."""
    still = _still(shared_data, 0)
    height, width = still.image.shape[:2]
    zone = [[0, 0], [width // 2, 0], [width // 2, height], [0, height]]  # the left half

    def with_block(x: int, seconds: float) -> Frame:
        image = still.image.copy()
        image[height // 3 : height // 3 + height // 5, x : x + width // 6] = 0
        return Frame(image=image, index=1, timestamp=T0 + timedelta(seconds=seconds))

    gate = MotionGate([zone], (width, height), NO_RECHECK)
    assert gate.should_detect(still)
    assert not gate.should_detect(with_block(width * 3 // 4, 1)), "right half is outside"
    assert gate.should_detect(with_block(width // 8, 2)), "left half is the zone"
    assert not gate.should_detect(with_block(width // 8, 3)), "the block stopped moving"


def test_disabled_gate_detects_every_frame(shared_data: Path) -> None:
    first = _still(shared_data, 0)
    height, width = first.image.shape[:2]
    gate = MotionGate([], (width, height), MotionSettings(enabled=False))
    assert all(gate.should_detect(_still(shared_data, s)) for s in range(3))


@pytest.mark.parametrize(
    ("polygons", "message"),
    [
        ([[[0, 0], [10, 10]]], "zone polygon 0 needs 3"),
        ([[[0, 0, 1], [10, 10, 1], [0, 10, 1]]], "zone polygon 0 needs 3"),
        ([[[2000, 2000], [2100, 2000], [2100, 2100]]], "outside"),
    ],
)
def test_bad_zones_are_named(polygons: list[list[list[float]]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MotionGate(polygons, VTEST_SIZE, MotionSettings())


def test_bad_frame_size_and_blur_are_refused() -> None:
    with pytest.raises(ValueError, match="frame size"):
        MotionGate([], (0, 576), MotionSettings())
    with pytest.raises(ValueError, match="blur must be odd"):
        MotionGate([], VTEST_SIZE, MotionSettings(blur=4))


def test_settings_refuse_unknown_fields() -> None:
    with pytest.raises(ValueError, match="extra"):
        MotionSettings.model_validate({"recheck_second": 3})
    assert np.isclose(MotionSettings().recheck_seconds, 5.0)
