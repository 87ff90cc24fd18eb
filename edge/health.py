"""Camera health from the picture itself: offline, frozen, covered, blurred, moved off its baseline.

Cheap enough to run about once a second per camera: every measure works on a small grey copy.
Each problem must hold for a few checks before it is reported and clears after a few good ones,
so one odd frame does not make the status flap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from contracts.status import CameraProblem
from edge.config import HealthSettings
from edge.detections import Frame, Image

Grey = NDArray[np.uint8]
_THUMBNAIL_WIDTH = 64  # frozen compares pictures this small: content, not sensor noise
_RANSAC_PIXELS = 3.0
# A baseline with fewer keypoints than this many times moved_min_matches is checked by phase.
_RICH_BASELINE = 3


@dataclass(frozen=True, slots=True)
class HealthMeasurement:
    """What one check measured; for the status detail and for tuning."""

    at: datetime
    change: float | None  # mean grey change since the previous check (None on the first)
    spread: float
    edge_share: float
    sharpness: float
    sharpness_reference: float | None
    view: ViewChange | None  # None when not checked (covered) or not decidable


@dataclass(slots=True)
class _Latch:
    """Hysteresis: on after `raise_after` bad checks in a row, off after `clear_after` good ones."""

    raise_after: int
    clear_after: int
    active: bool = False
    streak: int = 0

    def update(self, bad: bool) -> bool:
        if bad == self.active:
            self.streak = 0
        else:
            self.streak += 1
            if self.streak >= (self.clear_after if self.active else self.raise_after):
                self.active, self.streak = bad, 0
        return self.active


@dataclass(frozen=True, slots=True)
class _Baseline:
    grey: NDArray[np.float32]
    points: NDArray[np.float32]
    descriptors: NDArray[np.uint8] | None


@dataclass(frozen=True, slots=True)
class ViewChange:
    """How the view sits against the baseline; recognised False means it could not be found."""

    method: str  # "features" (ORB + similarity fit) or "phase" (phase correlation, shift only)
    recognised: bool
    score: float  # agreeing feature matches, or the phase correlation peak
    shift: float = 0.0  # share of the frame width
    rotation_degrees: float = 0.0
    scale: float = 1.0


class CameraHealthMonitor:
    """Watches one camera's frames and says what is wrong with its picture.

    Without a baseline, the first clear picture (neither covered nor blurred) becomes it.
    """

    def __init__(self, settings: HealthSettings, baseline: Image | None = None) -> None:
        self.settings = settings
        self._orb = cv2.ORB.create(nfeatures=settings.orb_features)
        self._matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
        self._latches = {
            problem: _Latch(settings.raise_after_checks, settings.clear_after_checks)
            for problem in (CameraProblem.COVERED, CameraProblem.BLURRED, CameraProblem.MOVED)
        }
        # Frozen is already a duration; it needs no extra checks to rise.
        self._latches[CameraProblem.FROZEN] = _Latch(1, settings.clear_after_checks)
        self._baseline: _Baseline | None = None
        self._reference_sharpness: float | None = None
        self._last_check_at: datetime | None = None
        self._last_view_at: datetime | None = None
        self._last_frame_at: datetime | None = None
        self._waiting_since: datetime | None = None
        self._thumbnail: NDArray[np.float32] | None = None
        self._unchanged_since: datetime | None = None
        self._offline = False
        self.measurement: HealthMeasurement | None = None
        if baseline is not None:
            self.set_baseline(baseline)

    @property
    def problems(self) -> list[CameraProblem]:
        if self._offline:
            return [CameraProblem.OFFLINE]
        return [p for p in CameraProblem if p in self._latches and self._latches[p].active]

    def set_baseline(self, image: Image) -> None:
        """The view the camera should keep, and the sharpness it should have."""
        grey = self._grey(image, "baseline")
        moved = self._latches[CameraProblem.MOVED]
        moved.active, moved.streak = False, 0  # judged afresh against the new baseline
        keypoints, descriptors = self._orb.detectAndCompute(grey, None)
        self._baseline = _Baseline(
            grey=grey.astype(np.float32),
            points=_points(keypoints),
            descriptors=None if descriptors is None else np.asarray(descriptors, np.uint8),
        )
        self._reference_sharpness = _sharpness(grey)

    def no_frame(self, now: datetime) -> list[CameraProblem]:
        """Call when a frame was due and none came; offline once none came for offline_seconds."""
        since = self._last_frame_at or self._waiting_since
        if since is None:
            self._waiting_since = since = now
        self._offline = (now - since).total_seconds() >= self.settings.offline_seconds
        return self.problems

    def observe(self, frame: Frame) -> list[CameraProblem]:
        """Feed every frame (or some); it analyses one per check interval."""
        now = frame.timestamp
        self._last_frame_at = now
        self._offline = False
        due = self._last_check_at is None or (
            (now - self._last_check_at).total_seconds() >= self.settings.check_interval_seconds
        )
        if due:
            self._last_check_at = now
            self._check(now, self._grey(frame.image, f"frame {frame.index}"))
        return self.problems

    def _grey(self, image: Image, what: str) -> Grey:
        bgr_or_grey = image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)
        if image.dtype != np.uint8 or not bgr_or_grey or min(image.shape[:2]) < 8:
            raise ValueError(
                f"{what}: expected an 8-bit BGR image, got {image.dtype} of shape {image.shape}"
            )
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        height, width = grey.shape[:2]
        size = (
            self.settings.analysis_width,
            max(8, round(height * self.settings.analysis_width / width)),
        )
        return np.asarray(cv2.resize(grey, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)

    def _check(self, now: datetime, grey: Grey) -> None:
        change = self._change(grey)
        self._latches[CameraProblem.FROZEN].update(self._unchanged_too_long(now, change))
        low, high = np.percentile(grey, (10, 90))
        spread = float(high - low)
        edge_share = float(np.count_nonzero(cv2.Canny(grey, 50, 150))) / grey.size
        covered = (
            spread < self.settings.covered_max_spread
            and edge_share < self.settings.covered_max_edges
        )
        sharpness = _sharpness(grey)
        view: ViewChange | None = None
        # A covered lens says nothing about focus or aim: leave those problems as they were.
        if not self._latches[CameraProblem.COVERED].update(covered) and not covered:
            view = self._check_focus_and_aim(now, grey, sharpness)
        self.measurement = HealthMeasurement(
            at=now,
            change=change,
            spread=spread,
            edge_share=edge_share,
            sharpness=sharpness,
            sharpness_reference=self._reference_sharpness,
            view=view,
        )

    def _unchanged_too_long(self, now: datetime, change: float | None) -> bool:
        if change is None or change > self.settings.frozen_max_change:
            self._unchanged_since = None
            return False
        if self._unchanged_since is None:
            # Unchanged since the previous check: that is when the picture stopped.
            self._unchanged_since = self.measurement.at if self.measurement is not None else now
        return (now - self._unchanged_since).total_seconds() >= self.settings.frozen_seconds

    def _check_focus_and_aim(
        self, now: datetime, grey: Grey, sharpness: float
    ) -> ViewChange | None:
        blurred = self._is_blurred(sharpness)
        self._latches[CameraProblem.BLURRED].update(blurred)
        if self._baseline is None and not blurred:
            self.set_baseline(grey)
        view = self._view_change(grey) if self._view_due(now) else None
        if view is not None:
            self._latches[CameraProblem.MOVED].update(self._is_moved(view))
        return view

    def _view_due(self, now: datetime) -> bool:
        last = self._last_view_at
        if self._baseline is None or (
            last is not None and (now - last).total_seconds() < self.settings.view_interval_seconds
        ):
            return False
        self._last_view_at = now
        return True

    def _change(self, grey: Grey) -> float | None:
        height, width = grey.shape
        size = (_THUMBNAIL_WIDTH, max(4, round(height * _THUMBNAIL_WIDTH / width)))
        thumbnail = cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        previous, self._thumbnail = self._thumbnail, thumbnail
        if previous is None or previous.shape != thumbnail.shape:
            return None
        return float(np.abs(thumbnail - previous).mean())

    def _is_blurred(self, sharpness: float) -> bool:
        reference = self._reference_sharpness
        if reference is None:
            self._reference_sharpness = sharpness
            return False
        blurred = sharpness < self.settings.blurred_max_ratio * reference
        if not blurred:
            self._reference_sharpness = reference + self.settings.reference_rate * (
                sharpness - reference
            )
        return blurred

    def _view_change(self, grey: Grey) -> ViewChange | None:
        """Where the view sits against the baseline; None when that cannot be told."""
        baseline = self._baseline
        assert baseline is not None
        if len(baseline.points) >= _RICH_BASELINE * self.settings.moved_min_matches:
            return self._feature_change(baseline, grey)
        # A featureless view (bare asphalt) still has texture that phase correlation can follow.
        return self._phase_change(baseline, grey)

    def _feature_change(self, baseline: _Baseline, grey: Grey) -> ViewChange:
        keypoints, descriptors = self._orb.detectAndCompute(grey, None)
        lost = ViewChange(method="features", recognised=False, score=0.0)
        if baseline.descriptors is None or descriptors is None:
            return lost
        matches = self._matcher.match(baseline.descriptors, descriptors)
        if len(matches) < self.settings.moved_min_matches:
            return replace(lost, score=float(len(matches)))
        source = baseline.points[[m.queryIdx for m in matches]]
        target = _points(keypoints)[[m.trainIdx for m in matches]]
        motion, inliers = cv2.estimateAffinePartial2D(
            source, target, method=cv2.RANSAC, ransacReprojThreshold=_RANSAC_PIXELS
        )
        agreeing = 0 if inliers is None else int(inliers.sum())
        if motion is None or agreeing < self.settings.moved_min_matches:
            return replace(lost, score=float(agreeing))
        height, width = grey.shape
        centre = np.array([width / 2, height / 2, 1.0])
        offset = motion @ centre - centre[:2]
        return ViewChange(
            method="features",
            recognised=True,
            score=float(agreeing),
            shift=float(np.hypot(offset[0], offset[1])) / width,
            rotation_degrees=math.degrees(math.atan2(motion[1, 0], motion[0, 0])),
            scale=float(np.hypot(motion[0, 0], motion[1, 0])),
        )

    def _phase_change(self, baseline: _Baseline, grey: Grey) -> ViewChange | None:
        if baseline.grey.shape != grey.shape:
            return ViewChange(method="phase", recognised=False, score=0.0)
        height, width = grey.shape
        window = cv2.createHanningWindow((width, height), cv2.CV_32F)
        (dx, dy), peak = cv2.phaseCorrelate(baseline.grey, grey.astype(np.float32), window)
        if peak < self.settings.phase_min_peak:
            return None  # too weak to tell a move from cars passing over the texture
        return ViewChange(
            method="phase",
            recognised=True,
            score=float(peak),
            shift=float(np.hypot(dx, dy)) / width,
        )

    def _is_moved(self, view: ViewChange) -> bool:
        settings = self.settings
        return (
            not view.recognised
            or view.shift > settings.moved_max_shift
            or abs(view.rotation_degrees) > settings.moved_max_rotation_degrees
            or abs(view.scale - 1.0) > settings.moved_max_scale_change
        )


def _points(keypoints: Sequence[Any]) -> NDArray[np.float32]:
    return np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)


def _sharpness(grey: Grey) -> float:
    """Second- over first-derivative energy: falls with blur whatever the content or light."""
    image = grey.astype(np.float32)
    laplacian = cv2.Laplacian(image, cv2.CV_32F)
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1)
    gradient = float(np.mean(gx * gx + gy * gy))
    return float(np.mean(laplacian * laplacian)) / max(gradient, 1e-6)
