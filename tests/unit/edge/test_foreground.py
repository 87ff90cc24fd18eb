"""Stationary foreground on a fire lane, on real footage (vtest.avi: people walk along the road).

Where a stopped object is needed, the scene is GENERATED: a drawn stack of boxes is pasted onto
real vtest frames; the brightness ramp is likewise generated from real frames.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.capture import ReplaySource
from edge.config import ForegroundSettings
from edge.detections import Frame, Image, box_iou
from edge.foreground import (
    STATIONARY_CLASS_NAME,
    ForegroundResult,
    Grey,
    StationaryForeground,
    blocked_share_with_boxes,
)
from tests.unit.edge.conftest import T0
from tests.unit.edge.scenes import FIRE_LANE, STACK, with_stack

VTEST_SIZE = (768, 576)
VTEST_FPS = 10.0


def _vtest(shared_data: Path, frames: int | None = None) -> Iterator[Frame]:
    return islice(ReplaySource(shared_data / "clips" / "vtest.avi", start=T0), frames)


def _feed(
    foreground: StationaryForeground,
    frames: Iterator[Frame],
    edit: Callable[[Frame], Image] | None = None,
) -> list[ForegroundResult]:
    """Feed every (edited) frame; returns the results."""
    results = []
    for frame in frames:
        shown = frame if edit is None else Frame(edit(frame), frame.index, frame.timestamp)
        results.append(foreground.update(shown))
    return results


def _lane() -> StationaryForeground:
    return StationaryForeground(FIRE_LANE, VTEST_SIZE, ForegroundSettings())


def _bare_road(foreground: StationaryForeground, shared_data: Path) -> Grey:
    """The lane with nobody on it: the median of real vtest frames two seconds apart."""
    views = [foreground.analysis_view(f.image) for f in islice(_vtest(shared_data), 0, None, 20)]
    return np.median(np.stack(views), axis=0).astype(np.float32)


def _model_error(foreground: StationaryForeground, reference: Grey) -> float:
    """Mean grey difference between the long-term model and a reference, under the stack."""
    rows, cols = _stack_region(foreground)
    model = foreground.long_term_model
    assert model is not None
    return float(np.abs(model[rows, cols] - reference[rows, cols]).mean())


def _stack_region(foreground: StationaryForeground) -> tuple[slice, slice]:
    """The stack's rectangle on the analyser's grid, shrunk by a pixel against blur at its rim."""
    window, scale = foreground.window, foreground.settings.downscale
    x1, y1, x2, y2 = STACK
    rows = slice(round((y1 - window.y0) * scale) + 1, round((y2 - window.y0) * scale) - 1)
    cols = slice(round((x1 - window.x0) * scale) + 1, round((x2 - window.x0) * scale) - 1)
    return rows, cols


def test_pedestrians_walking_along_the_lane_raise_nothing(shared_data: Path) -> None:
    """Real vtest.avi, whole clip: people walk (and pause briefly) on the road; nothing stopped."""
    results = _feed(_lane(), _vtest(shared_data))
    assert len(results) > 700
    raised = [(i, r.objects.xyxy.tolist()) for i, r in enumerate(results) if len(r.objects)]
    assert raised == []
    assert max(r.blocked_share for r in results) == 0.0


def test_cars_driving_through_raise_nothing(shared_data: Path) -> None:
    """Real car-detection.mp4: cars drive along a car park aisle and leave; the whole view is
    the lane."""
    aisle = StationaryForeground(
        [[0, 0], [768, 0], [768, 432], [0, 432]], (768, 432), ForegroundSettings()
    )
    frames = ReplaySource(shared_data / "clips" / "car-detection.mp4", start=T0)
    results = _feed(aisle, iter(frames))
    assert len(results) > 350
    assert [i for i, r in enumerate(results) if len(r.objects)] == []


def test_a_stack_of_boxes_is_found_with_a_stable_id_and_its_share(shared_data: Path) -> None:
    """GENERATED: a drawn stack of boxes pasted on real vtest frames 150-449, then taken away."""
    appear, leave = 150, 450

    def edit(frame: Frame) -> Image:
        return with_stack(frame.image) if appear <= frame.index < leave else frame.image

    foreground = _lane()
    road = _bare_road(foreground, shared_data)
    frames = _vtest(shared_data, 650)
    results = _feed(foreground, islice(frames, leave), edit)
    # Thirty seconds under the stack: the long-term model still holds the bare road there.
    assert _model_error(foreground, road) < 8.0
    stack = foreground.analysis_view(with_stack(next(_vtest(shared_data, 1)).image))
    assert _model_error(foreground, stack) > 30.0
    after = _feed(foreground, frames, edit)

    found = next(i for i, r in enumerate(results) if len(r.objects))
    assert appear < found <= appear + 10 * VTEST_FPS  # within ten seconds of stopping
    expected_share = blocked_share_with_boxes(
        FIRE_LANE, VTEST_SIZE, np.zeros((0, 0), dtype=np.bool_), np.array([STACK])
    )
    settled = results[found + 20 :]
    ids = {int(r.objects.tracker_id[0]) for r in settled}
    assert ids == {int(results[found].objects.tracker_id[0])}
    for result in settled:
        assert len(result.objects) == 1
        assert result.objects.names() == [STATIONARY_CLASS_NAME]
        assert box_iou(result.objects.xyxy[0], np.array(STACK, dtype=np.float32)) > 0.6
        assert result.blocked_share == pytest.approx(expected_share, rel=0.25)
        assert 0.5 < float(result.objects.confidence[0]) <= 1.0

    # Gone at once when taken away, never back, and the model goes on learning the road.
    assert [i for i, r in enumerate(after) if len(r.objects)] == []
    assert _model_error(foreground, road) < 8.0


def test_an_object_there_at_start_that_leaves_is_relearned(shared_data: Path) -> None:
    """GENERATED: the drawn stack stands on real vtest frames from the start and leaves at 30 s.

    The long-term model learned it as background; once it leaves, its "ghost" must not be
    reported as a stationary object, and the model must learn the bare road there.
    """
    leave = 300
    foreground = _lane()
    road = _bare_road(foreground, shared_data)
    frames = _vtest(shared_data, 600)
    before = _feed(foreground, islice(frames, leave), lambda f: with_stack(f.image))
    assert _model_error(foreground, road) > 30.0  # it learned the stack at start
    after = _feed(foreground, frames)
    assert [i for i, r in enumerate(before + after) if len(r.objects)] == []
    assert _model_error(foreground, road) < 8.0


def test_a_global_brightness_ramp_raises_nothing(shared_data: Path) -> None:
    """GENERATED from real vtest frames: the light falls to half over 10 s, then back up."""

    def dim(frame: Frame) -> Image:
        seconds = frame.index / VTEST_FPS
        gain = 1.0 - 0.5 * float(np.clip(min(seconds - 10, 40 - seconds) / 10, 0, 1))
        dimmed = np.clip(frame.image.astype(np.float32) * gain, 0, 255)
        return np.asarray(dimmed, dtype=np.uint8)

    results = _feed(_lane(), _vtest(shared_data, 450), dim)
    assert [i for i, r in enumerate(results) if len(r.objects)] == []


def test_blocked_share_counts_the_union_of_mask_and_boxes_inside_the_lane() -> None:
    """Pure geometry: a 200x100 lane, a mask over its left half, boxes over parts of it."""
    lane = [[100, 100], [300, 100], [300, 200], [100, 200]]
    mask = np.zeros((25, 50), dtype=np.bool_)  # the lane's box at quarter scale
    mask[:, :25] = True
    right_quarter = [250, 100, 300, 200]
    overlapping_mask = [150, 100, 200, 200]
    outside_the_lane = [0, 0, 90, 90]
    share = blocked_share_with_boxes(lane, (400, 300), mask, np.array([right_quarter]))
    assert share == pytest.approx(0.75, abs=0.02)
    both = np.array([right_quarter, overlapping_mask, outside_the_lane])
    assert blocked_share_with_boxes(lane, (400, 300), mask, both) == pytest.approx(0.75, abs=0.02)
    empty = np.zeros((0, 0), dtype=np.bool_)
    assert blocked_share_with_boxes(lane, (400, 300), empty, np.zeros((0, 4))) == 0.0


def test_a_lane_outside_the_frame_is_refused() -> None:
    with pytest.raises(ValueError, match="outside the 768x576 frame"):
        StationaryForeground([[800, 10], [900, 10], [900, 90]], VTEST_SIZE, ForegroundSettings())


def test_a_frame_of_another_size_is_refused(shared_data: Path) -> None:
    """Real vtest frame, halved: the analyser was built for the full size and says so."""
    frame = next(_vtest(shared_data, 1))
    half = np.asarray(cv2.resize(frame.image, (384, 288)), dtype=np.uint8)
    small = Frame(half, 7, frame.timestamp)
    foreground = _lane()
    with pytest.raises(ValueError, match="frame 7: expected a 768x576"):
        foreground.update(small)
