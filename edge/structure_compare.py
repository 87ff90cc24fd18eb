"""Illegal structures, the comparison: a no-build zone against its baseline by local structure.

The comparison looks at *where new 2-D structure appeared*, not at pixel colours: a shed, a
roof extension or a wall adds corners and edges running in several directions, which the
smaller eigenvalue of the local structure tensor measures. Light, gamma and white balance
change the grey levels but hardly that measure (it is taken on log intensity and normalised
per view); blur and sensor noise are absorbed by working at several coarse scales; a camera that
drifted 1-2 % is first registered back onto the baseline by phase correlation.

Per comparison: score map (structure gain, -1..1) -> edge-aware smoothing along the current
view -> hysteresis (a region must hold a strong seed to count, then grows over weaker gain) ->
closing and hole filling -> restricted to the zone polygon. The decision is the changed share
of the zone against a minimum. edge.structure_features adds learned features on top.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TypeVar

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from edge.config import StructureSettings
from edge.detections import BoolArray, Image
from edge.foreground import ZoneWindow

FloatImage = NDArray[np.float32]

STRUCTURE_CLASS = "structure"
_LOG_OFFSET = 8.0  # grey levels added before the log so black pixels do not blow up
_PRE_BLUR = 1.0  # working pixels: takes the edge off sensor noise before gradients
_GUIDE_RADIUS = 16  # working pixels: how far the score is smoothed along the current view
_GUIDE_EPS = 0.1
_CLOSE_KERNEL = 15  # working pixels: bridges gaps inside one structure's outline
_ALIGN_SIZE = 512  # the longer side frames are scaled to for registration
_MASK_COLOUR = np.array([0, 0, 255], dtype=np.float32)  # BGR red
# Round 7: "softer than its baseline" only when the view lost detail outside what changed too
# (a smooth new face is not blur; docs/benchmarks.md, "Structures", round 7).
SOFTNESS_OUTSIDE_CHANGE = True
_LOW_PASS = 3.0  # working pixels
_SAME_LEVEL = 0.2  # log grey levels: about a fifth brighter or darker
_MIN_UNCHANGED = 0.5
# Round 8 (chosen on dev): structure LOSS, a new smooth face over textured ground (a plain shed,
# a tarp, a wall over grass or gravel) takes texture away where the gain above finds little.
STRUCTURE_LOSS = True
LOSS_TEXTURE_SIGMA = 4.0  # working pixels: the window texture energy is averaged over
LOSS_MIN_DROP = 0.4  # log, median over a region: its texture fell x1.5 beyond view-wide
LOSS_MIN_COLOUR = 14.0  # Lab units: colour moved this far beyond the light's change
LOSS_COLOUR_SIGMA = 2.0
_TONE_BINS = 32
_SAMPLE = 4  # view-wide medians and the tone curve from every 4th zone pixel
LOSS_MIN_SHARE = 0.03  # of the zone: a face this large (a shed, not a stone)
LOSS_MIN_SOLIDITY = 0.8  # region over its convex hull: compact
LOSS_MIN_RECTANGULARITY = 0.65  # region over its rotated bounding rectangle: straight edges
# Round 9 (chosen on dev): a face whose colour is partly the ground's is segmented where its
# texture fell this far (log) and its colour moved at least half as far (0: off, round 8).
LOSS_SEGMENT_DROP = 0.8
# Round 10, tried and NOT kept (0: the whole region, as in round 9): judging the texture fall
# over the region's interior, this many working pixels in from its outline (whose own edges
# raise texture within LOSS_TEXTURE_SIGMA of it), found dev's vtest/0 shed before two people
# (at 8), but pasted passers-by the detector misses read as new smooth faces too: the object
# stress on round 7's crops rose from 19 to 27 of 72 and round 10's look gained a "car in view"
# alarm (docs/benchmarks.md, "Structures", round 10).
LOSS_INTERIOR = 0
# Round 11 (chosen on dev): where a person found in both views at the same place is now hidden
# below (something new stands before them), a loss region over that hidden part is judged this
# many working pixels inside its outline (round 10's interior rule, only there: a pasted
# passer-by hides no one). 0: off, the rule before round 11.
LOSS_HIDDEN_INTERIOR = 8
# Round 15 (chosen on dev): a loss region the caller's `sure` map (the learned comparison: the
# varied-ground change net's chance, which was taught people and cars as no change) gives a
# median of at least this is judged LOSS_HIDDEN_INTERIOR pixels inside its outline as well: a
# shed whose face is smoother than the ground but whose outline and cast shadow keep the
# region's texture from falling (the sheds beside a parked car; docs/benchmarks.md,
# "Structures", round 15). None: off, the rule before round 15.
LOSS_SURE_CHANCE: float | None = 0.5
T = TypeVar("T")
# A learned chance of new structure per pixel (compare_structure's and structure_loss's `sure`):
# the map, a callable that computes it only when asked (round 15b), or None.
Sure = NDArray[np.float32] | Callable[[], NDArray[np.float32] | None] | None


def uses_sure() -> bool:
    """Whether compare_structure reads a `sure` map (round 15's rule is on)."""
    return STRUCTURE_LOSS and LOSS_SURE_CHANCE is not None and LOSS_HIDDEN_INTERIOR > 0


class Kept:
    """What comparisons derived from one baseline alone, by what it is (see BaselineMemo)."""

    def __init__(self) -> None:
        self._values: dict[Hashable, object] = {}

    def get(self, what: Hashable, make: Callable[[], T]) -> T:
        """The value kept under `what`, made (and kept) on first use."""
        if what not in self._values:
            self._values[what] = make()
        return self._values[what]  # type: ignore[return-value]


class BaselineMemo:
    """Per baseline image, what the comparison derives from it alone, kept for the next check.

    A camera's baseline stays the same until a new one is accepted, while each check compares a
    new view against it: its structure maps, sharpness, noise, backbone features and detections
    need computing once. Baselines are told apart by a digest of their pixels, so a changed or
    new baseline is never matched with another's values; the `size` most recent are kept.
    The results are the same as without the memo, only sooner.
    """

    def __init__(self, size: int = 4) -> None:
        self._size = size
        self._kept: OrderedDict[str, Kept] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, baseline: Image) -> Kept:
        digest = hashlib.blake2b(np.ascontiguousarray(baseline).data, digest_size=16)
        key = f"{digest.hexdigest()}{baseline.shape}{baseline.dtype}"
        with self._lock:
            kept = self._kept.pop(key, None) or Kept()
            self._kept[key] = kept
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
        return kept


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
    baseline: Image,
    current: Image,
    polygon: ArrayLike,
    settings: StructureSettings,
    kept: Kept | None = None,
    hidden: BoolArray | None = None,
    sure: Sure = None,
) -> StructureChange:
    """Where structure was added inside `polygon` since `baseline`; see the module docstring.

    `kept` (BaselineMemo.of(baseline)) keeps what is derived from the baseline alone for the
    next comparison against it; the result is the same with or without. `hidden` (frame-sized)
    marks where a person who stayed put is now hidden below (structure_loss). `sure`
    (frame-sized, 0..1, on the baseline's grid: the current view moved back) is a learned
    chance of new structure per pixel; structure_loss judges a region it is sure of
    (LOSS_SURE_CHANCE) inside its outline. It may be given as a callable that returns the map
    (or None): it is then called at most once, and only when a loss region's verdict depends
    on it (round 15b: the learned maps are computed only where a result needs them).
    """
    _check_pair(baseline, current)
    kept = kept or Kept()
    height, width = baseline.shape[:2]
    shift = estimate_shift(baseline, current, settings.min_alignment_peak, kept)
    if max(abs(shift[0]) / width, abs(shift[1]) / height) > settings.max_shift_fraction:
        return _inconclusive(baseline, shift, f"the view moved {shift[0]:.0f}, {shift[1]:.0f} px")
    aligned = undo_shift(current, baseline, shift)
    view = _ZoneView.of(polygon, (width, height), settings)
    where = (view.window, view.size, view.zone_mask.tobytes())
    base_crop = kept.get(("crop", where), lambda: view.crop(baseline))
    current_crop = view.crop(aligned)
    problem = _view_problem(base_crop, current_crop, view.zone_mask, settings, kept, where)
    if problem:
        return _inconclusive(baseline, shift, problem)
    gain = structure_gain(base_crop, current_crop, view.zone_mask, settings, kept, where)
    changed = _changed_regions(gain, settings) & view.zone_mask
    if STRUCTURE_LOSS:
        hidden_crop = sure_crop = None
        if hidden is not None and hidden.any():
            hidden_crop = view.crop(hidden.astype(np.uint8) * 255) > 0
        if sure is not None and LOSS_SURE_CHANCE is not None:
            frame_sure = sure

            def cropped() -> NDArray[np.float32] | None:
                map_ = frame_sure() if callable(frame_sure) else frame_sure
                if map_ is None:
                    return None
                levels = np.round(np.clip(map_, 0.0, 1.0) * 255).astype(np.uint8)
                return np.asarray(view.crop(levels), np.float32) / 255.0

            sure_crop = _once(cropped)
        changed |= structure_loss(
            base_crop, current_crop, view.zone_mask, kept, where, hidden_crop, sure_crop
        )
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
    baseline: Image,
    current: Image,
    zone: BoolArray,
    settings: StructureSettings,
    kept: Kept | None = None,
    where: Hashable = None,
) -> FloatImage:
    """Per pixel, -1..1: how much more 2-D structure the current view has than the baseline.

    Averaged over the settings' scales and smoothed along the current view's edges, so a
    region follows the outline of what was built. With `kept`, the baseline's structure maps
    at `where` (the crop they were taken on) are kept for the next comparison.
    """
    kept = kept or Kept()
    base_grey = kept.get(("log grey", where), lambda: _log_grey(baseline))
    current_grey = _log_grey(current)
    gains = []
    for sigma in settings.scales:

        def baseline_structure(sigma: float = sigma) -> tuple[FloatImage, float]:
            strength = _corner_strength(base_grey, sigma)
            return strength, max(float(np.median(strength[zone])), 1e-6)

        before, before_median = kept.get(("structure", where, sigma), baseline_structure)
        after = _corner_strength(current_grey, sigma)
        after_median = max(float(np.median(after[zone])), 1e-6)
        joint = float(np.sqrt(before_median * after_median))
        own = settings.view_normalisation
        before = before / (before_median**own * joint ** (1 - own))
        after = after / (after_median**own * joint ** (1 - own))
        gains.append((after - before) / (after + before + settings.structure_floor))
    gain = np.mean(gains, axis=0).astype(np.float32)
    guide = (current_grey - current_grey.mean()) / (current_grey.std() + 1e-6)
    return _guided_filter(guide, gain, _GUIDE_RADIUS, _GUIDE_EPS)


