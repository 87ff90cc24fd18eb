"""Class-agnostic stationary foreground over a fire lane: whatever stopped there, with or without
a detector class (stacked goods, a cart, an e-bike).

Dual background (Porikli's "abandoned object" idea): a long-term model learns the empty lane
slowly, a short-term model follows the picture within seconds. A pixel that differs from the
long-term model but has become part of the short-term one is something new that stopped. The
long-term model does not learn under such pixels, so a parked object stays visible for as long as
a dwell can run; it learns again once the pixel matches it, and a "ghost" (an object that was
there at start-up and left) is recognised by its edges and learned at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from contracts.sites import STATIONARY_OBJECT
from edge.config import ForegroundSettings
from edge.detections import BoolArray, Detections, FloatArray, Frame, box_iou

STATIONARY_CLASS_NAME = STATIONARY_OBJECT
STATIONARY_CLASS_ID = 1000  # outside COCO's 0..79, so it never collides with a detector class
STATIONARY_CLASSES = {STATIONARY_CLASS_ID: STATIONARY_CLASS_NAME}

Grey = NDArray[np.float32]
# A frame seconds apart (a stalled stream) must not count as seconds of standing still.
_MAX_STEP_SECONDS = 1.0
_WARMUP_SAMPLES = 25
_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))


@dataclass(frozen=True, slots=True)
class ZoneWindow:
    """Where a zone polygon sits in the frame: its bounding box, clipped to the frame."""

    x0: int
    y0: int
    x1: int
    y1: int

    @classmethod
    def of(cls, polygon: ArrayLike, frame_size: tuple[int, int]) -> ZoneWindow:
        width, height = frame_size
        points = np.asarray(polygon, dtype=np.float32).reshape(-1, 2)
        if len(points) < 3:
            raise ValueError(f"zone polygon needs at least 3 points, got {len(points)}")
        x0 = max(0, math.floor(float(points[:, 0].min())))
        y0 = max(0, math.floor(float(points[:, 1].min())))
        x1 = min(width, math.ceil(float(points[:, 0].max())))
        y1 = min(height, math.ceil(float(points[:, 1].max())))
        if x1 - x0 < 2 or y1 - y0 < 2:
            raise ValueError(
                f"zone polygon {points.tolist()} lies outside the {width}x{height} frame"
            )
        return cls(x0, y0, x1, y1)

    @property
    def size(self) -> tuple[int, int]:
        return self.x1 - self.x0, self.y1 - self.y0

    def polygon_mask(self, polygon: ArrayLike, shape: tuple[int, int]) -> BoolArray:
        """The polygon's pixels on a grid of `shape` (rows, cols) laid over this window."""
        rows, cols = shape
        width, height = self.size
        points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        scaled = (points - (self.x0, self.y0)) * (cols / width, rows / height)
        canvas = np.zeros((rows, cols), dtype=np.uint8)
        cv2.fillPoly(canvas, [np.round(scaled).astype(np.int32)], 1)
        return canvas.astype(np.bool_)


@dataclass(frozen=True, slots=True)
class ForegroundResult:
    """One frame's view of the lane.

    stationary_mask covers the zone's bounding box at analysis scale (True = stationary and
    inside the polygon); objects holds one tracked box per stationary blob, in frame pixels.
    """

    stationary_mask: BoolArray
    blocked_share: float
    objects: Detections


@dataclass(slots=True)
class _Blob:
    object_id: int
    box: FloatArray
    last_seen: datetime


