"""Camera health on real footage: every clip in ../shared/data/clips must read healthy.

The faults are GENERATED from real frames (vtest.avi, car-detection.mp4): a frame repeated,
blacked out or made uniform, blurred, shifted, rotated, cropped, or no frames at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import pytest

from contracts.status import CameraProblem
from edge.capture import ReplaySource
from edge.config import HealthSettings
from edge.detections import Frame, Image
from edge.health import CameraHealthMonitor
from tests.unit.edge.conftest import T0

FROZEN, COVERED, BLURRED, MOVED, OFFLINE = (
    CameraProblem.FROZEN,
    CameraProblem.COVERED,
    CameraProblem.BLURRED,
    CameraProblem.MOVED,
    CameraProblem.OFFLINE,
)
# One check a second, raise after 3 bad checks, clear after 3 good; the view is compared on
# every check here (by default only every few seconds) so all problems count checks alike.
SETTINGS = HealthSettings(view_interval_seconds=0)


def _one_a_second(clip: Path, seconds: int) -> list[Image]:
    """Real frames of a clip, one per second of its own clock."""
    source = ReplaySource(clip, start=T0)
    step = max(1, round(source.fps))
    return [f.image for f in islice(source, 0, seconds * step, step)]


@pytest.fixture(scope="module")
def vtest(shared_data: Path) -> list[Image]:
    return _one_a_second(shared_data / "clips" / "vtest.avi", 40)


class _Camera:
    """Feeds a monitor one frame a second and keeps what it said after each."""

    def __init__(self, monitor: CameraHealthMonitor) -> None:
        self.monitor = monitor
        self.second = 0
        self.said: list[list[CameraProblem]] = []

    def show(self, images: Iterable[Image]) -> list[list[CameraProblem]]:
        said = []
        for image in images:
            frame = Frame(image, self.second, T0 + timedelta(seconds=self.second))
            said.append(self.monitor.observe(frame))
            self.second += 1
        self.said.extend(said)
        return said


def _first(problem: CameraProblem, said: list[list[CameraProblem]]) -> int | None:
    return next((i for i, problems in enumerate(said) if problem in problems), None)


def _healthy_camera(vtest: list[Image]) -> _Camera:
    camera = _Camera(CameraHealthMonitor(SETTINGS, baseline=vtest[0]))
    assert camera.show(vtest[:5]) == [[]] * 5
    return camera


def _raised_then_cleared(
    camera: _Camera, vtest: list[Image], fault: Callable[[Image], Image], problem: CameraProblem
) -> None:
    """The fault shows for six checks: raised on the third; real frames clear it on the third."""
    faulty = camera.show(fault(image) for image in vtest[5:11])
    assert [problem in p for p in faulty] == [False, False, True, True, True, True]
    assert {p for problems in faulty for p in problems} == {problem}
    recovered = camera.show(vtest[11:16])
    assert [problem in p for p in recovered] == [True, True, False, False, False]
    assert recovered[-1] == []


def test_every_real_clip_reads_healthy(shared_data: Path) -> None:
    """All clips, every frame fed, a check every half second: no problem on any of them."""
    clips = sorted((shared_data / "clips").iterdir())
    assert len(clips) >= 7
    seen: dict[str, set[CameraProblem]] = {}
    for clip in clips:
        monitor = CameraHealthMonitor(
            HealthSettings(check_interval_seconds=0.5, view_interval_seconds=0)
        )
        seen[clip.name] = set()
        views_checked = 0
        for frame in ReplaySource(clip, start=T0):
            seen[clip.name].update(monitor.observe(frame))
            measured = monitor.measurement
            views_checked += (
                measured is not None
                and measured.at == frame.timestamp
                and (measured.view is not None)
            )
        assert views_checked >= 10, f"{clip.name}: its view was checked {views_checked} times"
    assert seen == {name: set() for name in seen}


def test_a_repeated_frame_reads_frozen_after_frozen_seconds(vtest: list[Image]) -> None:
    """GENERATED: one real frame repeated for 30 s, then the live clip again."""
    camera = _healthy_camera(vtest)
    held = camera.show([vtest[5]] * 30)  # from second 5 on
    frozen_at = int(SETTINGS.frozen_seconds)  # second 25: twenty seconds without a change
    assert _first(FROZEN, held) == frozen_at
    assert all(p == [FROZEN] for p in held[frozen_at:])
    recovered = camera.show(vtest[6:11])
    assert [FROZEN in p for p in recovered] == [True, True, False, False, False]


def test_a_still_scene_with_live_sensor_noise_is_not_frozen(vtest: list[Image]) -> None:
    """GENERATED: one real frame with fresh noise (sigma 3) each second, as a live camera
    looking at a scene where nothing moves; a quiet real clip changes about as little."""
    camera = _healthy_camera(vtest)
    noise = np.random.default_rng(7)

    def live(image: Image) -> Image:
        noisy = image.astype(np.float32) + noise.normal(0.0, 3.0, image.shape)
        return np.asarray(np.clip(noisy, 0, 255), dtype=np.uint8)

    said = camera.show(live(vtest[5]) for _ in range(30))
    assert said == [[]] * 30
    measured = camera.monitor.measurement
    assert measured is not None
    assert measured.change is not None
    assert measured.change < 1.0  # the picture barely changes, and still is not frozen


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(lambda image: np.zeros_like(image), id="black"),
        pytest.param(lambda image: np.full_like(image, 128), id="uniform-grey"),
        pytest.param(lambda image: (image // 25).astype(np.uint8), id="nearly-black"),
    ],
)
def test_a_covered_lens_reads_covered_and_recovers(
    vtest: list[Image], fault: Callable[[Image], Image]
) -> None:
    """GENERATED from real frames: black, uniform grey, or dimmed to 4 %."""
    _raised_then_cleared(_healthy_camera(vtest), vtest, fault, COVERED)


def test_a_heavy_blur_reads_blurred_and_recovers(vtest: list[Image]) -> None:
    """GENERATED: real frames under a Gaussian blur of sigma 6 px."""

    def blur(image: Image) -> Image:
        return np.asarray(cv2.GaussianBlur(image, (0, 0), 6), dtype=np.uint8)

    _raised_then_cleared(_healthy_camera(vtest), vtest, blur, BLURRED)


def _warped(image: Image, shift: float = 0.0, degrees: float = 0.0, zoom: float = 1.0) -> Image:
    height, width = image.shape[:2]
    motion = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, zoom)
    motion[0, 2] += shift * width
    warped = cv2.warpAffine(image, motion, (width, height), borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(warped, dtype=np.uint8)


@pytest.mark.parametrize(
    ("shift", "degrees", "zoom"),
    [
        pytest.param(0.15, 0.0, 1.0, id="shifted-15pct"),
        pytest.param(0.0, 10.0, 1.0, id="rotated-10deg"),
        pytest.param(0.0, 0.0, 1.3, id="zoomed-crop"),
    ],
)
def test_a_view_moved_off_its_baseline_reads_moved_and_recovers(
    vtest: list[Image], shift: float, degrees: float, zoom: float
) -> None:
    """GENERATED: real frames shifted, rotated or cropped-and-enlarged against the baseline."""
    camera = _healthy_camera(vtest)
    _raised_then_cleared(camera, vtest, lambda i: _warped(i, shift, degrees, zoom), MOVED)
    view = camera.monitor.measurement.view if camera.monitor.measurement else None
    assert view is not None
    assert view.method == "features"


def test_by_default_the_view_is_compared_every_few_seconds(vtest: list[Image]) -> None:
    """GENERATED: real frames shifted by 15 %, seen by a monitor with the default settings."""
    defaults = HealthSettings()
    camera = _Camera(CameraHealthMonitor(defaults, baseline=vtest[0]))
    camera.show(vtest[:5])
    shifted = camera.show(_warped(image, 0.15) for image in vtest[5:20])
    interval = int(defaults.view_interval_seconds)
    # Compared at seconds 5, 10, 15: the third comparison raises it.
    assert _first(MOVED, shifted) == (defaults.raise_after_checks - 1) * interval


def test_a_slight_wobble_is_not_a_move(vtest: list[Image]) -> None:
    """GENERATED: real frames shifted by 1 % and turned by 1 degree: still the same view."""
    camera = _healthy_camera(vtest)
    said = camera.show(_warped(image, 0.01, 1.0) for image in vtest[5:15])
    assert said == [[]] * 10
    view = camera.monitor.measurement.view if camera.monitor.measurement else None
    assert view is not None
    assert 0.005 < view.shift < SETTINGS.moved_max_shift


def test_a_featureless_view_is_checked_by_phase_correlation(shared_data: Path) -> None:
    """GENERATED from real car-detection.mp4 frames (bare asphalt, few corners): shifted 15 %."""
    frames = _one_a_second(shared_data / "clips" / "car-detection.mp4", 4)
    camera = _Camera(CameraHealthMonitor(SETTINGS, baseline=frames[0]))
    assert camera.show(frames) == [[]] * 4
    shifted = camera.show([_warped(frames[0], 0.15)] * 3)
    assert shifted[-1] == [MOVED]
    view = camera.monitor.measurement.view if camera.monitor.measurement else None
    assert view is not None
    assert view.method == "phase"
    assert view.shift == pytest.approx(0.15, abs=0.02)


def test_one_odd_frame_does_not_flap(vtest: list[Image]) -> None:
    """GENERATED: a single black frame, a single blurred one and a single shifted one."""
    camera = _healthy_camera(vtest)
    odd = [
        np.zeros_like(vtest[5]),
        vtest[6],
        np.asarray(cv2.GaussianBlur(vtest[7], (0, 0), 6), dtype=np.uint8),
        vtest[8],
        _warped(vtest[9], 0.15),
        vtest[10],
    ]
    assert camera.show(odd) == [[]] * 6


def test_no_frames_reads_offline_after_offline_seconds(vtest: list[Image]) -> None:
    """No frames at all for a while (the faults are time alone), then a real frame again."""
    limit = SETTINGS.offline_seconds
    monitor = CameraHealthMonitor(SETTINGS)
    monitor.observe(Frame(vtest[0], 0, T0))
    assert monitor.no_frame(T0 + timedelta(seconds=limit - 1)) == []
    assert monitor.no_frame(T0 + timedelta(seconds=limit)) == [OFFLINE]
    assert monitor.observe(Frame(vtest[1], 1, T0 + timedelta(seconds=limit + 1))) == []

    never = CameraHealthMonitor(SETTINGS)
    assert never.no_frame(T0) == []
    assert never.no_frame(T0 + timedelta(seconds=limit)) == [OFFLINE]


def test_a_broken_frame_is_refused_with_its_index(vtest: list[Image]) -> None:
    """A real frame cut to two rows, and a four-channel image, are refused with a clear error."""
    monitor = CameraHealthMonitor(SETTINGS)
    with pytest.raises(ValueError, match="frame 42: expected an 8-bit BGR image"):
        monitor.observe(Frame(vtest[0][:2], 42, T0))
    with pytest.raises(ValueError, match="baseline: expected an 8-bit BGR image"):
        monitor.set_baseline(np.zeros((576, 768, 4), dtype=np.uint8))