def structure_loss(
    baseline: Image,
    current: Image,
    zone: BoolArray,
    kept: Kept | None = None,
    where: Hashable = None,
    hidden: BoolArray | None = None,
    sure: Sure = None,
) -> BoolArray:
    """Where a new smooth face replaced texture: structure the gain above does not seek.

    A plain shed, tarp or wall over grass or gravel *removes* 2-D structure, keeping only its
    outline, which the ground's own normalised texture outweighs (docs/benchmarks.md,
    "Structures", rounds 7-8). The baseline's grey levels are first mapped onto the current
    view's by their tone curve (`_tone_matched`: gamma, exposure, the IR picture). Where the
    colour moved (smoothed Lab: L from the tone-matched grey, a and b less their view-wide
    median, for white balance) by at least LOSS_MIN_COLOUR, regions are segmented; a region is
    kept when it covers at least LOSS_MIN_SHARE of the zone, is compact (LOSS_MIN_SOLIDITY,
    area over convex hull) and straight-edged (LOSS_MIN_RECTANGULARITY, area over its rotated
    bounding rectangle), and its fine texture energy (gradient magnitude of log grey averaged
    over LOSS_TEXTURE_SIGMA) fell, median over the region, by at least LOSS_MIN_DROP (log
    ratio) beyond the view-wide fall (blur and fog lower texture everywhere). A face partly the
    ground's colour is segmented, too, where its texture fell by LOSS_SEGMENT_DROP and its
    colour moved by at least half of LOSS_MIN_COLOUR (round 9), so it is not cut into pieces
    that fail the shape test. A region over `hidden` (where a person found in both views at the
    same place is now hidden below: something new stands before them) has its texture fall
    judged LOSS_HIDDEN_INTERIOR pixels inside its outline, whose own edges and cast shadow raise
    texture (round 11; docs/benchmarks.md, "Structures", rounds 10 and 11). So is a region
    whose median over `sure` (a learned chance of new structure, 0..1) is at least
    LOSS_SURE_CHANCE: a shed's face smoother than the ground, its region's texture kept up by
    its own outline (round 15). `sure` may be a callable returning the map (or None): it is
    called only for a region whose verdict differs inside its outline and over the whole
    region, and lies over no hidden person (round 15b; the result is the same).
    """
    kept = kept or Kept()
    base_grey = kept.get(("grey", where), lambda: _grey(baseline))
    grey = _grey(current)
    sample = kept.get(("sample", where), lambda: np.flatnonzero(zone)[::_SAMPLE])
    toned = _tone_matched(base_grey, grey, sample)
    before_chroma = kept.get(("chroma", where), lambda: _smooth_chroma(baseline))
    moved = _smooth_chroma(current) - before_chroma
    moved -= np.median(moved.reshape(-1, 2)[sample], axis=0)  # white balance
    level = _blur(grey.astype(np.float32) - toned.astype(np.float32), LOSS_COLOUR_SIGMA)
    level *= 100.0 / 255.0  # grey levels as L units
    colour = np.sqrt(level * level + (moved * moved).sum(axis=2))
    seen = (zone & (colour >= LOSS_MIN_COLOUR)).astype(np.uint8)
    drop: FloatImage | None = None  # texture energy's fall, only once a region asks for it
    if LOSS_SEGMENT_DROP > 0:
        drop = _texture_drop(grey, toned, sample)
        seen |= zone & (drop >= LOSS_SEGMENT_DROP) & (colour >= LOSS_MIN_COLOUR / 2)
    closing = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    seen = np.asarray(cv2.morphologyEx(seen, cv2.MORPH_CLOSE, closing), np.uint8)
    opening = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    candidate = np.asarray(cv2.morphologyEx(seen, cv2.MORPH_OPEN, opening), np.uint8)
    found = np.zeros(zone.shape, np.uint8)
    contours, _ = cv2.findContours(candidate, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    for contour in contours:
        area = float(cv2.contourArea(contour))
        if area < LOSS_MIN_SHARE * float(zone.sum()):
            continue
        hull = cv2.convexHull(contour)
        (_, _), (side_a, side_b), _ = cv2.minAreaRect(contour)
        solidity = area / max(float(cv2.contourArea(hull)), 1.0)
        rectangularity = area / max(side_a * side_b, 1.0)
        if solidity < LOSS_MIN_SOLIDITY or rectangularity < LOSS_MIN_RECTANGULARITY:
            continue
        if drop is None:
            drop = _texture_drop(grey, toned, sample)
        region = np.zeros(zone.shape, np.uint8)
        cv2.drawContours(region, [contour], -1, 1, -1)
        plain = _fell(region, LOSS_INTERIOR, drop)
        deeper = max(LOSS_INTERIOR, LOSS_HIDDEN_INTERIOR)
        if LOSS_HIDDEN_INTERIOR <= 0 or deeper == LOSS_INTERIOR:
            fell = plain
        elif hidden is not None and bool((hidden & (region > 0)).any()):
            fell = _fell(region, deeper, drop)
        else:
            inside = _fell(region, deeper, drop)
            # The sure map is read only where the verdict depends on it (round 15b).
            fell = plain
            if inside != plain and LOSS_SURE_CHANCE is not None and sure is not None:
                map_ = sure() if callable(sure) else sure
                if map_ is not None and float(np.median(map_[region > 0])) >= LOSS_SURE_CHANCE:
                    fell = inside
        if fell:
            found |= region
    return (found > 0) & zone


def _fell(region: NDArray[np.uint8], inset: int, drop: FloatImage) -> bool:
    """Whether the texture fell by LOSS_MIN_DROP (median) over `region`, judged `inset` pixels
    inside its outline (over the whole region when nothing is left inside, or inset is 0)."""
    judged = region
    if inset > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * inset + 1, 2 * inset + 1))
        interior = np.asarray(cv2.erode(region, kernel), np.uint8)
        judged = interior if interior.any() else region
    return float(np.median(drop[judged > 0])) >= LOSS_MIN_DROP


