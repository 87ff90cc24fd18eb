from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path

import pytest

from contracts.sites import CameraConfig
from contracts.status import CameraHealth
from edge.capture import (
    ReplaySource,
    SourceError,
    StillImageCapture,
    VideoFileCapture,
    open_source,
)
from tests.unit.edge.conftest import T0


def test_replay_runs_by_the_clip_clock(shared_data: Path) -> None:
    source = ReplaySource(shared_data / "clips" / "vtest.avi", start=T0)
    frames = list(source)
    assert len(frames) == source.frames_total == 795
    assert source.fps == 10.0
    assert [f.index for f in frames[:3]] == [0, 1, 2]
    assert frames[0].timestamp == T0
    assert frames[-1].timestamp == T0 + timedelta(seconds=79.4)
    assert frames[0].image.shape == (576, 768, 3)


def test_replay_loops_then_holds_the_last_frame(shared_data: Path) -> None:
    source = ReplaySource(
        shared_data / "clips" / "vtest.avi", loop=1, hold_last_seconds=60, start=T0
    )
    frames = list(source)
    clip_end = T0 + timedelta(seconds=1589 / 10)
    played = [f for f in frames if f.timestamp <= clip_end]
    held = [f for f in frames if f.timestamp > clip_end]
    assert len(played) == 2 * 795
    assert frames[-1].timestamp == clip_end + timedelta(seconds=60)
    assert len(held) == 120, "held frames thinned to 2 fps of clip time"
    assert source.frames_total == len(frames), "progress knows the total up front"
    assert all(f.image is held[0].image for f in held)
    assert source.clip_seconds == pytest.approx(159 + 60)


def test_a_missing_file_names_its_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(SourceError, match=re.escape(str(missing))):
        ReplaySource(missing)
    with pytest.raises(SourceError, match=r"nope\.mp4"):
        open_source(CameraConfig(id="cam-1", source=str(missing)))


def test_a_corrupt_video_names_its_path(tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes(b"not a video at all" * 100)
    with pytest.raises(SourceError, match=r"broken\.mp4"):
        list(ReplaySource(corrupt))


def test_a_still_image_repeats_at_the_camera_fps(shared_data: Path) -> None:
    camera = CameraConfig(id="cam-1", source=str(shared_data / "images" / "street.png"), fps=20)
    source = open_source(camera)
    assert isinstance(source, StillImageCapture)
    source.start()
    try:
        first = source.latest(timeout=2)
        second = source.latest(timeout=2)
    finally:
        source.stop()
    assert first is not None
    assert second is not None
    assert second.index > first.index
    assert second.timestamp > first.timestamp
    assert first.image.ndim == 3
    assert source.health is CameraHealth.OK


def test_a_package_resource_resolves() -> None:
    source = open_source(CameraConfig(id="cam-1", source="pkg://ultralytics/assets/bus.jpg"))
    assert isinstance(source, StillImageCapture)
    assert source.image.shape[2] == 3


def test_a_video_file_plays_as_a_live_camera_at_its_own_speed(shared_data: Path) -> None:
    clip = shared_data / "clips" / "intersection-demo1.mp4"  # 24 fps
    source = open_source(CameraConfig(id="cam-1", source=str(clip)))
    assert isinstance(source, VideoFileCapture)
    assert source.fps == pytest.approx(24.0, abs=0.1)
    source.start()
    try:
        first = source.latest(timeout=5)
        time.sleep(1.0)
        later = source.latest(timeout=5)
    finally:
        source.stop()
    assert first is not None
    assert later is not None
    assert first.image.shape == (352, 640, 3)
    # Played in real time, not as fast as it decodes: about 24 frames in that second.
    assert 12 <= later.index - first.index <= 40
    assert source.health is CameraHealth.OK