class StationaryForeground:
    """Finds things that stopped inside one zone polygon; feed it every processed frame."""

    def __init__(
        self,
        polygon: ArrayLike,
        frame_size: tuple[int, int],
        settings: ForegroundSettings,
    ) -> None:
        self.settings = settings
        self.frame_size = frame_size
        self.polygon: FloatArray = np.asarray(polygon, dtype=np.float32).reshape(-1, 2)
        self.window = ZoneWindow.of(self.polygon, frame_size)
        width, height = self.window.size
        self._shape = (
            max(4, round(height * settings.downscale)),
            max(4, round(width * settings.downscale)),
        )
        self._inside = self.window.polygon_mask(self.polygon, self._shape)
        self._inside_count = max(1, int(self._inside.sum()))
        # Frame pixels one analysis pixel stands for, per axis.
        self._scale = (width / self._shape[1], height / self._shape[0])
        self._warmup: list[Grey] = []
        self._started_at: datetime | None = None
        self._last_at: datetime | None = None
        self._long: Grey | None = None
        self._short: Grey | None = None
        self._evidence = np.zeros(self._shape, dtype=np.float32)
        self._age = np.zeros(self._shape, dtype=np.float32)
        self._stationary = np.zeros(self._shape, dtype=np.bool_)
        self._blobs: list[_Blob] = []
        self._next_id = 0

    @property
    def long_term_model(self) -> Grey | None:
        """The learned empty lane at analysis scale (None until warm-up ends)."""
        return None if self._long is None else self._long.copy()

    def analysis_view(self, image: NDArray[np.uint8]) -> Grey:
        """The zone's bounding box of a BGR frame, grey and at analysis scale."""
        w = self.window
        grey = cv2.cvtColor(image[w.y0 : w.y1, w.x0 : w.x1], cv2.COLOR_BGR2GRAY)
        small = cv2.resize(grey, self._shape[::-1], interpolation=cv2.INTER_AREA)
        return np.asarray(cv2.GaussianBlur(small, (3, 3), 0), dtype=np.float32)

    def update(self, frame: Frame) -> ForegroundResult:
        height, width = frame.image.shape[:2]
        if (width, height) != self.frame_size or frame.image.shape[2:] != (3,):
            raise ValueError(
                f"frame {frame.index}: expected a {self.frame_size[0]}x{self.frame_size[1]} BGR "
                f"image for this zone, got shape {frame.image.shape}"
            )
        grey = self.analysis_view(frame.image)
        step = self._step_seconds(frame.timestamp)
        if self._long is None or self._short is None:
            return self._warm_up(grey, frame.timestamp)
        long_model, short_model = self._long, self._short
        grey = self._match_light(grey, long_model)
        threshold = self.settings.difference_threshold
        off_long = np.abs(grey - long_model) > threshold
        off_short = np.abs(grey - short_model) > threshold
        new_and_still = off_long & ~off_short
        # Evidence grows while new-and-still, decays while something moves there, resets on
        # the empty lane; a pixel once stationary stays so while the lane there is not empty,
        # so a pedestrian passing in front of a parked cart does not break it.
        self._evidence = np.where(
            new_and_still,
            self._evidence + step,
            np.where(off_long, np.maximum(self._evidence - step, 0.0), 0.0),
        ).astype(np.float32)
        confirmed = self._evidence >= self.settings.confirm_seconds
        self._stationary = off_long & (self._stationary | confirmed)
        self._age = np.where(self._stationary, self._age + step, 0.0).astype(np.float32)

        short_model += self._rate(step, self.settings.short_term_seconds) * (grey - short_model)
        learn = ~off_long
        long_model[learn] += self._rate(step, self.settings.long_term_seconds) * (
            grey[learn] - long_model[learn]
        )
        self._absorb(self._age >= self.settings.absorb_after_seconds, grey)

        mask = self._clean(self._stationary)
        objects, mask = self._objects(mask, grey, long_model, frame.timestamp)
        return ForegroundResult(
            stationary_mask=mask,
            blocked_share=float(mask.sum()) / self._inside_count,
            objects=objects,
        )

    def _step_seconds(self, at: datetime) -> float:
        previous, self._last_at = self._last_at, at
        if previous is None:
            return 0.0
        return min(max((at - previous).total_seconds(), 0.0), _MAX_STEP_SECONDS)

    def _warm_up(self, grey: Grey, at: datetime) -> ForegroundResult:
        if self._started_at is None:
            self._started_at = at
        elapsed = (at - self._started_at).total_seconds()
        # A sample every so often is enough for the median, and keeps memory flat at any fps.
        if elapsed >= len(self._warmup) * self.settings.warmup_seconds / _WARMUP_SAMPLES:
            self._warmup.append(grey)
        if elapsed >= self.settings.warmup_seconds:
            # The median of the warm-up frames leaves out whoever walked through meanwhile.
            self._long = np.median(np.stack(self._warmup), axis=0).astype(np.float32)
            self._short = grey.copy()
            self._warmup.clear()
        return ForegroundResult(
            stationary_mask=np.zeros(self._shape, dtype=np.bool_),
            blocked_share=0.0,
            objects=Detections.empty(STATIONARY_CLASSES),
        )

    def _match_light(self, grey: Grey, long_model: Grey) -> Grey:
        """Scale the frame so its median over the empty part of the lane matches the model's."""
        reference = self._inside & ~self._stationary
        if not reference.any():
            return grey
        frame_level = float(np.median(grey[reference]))
        model_level = float(np.median(long_model[reference]))
        limit = self.settings.max_light_gain
        gain = min(max(model_level / max(frame_level, 1.0), 1.0 / limit), limit)
        return grey * np.float32(gain)

    @staticmethod
    def _rate(step: float, time_constant: float) -> np.float32:
        return np.float32(1.0 - math.exp(-step / time_constant))

    def _absorb(self, pixels: BoolArray, grey: Grey) -> None:
        """Take pixels into both models as the empty lane and forget their history."""
        if not pixels.any():
            return
        for model in (self._long, self._short):
            if model is not None:
                model[pixels] = grey[pixels]
        self._evidence[pixels] = 0.0
        self._age[pixels] = 0.0
        self._stationary[pixels] = False

    def _clean(self, mask: BoolArray) -> BoolArray:
        """Drop single-pixel noise, then close small gaps inside one object."""
        opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, _KERNEL)
        closed = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, _KERNEL, iterations=2)
        return np.asarray(closed, dtype=np.bool_) & self._inside

    def _objects(
        self, mask: BoolArray, grey: Grey, long_model: Grey, at: datetime
    ) -> tuple[Detections, BoolArray]:
        count, labels, stats, _ = cv2.connectedComponentsWithStats(
            mask.astype(np.uint8), connectivity=8
        )
        sx, sy = self._scale
        edges = _EdgeCache(grey, long_model)
        boxes: list[FloatArray] = []
        fills: list[float] = []
        for label in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[label])
            if area * sx * sy < self.settings.min_object_pixels:
                mask = mask & (labels != label)
                continue
            box = np.array(
                [
                    self.window.x0 + x * sx,
                    self.window.y0 + y * sy,
                    self.window.x0 + (x + w) * sx,
                    self.window.y0 + (y + h) * sy,
                ],
                dtype=np.float32,
            )
            blob = labels == label
            if not self._has_id_near(box) and self._is_ghost(blob, edges):
                # The whole old object goes, with the pieces not yet confirmed around it.
                region = np.zeros_like(blob)
                region[max(0, y - 2) : y + h + 2, max(0, x - 2) : x + w + 2] = True
                self._absorb(region & (blob | (self._evidence > 0)), grey)
                mask = mask & ~blob
                continue
            boxes.append(box)
            fills.append(area / float(w * h))
        ids = self._assign_ids(boxes, at)
        objects = Detections.create(
            xyxy=np.array(boxes, dtype=np.float32).reshape(-1, 4),
            confidence=fills,
            class_id=[STATIONARY_CLASS_ID] * len(boxes),
            class_names=STATIONARY_CLASSES,
            tracker_id=ids,
        )
        return objects, mask

    def _has_id_near(self, box: FloatArray) -> bool:
        return any(box_iou(box, blob.box) >= self.settings.match_iou for blob in self._blobs)

    def _is_ghost(self, blob: BoolArray, edges: _EdgeCache) -> bool:
        """True when the blob's outline is an edge of the old model rather than of the frame.

        A new object brings its own outline into the picture; an object that left takes its
        outline away, so the outline is strong in the long-term model and weak in the frame.
        """
        as_bytes = blob.astype(np.uint8)
        outline = (cv2.dilate(as_bytes, _KERNEL) - cv2.erode(as_bytes, _KERNEL)).astype(np.bool_)
        in_frame = float(edges.frame[outline].mean())
        in_model = float(edges.model[outline].mean())
        return in_model > self.settings.ghost_edge_ratio * max(in_frame, 1.0)

    def _assign_ids(self, boxes: list[FloatArray], at: datetime) -> list[int]:
        """Keep each blob's id across frames by box overlap, best pairs first."""
        pairs = sorted(
            (
                (box_iou(box, blob.box), i, j)
                for i, box in enumerate(boxes)
                for j, blob in enumerate(self._blobs)
            ),
            reverse=True,
        )
        ids: list[int | None] = [None] * len(boxes)
        taken: set[int] = set()
        for overlap, i, j in pairs:
            if overlap < self.settings.match_iou:
                break
            if ids[i] is None and j not in taken:
                ids[i] = self._blobs[j].object_id
                taken.add(j)
                self._blobs[j].box = boxes[i]
                self._blobs[j].last_seen = at
        for i, box in enumerate(boxes):
            if ids[i] is None:
                ids[i] = self._next_id
                self._blobs.append(_Blob(self._next_id, box, at))
                self._next_id += 1
        forget = self.settings.forget_seconds
        self._blobs = [b for b in self._blobs if (at - b.last_seen).total_seconds() <= forget]
        return [i for i in ids if i is not None]


