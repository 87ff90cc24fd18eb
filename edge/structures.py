"""Illegal structures: a no-build zone compared with its registered baseline by local structure.

The comparison looks at *where new 2-D structure appeared*, not at pixel colours: a shed, a
roof extension or a wall adds corners and edges running in several directions, which the
smaller eigenvalue of the local structure tensor measures. Light, gamma and white balance
change the grey levels but hardly that measure (it is taken on log intensity and normalised
per view); blur and sensor noise are absorbed by working at several coarse scales; a camera that
drifted 1-2 % is first registered back onto the baseline by phase correlation.

Per comparison: score map (structure gain, -1..1) -> edge-aware smoothing along the current
view -> hysteresis (a region must hold a strong seed to count, then grows over weaker gain) ->
closing and hole filling -> restricted to the zone polygon. The decision is the changed share
of the zone against a minimum.

The watch runs that comparison on a schedule by frame time and raises a violation only when the
change persists over several checks spread over days, with the baseline, the current view and
the change mask as evidence. Baselines live on disk, one per camera (or camera + PTZ preset).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from contracts.events import BoundingBox, EvidenceFrame, EvidenceLabel, ObservedObject, Phase
from contracts.sites import ZoneConfig, ZoneKind
from edge.config import EvidenceSettings, StructureSettings
from edge.detections import BoolArray, FloatArray, Frame, Image
from edge.evidence import annotate, encode_evidence
from edge.foreground import ZoneWindow
from edge.rules import RuleEvent

logger = logging.getLogger(__name__)

FloatImage = NDArray[np.float32]

STRUCTURE_CLASS = "structure"
_LOG_OFFSET = 8.0  # grey levels added before the log so black pixels do not blow up
_PRE_BLUR = 1.0  # working pixels: takes the edge off sensor noise before gradients
_GUIDE_RADIUS = 16  # working pixels: how far the score is smoothed along the current view
_GUIDE_EPS = 0.1
_CLOSE_KERNEL = 15  # working pixels: bridges gaps inside one structure's outline
_ALIGN_SIZE = 512  # the longer side frames are scaled to for registration
_MASK_COLOUR = np.array([0, 0, 255], dtype=np.float32)  # BGR red
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class StructureChange:
    """One comparison of a current view with its baseline, inside one zone."""

    mask: BoolArray  # frame-sized; True where structure changed, never outside the zone
    changed_share: float  # changed pixels over zone pixels
    box: tuple[float, float, float, float] | None  # xyxy of the changed pixels, frame pixels
    changed: bool
    score: float  # 0..1: mean structure gain over the changed pixels
    shift: tuple[float, float]  # how far the current view had moved against the baseline
    conclusive: bool = True  # False: the views cannot be compared; `reason` says why
    reason: str = ""


# --- the comparison ---------------------------------------------------------------------------


def compare_structure(
    baseline: Image, current: Image, polygon: ArrayLike, settings: StructureSettings
) -> StructureChange:
    """Where structure was added inside `polygon` since `baseline`; see the module docstring."""
    _check_pair(baseline, current)
    height, width = baseline.shape[:2]
    shift = estimate_shift(baseline, current, settings.min_alignment_peak)
    if max(abs(shift[0]) / width, abs(shift[1]) / height) > settings.max_shift_fraction:
        return _inconclusive(baseline, shift, f"the view moved {shift[0]:.0f}, {shift[1]:.0f} px")
    aligned = undo_shift(current, baseline, shift)
    view = _ZoneView.of(polygon, (width, height), settings)
    base_crop, current_crop = view.crop(baseline), view.crop(aligned)
    problem = _view_problem(base_crop, current_crop, view.zone_mask, settings)
    if problem:
        return _inconclusive(baseline, shift, problem)
    gain = structure_gain(base_crop, current_crop, view.zone_mask, settings)
    changed = _changed_regions(gain, settings) & view.zone_mask
    zone = polygon_mask(polygon, (height, width))
    mask = view.to_frame(changed, (height, width)) & zone
    score = float(np.clip(gain[changed], 0.0, 1.0).mean()) if changed.any() else 0.0
    return result(mask, zone, score, shift, settings)


def lab_otsu_change(
    baseline: Image, current: Image, polygon: ArrayLike, settings: StructureSettings
) -> StructureChange:
    """The classical baseline: Lab colour distance thresholded by Otsu inside the zone.

    Kept so evaluations can show what the structure method adds; it reacts to light and
    always splits the zone into two classes, so it alarms on views that did not change.
    """
    _check_pair(baseline, current)
    height, width = baseline.shape[:2]
    zone = polygon_mask(polygon, (height, width))
    lab_base = cv2.cvtColor(baseline, cv2.COLOR_BGR2LAB).astype(np.float32)
    lab_current = cv2.cvtColor(current, cv2.COLOR_BGR2LAB).astype(np.float32)
    distance = np.linalg.norm(lab_base - lab_current, axis=2)
    top = float(distance[zone].max()) if zone.any() else 0.0
    mask = np.zeros((height, width), dtype=np.bool_)
    if top > 0:
        levels = np.round(distance[zone] / top * 255).astype(np.uint8).reshape(-1, 1)
        threshold, _ = cv2.threshold(levels, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        mask = zone & (distance / top * 255 > threshold)
    return result(mask, zone, 1.0, (0.0, 0.0), settings)


def structure_gain(
    baseline: Image, current: Image, zone: BoolArray, settings: StructureSettings
) -> FloatImage:
    """Per pixel, -1..1: how much more 2-D structure the current view has than the baseline.

    Averaged over the settings' scales and smoothed along the current view's edges, so a
    region follows the outline of what was built.
    """
    base_grey, current_grey = _log_grey(baseline), _log_grey(current)
    gains = []
    for sigma in settings.scales:
        before = _corner_strength(base_grey, sigma)
        after = _corner_strength(current_grey, sigma)
        before_median = max(float(np.median(before[zone])), 1e-6)
        after_median = max(float(np.median(after[zone])), 1e-6)
        joint = float(np.sqrt(before_median * after_median))
        own = settings.view_normalisation
        before = before / (before_median**own * joint ** (1 - own))
        after = after / (after_median**own * joint ** (1 - own))
        gains.append((after - before) / (after + before + settings.structure_floor))
    gain = np.mean(gains, axis=0).astype(np.float32)
    guide = (current_grey - current_grey.mean()) / (current_grey.std() + 1e-6)
    return _guided_filter(guide, gain, _GUIDE_RADIUS, _GUIDE_EPS)


def estimate_shift(baseline: Image, current: Image, min_peak: float) -> tuple[float, float]:
    """(dx, dy) the current view moved against the baseline, in frame pixels.

    Phase correlation on log intensity (indifferent to light); a weak peak means the views do
    not share enough content to tell, and they are taken as unshifted.
    """
    height, width = baseline.shape[:2]
    scale = min(1.0, _ALIGN_SIZE / max(height, width))
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    before = cv2.resize(_log_grey(baseline), size, interpolation=cv2.INTER_AREA)
    after = cv2.resize(_log_grey(current), size, interpolation=cv2.INTER_AREA)
    window = cv2.createHanningWindow(size, cv2.CV_32F)
    (dx, dy), peak = cv2.phaseCorrelate(before, after, window)
    if peak < min_peak:
        return 0.0, 0.0
    return float(dx) / scale, float(dy) / scale


def _check_pair(baseline: Image, current: Image) -> None:
    for name, image in (("baseline", baseline), ("current view", current)):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{name} must be a BGR uint8 image, got {image.dtype} {image.shape}")
    if baseline.shape != current.shape:
        bh, bw = baseline.shape[:2]
        ch, cw = current.shape[:2]
        raise ValueError(
            f"baseline is {bw}x{bh} but the current view is {cw}x{ch}: register a new baseline"
        )


def _grey(image: Image) -> NDArray[np.uint8]:
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), dtype=np.uint8)


def _log_grey(image: Image) -> FloatImage:
    return np.asarray(np.log(_grey(image).astype(np.float32) + _LOG_OFFSET), dtype=np.float32)


def _blur(image: FloatImage, sigma: float) -> FloatImage:
    return np.asarray(cv2.GaussianBlur(image, (0, 0), sigma), dtype=np.float32)


def _corner_strength(grey: FloatImage, sigma: float) -> FloatImage:
    """Square root of the structure tensor's smaller eigenvalue: high where edges cross."""
    smooth = _blur(grey, _PRE_BLUR)
    # Sobel's weights sum to 8 per side: dividing gives the true derivative.
    gx = np.asarray(cv2.Sobel(smooth, cv2.CV_32F, 1, 0, scale=0.125), dtype=np.float32)
    gy = np.asarray(cv2.Sobel(smooth, cv2.CV_32F, 0, 1, scale=0.125), dtype=np.float32)
    jxx, jyy, jxy = _blur(gx * gx, sigma), _blur(gy * gy, sigma), _blur(gx * gy, sigma)
    half_trace = (jxx + jyy) / 2
    spread = np.sqrt(np.maximum(half_trace**2 - (jxx * jyy - jxy**2), 0))
    return np.sqrt(np.maximum(half_trace - spread, 0)).astype(np.float32)