def _once(
    make: Callable[[], NDArray[np.float32] | None],
) -> Callable[[], NDArray[np.float32] | None]:
    """`make`, called at most once: later calls return its first answer."""
    done: list[NDArray[np.float32] | None] = []

    def get() -> NDArray[np.float32] | None:
        if not done:
            done.append(make())
        return done[0]

    return get


def _texture_drop(
    grey: NDArray[np.uint8], toned: NDArray[np.uint8], sample: NDArray[np.intp]
) -> FloatImage:
    """Per pixel, log: how far fine texture fell from the tone-matched baseline to `grey`,
    beyond its view-wide fall (median over `sample`)."""
    energy = _texture_energy(grey)
    floor = 0.25 * max(float(np.median(energy.reshape(-1)[sample])), 1e-6)
    drop = np.log((_texture_energy(toned) + floor) / (energy + floor))
    return np.asarray(drop - float(np.median(drop.reshape(-1)[sample])), np.float32)


def _tone_matched(
    before: NDArray[np.uint8], after: NDArray[np.uint8], sample: NDArray[np.intp]
) -> NDArray[np.uint8]:
    """The baseline's grey levels mapped onto the current view's: per baseline level (in
    _TONE_BINS bins), the median current level over the zone's `sample` (flat indices), so
    gamma, exposure and the IR picture's tone curve are undone before texture and brightness
    are compared."""
    bins = before.reshape(-1)[sample].astype(np.int32) * _TONE_BINS // 256
    keys = np.sort(bins * 256 + after.reshape(-1)[sample])  # by bin, then by current level
    edges = np.searchsorted(keys, np.arange(_TONE_BINS + 1) * 256)
    known = np.flatnonzero(edges[1:] > edges[:-1])
    middle = (edges[known] + edges[known + 1] - 1) // 2
    levels = (keys[middle] % 256).astype(np.float32)
    centres = (known + 0.5) * 256 / _TONE_BINS
    curve = np.interp(np.arange(256), centres, levels).astype(np.float32)
    return np.asarray(np.clip(np.round(curve[before]), 0, 255), np.uint8)


