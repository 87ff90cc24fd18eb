"""Multi-object tracking with Ultralytics' ByteTrack, fed and read back as our Detections."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np

from edge.config import TrackerSettings
from edge.detections import BoolArray, Detections, FloatArray, IntArray


class _TrackerInput:
    """The Results-like view BYTETracker.update() reads: .conf, .cls, .xyxy, .xywh, masks."""

    def __init__(self, xyxy: FloatArray, conf: FloatArray, cls: FloatArray) -> None:
        self.xyxy = xyxy
        self.conf = conf
        self.cls = cls

    @property
    def xywh(self) -> FloatArray:
        xy = (self.xyxy[:, :2] + self.xyxy[:, 2:]) / 2
        wh = self.xyxy[:, 2:] - self.xyxy[:, :2]
        return np.concatenate([xy, wh], axis=1)

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, selector: BoolArray | IntArray) -> _TrackerInput:
        return _TrackerInput(self.xyxy[selector], self.conf[selector], self.cls[selector])


class ObjectTracker:
    """One camera's tracker: gives each detection a track id stable across frames."""

    def __init__(self, settings: TrackerSettings, fps: float, min_confidence: float = 0.25) -> None:
        from ultralytics.trackers.byte_tracker import BYTETracker  # heavy; after env is prepared

        args = SimpleNamespace(
            tracker_type="bytetrack",
            track_high_thresh=min_confidence,
            track_low_thresh=0.1,
            new_track_thresh=min_confidence,
            track_buffer=max(1, math.ceil(settings.lost_track_seconds * fps)),
            match_thresh=0.8,
            fuse_score=True,
        )
        self._tracker: Any = BYTETracker(args)  # type: ignore[no-untyped-call]

    def update(self, detections: Detections) -> Detections:
        """The detections that belong to a confirmed track, with tracker_id filled in."""
        source = _TrackerInput(
            detections.xyxy, detections.confidence, detections.class_id.astype(np.float32)
        )
        rows = np.asarray(self._tracker.update(source), dtype=np.float32).reshape(-1, 8)
        if len(rows) == 0:
            return detections[np.zeros(len(detections), dtype=np.bool_)]
        indices = rows[:, 7].astype(np.int64)
        return detections[indices].with_tracker_ids(rows[:, 4].astype(np.int64))