def _box(image: FloatImage, radius: int) -> FloatImage:
    return np.asarray(cv2.boxFilter(image, -1, (2 * radius + 1, 2 * radius + 1)), np.float32)


def _guided_filter(guide: FloatImage, source: FloatImage, radius: int, eps: float) -> FloatImage:
    """He et al.'s guided filter: smooths `source` but keeps the guide's edges."""
    mean_guide, mean_source = _box(guide, radius), _box(source, radius)
    covariance = _box(guide * source, radius) - mean_guide * mean_source
    variance = _box(guide * guide, radius) - mean_guide**2
    slope = covariance / (variance + eps)
    offset = mean_source - slope * mean_guide
    return _box(slope, radius) * guide + _box(offset, radius)


def _changed_regions(gain: FloatImage, settings: StructureSettings) -> BoolArray:
    """Regions over the grow threshold that hold enough seed pixels, closed and hole-filled."""
    grown = (gain > settings.grow_threshold).astype(np.uint8)
    count, labels = cv2.connectedComponents(grown, connectivity=8)
    seeds = np.bincount(labels[gain > settings.seed_threshold].ravel(), minlength=count)
    keep = seeds >= settings.min_seed_pixels
    keep[0] = False
    regions = keep[labels].astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (_CLOSE_KERNEL, _CLOSE_KERNEL))
    closed = np.asarray(cv2.morphologyEx(regions, cv2.MORPH_CLOSE, kernel), dtype=np.uint8)
    return _fill_holes(closed > 0)