def _texture_energy(grey: NDArray[np.uint8]) -> FloatImage:
    """Fine texture: gradient magnitude of log grey, averaged over LOSS_TEXTURE_SIGMA."""
    log_grey = np.log(grey.astype(np.float32) + _LOG_OFFSET)
    return _blur(_gradient_magnitude(_blur(log_grey, _PRE_BLUR)), LOSS_TEXTURE_SIGMA)


def _smooth_chroma(image: Image) -> FloatImage:
    """Lab's a and b (8-bit OpenCV Lab: Lab units, offset 128), smoothed."""
    lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB)
    return _blur(np.asarray(lab[..., 1:], np.float32), LOSS_COLOUR_SIGMA)


def estimate_shift(
    baseline: Image, current: Image, min_peak: float, kept: Kept | None = None
) -> tuple[float, float]:
    """(dx, dy) the current view moved against the baseline, in frame pixels.

    Phase correlation on log intensity (indifferent to light); a weak peak means the views do
    not share enough content to tell, and they are taken as unshifted.
    """
    kept = kept or Kept()
    height, width = baseline.shape[:2]
    scale = min(1.0, _ALIGN_SIZE / max(height, width))
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    before = kept.get(
        ("align", size),
        lambda: cv2.resize(_log_grey(baseline), size, interpolation=cv2.INTER_AREA),
    )
    after = cv2.resize(_log_grey(current), size, interpolation=cv2.INTER_AREA)
    window = cv2.createHanningWindow(size, cv2.CV_32F)
    # phaseCorrelate windows its inputs in place: the kept baseline is handed over as a copy.
    (dx, dy), peak = cv2.phaseCorrelate(before.copy(), after, window)
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
    baseline: Image,
    current: Image,
    zone: BoolArray,
    settings: StructureSettings,
    kept: Kept | None = None,
    where: Hashable = None,
) -> str:
    """Why the current view cannot be judged against the baseline; empty when it can."""
    kept = kept or Kept()
    grey = _grey(current)
    if float(np.std(grey[zone])) < settings.min_contrast:
        return "the zone shows no contrast (night, fog or a covered lens)"
    base_sharpness = kept.get(("sharpness", where), lambda: _sharpness(baseline, zone))
    softness = _sharpness(current, zone) / max(base_sharpness, 1e-6)
    if softness < settings.min_sharpness_ratio and SOFTNESS_OUTSIDE_CHANGE:
        # Round 7: softer only if the view is softer outside what changed, too (blur is).
        unchanged = _unchanged_part(baseline, current, zone, kept, where)
        softness = _sharpness(current, unchanged) / max(_sharpness(baseline, unchanged), 1e-6)
    if softness < settings.min_sharpness_ratio:
        return f"the view is softer than its baseline (sharpness ratio {softness:.2f})"
    base_noise = kept.get(("noise", where), lambda: _noise_level(_grey(baseline), zone))
    added = _noise_level(grey, zone) - base_noise
    if added > settings.max_noise_increase:
        return f"the view carries {added:.1f} grey levels more noise than its baseline"
    return ""


def _unchanged_part(
    baseline: Image, current: Image, zone: BoolArray, kept: Kept, where: Hashable
) -> BoolArray:
    """The zone less where the view's coarse picture changed: log grey levels smoothed over
    _LOW_PASS pixels, their difference less its median (light), over _SAME_LEVEL. Blur, fog
    and a wet lens hardly move the coarse picture, so for them this is the whole zone; a new
    face (a shed's plain wall over grass) does, and is left out. The whole zone when less than
    _MIN_UNCHANGED of it is left (gamma and night IR change the coarse picture everywhere)."""
    before = kept.get(("low pass", where), lambda: _blur(_log_grey(baseline), _LOW_PASS))
    difference = _blur(_log_grey(current), _LOW_PASS) - before
    difference -= float(np.median(difference[zone]))
    keep = zone & (np.abs(difference) <= _SAME_LEVEL)
    return keep if keep.sum() >= _MIN_UNCHANGED * zone.sum() else zone


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