def _edge_strength(grey: Grey) -> Grey:
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return np.asarray(np.abs(gx) + np.abs(gy), dtype=np.float32)


class _EdgeCache:
    """Edge images of one frame and the model, computed only when a new blob needs them."""

    def __init__(self, frame: Grey, model: Grey) -> None:
        self._frame = frame
        self._model = model

    @cached_property
    def frame(self) -> Grey:
        return _edge_strength(self._frame)

    @cached_property
    def model(self) -> Grey:
        return _edge_strength(self._model)


def blocked_share_with_boxes(
    zone_polygon: ArrayLike,
    frame_size: tuple[int, int],
    stationary_mask: BoolArray,
    boxes: ArrayLike,
) -> float:
    """Share of the lane covered by the stationary mask and the given boxes (frame pixels) together.

    stationary_mask is a ForegroundResult's mask (the zone's bounding box at any scale); an
    empty mask of any shape with size 0 means no stationary foreground.
    """
    polygon = np.asarray(zone_polygon, dtype=np.float32).reshape(-1, 2)
    window = ZoneWindow.of(polygon, frame_size)
    width, height = window.size
    shape = stationary_mask.shape if stationary_mask.size else (height, width)
    rows, cols = shape[0], shape[1]
    inside = window.polygon_mask(polygon, (rows, cols))
    covered = np.zeros((rows, cols), dtype=np.uint8)
    if stationary_mask.size:
        covered[stationary_mask.astype(np.bool_)] = 1
    sx, sy = cols / width, rows / height
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        corners = (
            (round((x1 - window.x0) * sx), round((y1 - window.y0) * sy)),
            (round((x2 - window.x0) * sx) - 1, round((y2 - window.y0) * sy) - 1),
        )
        cv2.rectangle(covered, corners[0], corners[1], 1, thickness=cv2.FILLED)
    area = int(inside.sum())
    return float((covered.astype(np.bool_) & inside).sum()) / area if area else 0.0