def _fill_holes(mask: BoolArray) -> BoolArray:
    background = (~mask).astype(np.uint8)
    _, labels = cv2.connectedComponents(background, connectivity=4)
    outside = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    holes = (background > 0) & ~np.isin(labels, outside)
    return mask | holes


def polygon_mask(polygon: ArrayLike, shape: tuple[int, int]) -> BoolArray:
    canvas = np.zeros(shape, dtype=np.uint8)
    points = np.round(np.asarray(polygon, dtype=np.float64).reshape(-1, 2)).astype(np.int32)
    cv2.fillPoly(canvas, [points], 1)
    return canvas.astype(np.bool_)


def undo_shift(current: Image, baseline: Image, shift: tuple[float, float]) -> Image:
    """The current view moved back onto the baseline; uncovered borders take the baseline."""
    if shift == (0.0, 0.0):
        return current
    height, width = current.shape[:2]
    matrix = np.array([[1, 0, -shift[0]], [0, 1, -shift[1]]], dtype=np.float64)
    moved = cv2.warpAffine(current, matrix, (width, height), flags=cv2.INTER_LINEAR)
    covered = cv2.warpAffine(
        np.full((height, width), 255, np.uint8), matrix, (width, height), flags=cv2.INTER_NEAREST
    )
    return np.asarray(np.where(covered[..., None] == 255, moved, baseline), dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class _ZoneView:
    """The zone's box plus a margin (context for the coarse scales), at working resolution."""

    window: ZoneWindow  # the padded box in frame pixels
    size: tuple[int, int]  # (width, height) at working resolution
    zone_mask: BoolArray  # the polygon on the working grid

    @classmethod
    def of(
        cls, polygon: ArrayLike, frame_size: tuple[int, int], settings: StructureSettings
    ) -> _ZoneView:
        width, height = frame_size
        zone = ZoneWindow.of(polygon, frame_size)
        zone_width, zone_height = zone.size
        scale = settings.working_size / max(zone_width, zone_height)
        margin = round(2 * max(settings.scales) / scale)
        window = ZoneWindow(
            max(0, zone.x0 - margin),
            max(0, zone.y0 - margin),
            min(width, zone.x1 + margin),
            min(height, zone.y1 + margin),
        )
        padded_width, padded_height = window.size
        size = (max(8, round(padded_width * scale)), max(8, round(padded_height * scale)))
        return cls(window, size, window.polygon_mask(polygon, (size[1], size[0])))

    def crop(self, image: Image) -> Image:
        w = self.window
        part = image[w.y0 : w.y1, w.x0 : w.x1]
        return np.asarray(cv2.resize(part, self.size, interpolation=cv2.INTER_AREA), np.uint8)

    def to_frame(self, working: BoolArray, frame_shape: tuple[int, int]) -> BoolArray:
        w = self.window
        part = cv2.resize(working.astype(np.uint8), w.size, interpolation=cv2.INTER_NEAREST).astype(
            np.bool_
        )
        mask = np.zeros(frame_shape, dtype=np.bool_)
        mask[w.y0 : w.y1, w.x0 : w.x1] = part
        return mask


def result(
    mask: BoolArray,
    zone: BoolArray,
    score: float,
    shift: tuple[float, float],
    settings: StructureSettings,
) -> StructureChange:
    zone_pixels = int(zone.sum())
    share = float(mask.sum()) / zone_pixels if zone_pixels else 0.0
    box: tuple[float, float, float, float] | None = None
    if mask.any():
        ys, xs = np.nonzero(mask)
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    return StructureChange(
        mask=mask,
        changed_share=share,
        box=box,
        changed=share >= settings.min_changed_share,
        score=score,
        shift=shift,
    )


def _inconclusive(baseline: Image, shift: tuple[float, float], reason: str) -> StructureChange:
    empty = np.zeros(baseline.shape[:2], dtype=np.bool_)
    return StructureChange(empty, 0.0, None, False, 0.0, shift, conclusive=False, reason=reason)


def _view_problem(
    baseline: Image, current: Image, zone: BoolArray, settings: StructureSettings
) -> str:
    """Why the current view cannot be judged against the baseline; empty when it can."""
    grey = _grey(current)
    if float(np.std(grey[zone])) < settings.min_contrast:
        return "the zone shows no contrast (night, fog or a covered lens)"
    softness = _sharpness(current, zone) / max(_sharpness(baseline, zone), 1e-6)
    if softness < settings.min_sharpness_ratio:
        return f"the view is softer than its baseline (sharpness ratio {softness:.2f})"
    added = _noise_level(grey, zone) - _noise_level(_grey(baseline), zone)
    if added > settings.max_noise_increase:
        return f"the view carries {added:.1f} grey levels more noise than its baseline"
    return ""


def _gradient_magnitude(grey: FloatImage) -> FloatImage:
    gx = np.asarray(cv2.Sobel(grey, cv2.CV_32F, 1, 0, scale=0.125), dtype=np.float32)
    gy = np.asarray(cv2.Sobel(grey, cv2.CV_32F, 0, 1, scale=0.125), dtype=np.float32)
    return np.sqrt(gx * gx + gy * gy)


def _sharpness(image: Image, zone: BoolArray) -> float:
    """Fine over coarse gradient: blur lowers it, light and gamma (scale in log) do not."""
    grey = _log_grey(image)
    fine = float(np.median(_gradient_magnitude(_blur(grey, _PRE_BLUR))[zone]))
    coarse = float(np.median(_gradient_magnitude(_blur(grey, 3 * _PRE_BLUR))[zone]))
    return fine / max(coarse, 1e-6)


_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


def _noise_level(grey: NDArray[np.uint8], zone: BoolArray) -> float:
    """Immerkaer's estimate of the noise sigma, in grey levels."""
    response = np.abs(cv2.filter2D(grey.astype(np.float32), -1, _NOISE_KERNEL))
    return float(np.sqrt(np.pi / 2) * response[zone].mean() / 6)


def draw_change(image: Image, mask: BoolArray) -> Image:
    """The changed pixels tinted red and outlined on a copy of `image`."""
    picture = image.astype(np.float32)
    picture[mask] = picture[mask] * 0.55 + _MASK_COLOUR * 0.45
    drawn = picture.astype(np.uint8)
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    cv2.drawContours(drawn, contours, -1, (0, 0, 255), 2)
    return drawn


# --- baselines --------------------------------------------------------------------------------


class BaselineInfo(BaseModel):
    """The JSON beside a baseline PNG: when, by whom and why it was registered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    camera_id: str
    preset: str | None = None
    revision: int = Field(ge=1, description="1 for the first baseline, +1 for each replacement")
    registered_at: AwareDatetime
    registered_by: str
    note: str = ""
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    sha256: str = Field(description="of the PNG file's bytes")


@dataclass(frozen=True, slots=True)
class Baseline:
    info: BaselineInfo
    image: Image


class BaselineStore:
    """One baseline image per camera, or per camera and PTZ preset, as PNG plus JSON.

    A replaced baseline moves to history/ with its JSON, so every view a case was judged
    against stays on disk.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cache: dict[str, Baseline] = {}
        self._lock = threading.Lock()

    def register(
        self,
        camera_id: str,
        image: Image,
        preset: str | None = None,
        *,
        at: datetime | None = None,
        by: str = "edge",
        note: str = "registered",
    ) -> BaselineInfo:
        """Make `image` the camera's (or preset's) baseline; an older one goes to history/."""
        return self._write(camera_id, image, preset, at, by, note)

    def accept(
        self,
        camera_id: str,
        image: Image,
        preset: str | None = None,
        note: str = "accepted as the new baseline after the case closed",
        *,
        at: datetime | None = None,
        by: str = "dispatcher",
    ) -> BaselineInfo:
        """Accept the current view as the new baseline (a closed case, a permitted building)."""
        return self._write(camera_id, image, preset, at, by, note)

    def get(self, camera_id: str, preset: str | None = None) -> Image | None:
        baseline = self.load(camera_id, preset)
        return None if baseline is None else baseline.image

    def info(self, camera_id: str, preset: str | None = None) -> BaselineInfo | None:
        baseline = self.load(camera_id, preset)
        return None if baseline is None else baseline.info

    def load(self, camera_id: str, preset: str | None = None) -> Baseline | None:
        """The image and its record together (one read, so they always belong together)."""
        return self._load(camera_id, preset)

    def _stem(self, camera_id: str, preset: str | None) -> str:
        if not _NAME.match(camera_id):
            raise ValueError(f"camera id {camera_id!r} cannot name a baseline file")
        if preset is None:
            return camera_id
        if not _NAME.match(preset):
            raise ValueError(f"preset {preset!r}: use letters, digits, '_', '.' or '-' only")
        return f"{camera_id}@{preset}"

    def _write(
        self,
        camera_id: str,
        image: Image,
        preset: str | None,
        at: datetime | None,
        by: str,
        note: str,
    ) -> BaselineInfo:
        stem = self._stem(camera_id, preset)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"baseline for {stem} must be BGR uint8, got {image.shape}")
        ok, buffer = cv2.imencode(".png", image)
        if not ok:
            raise ValueError(f"could not PNG-encode the baseline for {stem}")
        data = buffer.tobytes()
        with self._lock:
            previous = self._load(camera_id, preset)
            info = BaselineInfo(
                camera_id=camera_id,
                preset=preset,
                revision=1 if previous is None else previous.info.revision + 1,
                registered_at=at or datetime.now(UTC),
                registered_by=by,
                note=note,
                width=image.shape[1],
                height=image.shape[0],
                sha256=hashlib.sha256(data).hexdigest(),
            )
            self.directory.mkdir(parents=True, exist_ok=True)
            if previous is not None:
                self._archive(stem, previous.info.revision)
            _write_atomic(self.directory / f"{stem}.png", data)
            _write_atomic(self.directory / f"{stem}.json", info.model_dump_json(indent=2).encode())
            self._cache.pop(stem, None)
        logger.info("baseline %s revision %d registered by %s: %s", stem, info.revision, by, note)
        return info

    def _archive(self, stem: str, revision: int) -> None:
        history = self.directory / "history"
        history.mkdir(exist_ok=True)
        for suffix in (".png", ".json"):
            source = self.directory / f"{stem}{suffix}"
            if source.exists():
                os.replace(source, history / f"{stem}.r{revision}{suffix}")

    def _load(self, camera_id: str, preset: str | None) -> Baseline | None:
        stem = self._stem(camera_id, preset)
        meta, picture = self.directory / f"{stem}.json", self.directory / f"{stem}.png"
        try:
            # The JSON is tiny and re-read each time, so a baseline accepted by another
            # process (the CLI, the console) is seen at the next check.
            info = BaselineInfo.model_validate(json.loads(meta.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, ValidationError) as exc:
            raise ValueError(f"baseline {meta} is unreadable: {exc}") from exc
        cached = self._cache.get(stem)
        if cached is not None and cached.info == info:
            return cached
        try:
            data = picture.read_bytes()
        except OSError as exc:
            raise ValueError(f"baseline {picture} is unreadable: {exc}") from exc
        if hashlib.sha256(data).hexdigest() != info.sha256:
            raise ValueError(f"baseline {picture} does not match the sha256 in {meta.name}")
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            raise ValueError(f"baseline {picture} is not a readable PNG")
        cached = Baseline(info, np.asarray(decoded, dtype=np.uint8))
        self._cache[stem] = cached
        return cached


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


# --- the watch --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Sighting:
    frame: Frame
    change: StructureChange


@dataclass(slots=True)
class _Streak:
    """Consecutive changed checks: the first (when the change was first seen) and the latest."""

    first: _Sighting
    latest: _Sighting
    checks: int = 1

    def span_seconds(self) -> float:
        return (self.latest.frame.timestamp - self.first.frame.timestamp).total_seconds()


@dataclass(slots=True)
class _Open:
    violation_id: uuid.UUID
    streak: _Streak
    unchanged_checks: int = 0


class StructureWatch:
    """Compares one no-build zone with the camera's baseline on a schedule; raises and clears."""

    def __init__(
        self,
        camera_id: str,
        zone: ZoneConfig,
        settings: StructureSettings,
        evidence: EvidenceSettings,
        baselines: BaselineStore,
        preset: str | None = None,
    ) -> None:
        if zone.kind is not ZoneKind.NO_BUILD:
            raise ValueError(f"zone {zone.id} is {zone.kind.value}, not a no_build zone")
        self.camera_id = camera_id
        self.zone = zone
        self.polygon: FloatArray = np.asarray(zone.polygon, dtype=np.float32)
        self.preset = preset
        self._settings = settings
        self._evidence = evidence
        self._baselines = baselines
        self._last_check_at: datetime | None = None
        self._revision: int | None = None
        self._baseline: Baseline | None = None  # the one the latest check compared against
        self._streak: _Streak | None = None
        self._open: _Open | None = None

    @property
    def open_violations(self) -> int:
        return 0 if self._open is None else 1

    def update(self, frame: Frame) -> list[RuleEvent]:
        """Compare when a check is due by frame time; the phases this check produced."""
        last = self._last_check_at
        if last is not None and (
            (frame.timestamp - last).total_seconds() < self._settings.check_interval_seconds
        ):
            return []
        self._last_check_at = frame.timestamp
        try:
            return self._check(frame)
        except (ValueError, OSError, cv2.error) as exc:
            # One camera's bad baseline or odd frame must not stop the worker.
            logger.warning(
                "camera %s zone %s: structure check skipped: %s", self.camera_id, self.zone.id, exc
            )
            return []

    def accept(self, frame: Frame, note: str, by: str = "dispatcher") -> list[RuleEvent]:
        """Accept this frame as the new baseline; an open violation clears now."""
        info = self._baselines.accept(
            self.camera_id, frame.image, self.preset, note, at=frame.timestamp, by=by
        )
        self._revision = info.revision
        return self._restart(frame)

    def _check(self, frame: Frame) -> list[RuleEvent]:
        stored = self._baselines.load(self.camera_id, self.preset)
        if stored is None:
            info = self._baselines.register(
                self.camera_id,
                frame.image,
                self.preset,
                at=frame.timestamp,
                by=f"structure watch {self.zone.id}",
                note="no baseline was registered: the first frame seen becomes it",
            )
            self._revision = info.revision
            logger.info(
                "camera %s zone %s: no baseline, registered the frame of %s as baseline",
                self.camera_id,
                self.zone.id,
                frame.timestamp.isoformat(),
            )
            return []
        if self._revision != stored.info.revision:
            # A new baseline was accepted (or registered) elsewhere: judge against it from now.
            first_look = self._revision is None
            self._revision = stored.info.revision
            if not first_look:
                return self._restart(frame)
        self._baseline = stored
        change = compare_structure(stored.image, frame.image, self.polygon, self._settings)
        if not change.conclusive:
            logger.info(
                "camera %s zone %s: structure check inconclusive: %s",
                self.camera_id,
                self.zone.id,
                change.reason,
            )
            return []
        sighting = _Sighting(frame, change)
        return self._changed(sighting) if change.changed else self._unchanged(frame)

    def _changed(self, sighting: _Sighting) -> list[RuleEvent]:
        if self._open is not None:
            self._open.streak.latest = sighting
            self._open.unchanged_checks = 0
            return []
        streak = self._streak
        if streak is None:
            self._streak = _Streak(sighting, sighting)
            streak = self._streak
        else:
            streak.latest = sighting
            streak.checks += 1
        settings = self._settings
        if (
            streak.checks >= settings.persist_checks
            and streak.span_seconds() >= settings.persist_span_seconds
        ):
            return [self._opened(streak)]
        return []

    def _unchanged(self, frame: Frame) -> list[RuleEvent]:
        if self._open is None:
            self._streak = None  # the change did not persist: start counting again
            return []
        self._open.unchanged_checks += 1
        if self._open.unchanged_checks >= self._settings.persist_checks:
            return self._restart(frame)
        return []

    def _restart(self, frame: Frame) -> list[RuleEvent]:
        """Forget the streak; clear the open violation if there is one."""
        opened, self._open, self._streak = self._open, None, None
        return [] if opened is None else [self._cleared(opened, frame)]

    def _opened(self, streak: _Streak) -> RuleEvent:
        self._open = _Open(uuid.uuid4(), streak)
        self._streak = None
        latest = streak.latest
        at = latest.frame.timestamp
        box = _box_array(latest.change.box)
        box_label = f"{STRUCTURE_CLASS} {latest.change.changed_share:.0%} of zone"
        evidence: list[EvidenceFrame] = []
        if self._baseline is not None:  # always set by the check that got here
            baseline = self._baseline
            evidence.append(
                self._frame(
                    baseline.image, None, "", baseline.info.registered_at, EvidenceLabel.BASELINE
                )
            )
        evidence.append(self._frame(latest.frame.image, box, box_label, at, EvidenceLabel.CURRENT))
        overlay = draw_change(latest.frame.image, latest.change.mask)
        evidence.append(self._frame(overlay, box, box_label, at, EvidenceLabel.CHANGE_MASK))
        return self._event(Phase.OPENED, self._open, at, evidence)

    def _cleared(self, opened: _Open, frame: Frame) -> RuleEvent:
        at = frame.timestamp
        evidence = [self._frame(frame.image, None, "", at, EvidenceLabel.CLEARED)]
        return self._event(Phase.CLEARED, opened, at, evidence)

    def _frame(
        self,
        image: Image,
        box: FloatArray | None,
        box_label: str,
        at: datetime,
        label: EvidenceLabel,
    ) -> EvidenceFrame:
        stamp = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        caption = f"{stamp} UTC  {self.camera_id}  {self.zone.id}  {label.value}"
        picture = annotate(image, self.polygon, box, box_label, caption)
        return encode_evidence(picture, label, at, self._evidence)

    def _event(
        self, phase: Phase, opened: _Open, at: datetime, evidence: Sequence[EvidenceFrame]
    ) -> RuleEvent:
        streak = opened.streak
        change = streak.latest.change
        x1, y1, x2, y2 = change.box or (0.0, 0.0, 0.0, 0.0)
        return RuleEvent(
            phase=phase,
            violation_id=opened.violation_id,
            zone_id=self.zone.id,
            started_at=streak.first.frame.timestamp,
            observed_at=at,
            # Cleared: the change lasted until it was last seen, not until the clearing check.
            dwell_seconds=(
                streak.span_seconds()
                if phase is Phase.CLEARED
                else (at - streak.first.frame.timestamp).total_seconds()
            ),
            object=ObservedObject(
                class_name=STRUCTURE_CLASS,
                confidence=min(1.0, max(0.0, change.score)),
                box=BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2),
            ),
            evidence=list(evidence),
        )


def _box_array(box: tuple[float, float, float, float] | None) -> FloatArray | None:
    return None if box is None else np.asarray(box, dtype=np.float32)
