"""The one detections type that flows from the detector through tracking, zones and rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float32]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
Image = NDArray[np.uint8]

UNTRACKED = -1


@dataclass(frozen=True, slots=True)
class Frame:
    """One BGR image from a camera, stamped with the time it shows (UTC-aware)."""

    image: Image
    index: int
    timestamp: datetime

    def __post_init__(self) -> None:
        if self.timestamp.tzinfo is None:
            raise ValueError(f"frame {self.index}: timestamp must be timezone-aware")


@dataclass(frozen=True, slots=True)
class Detections:
    """N boxes with their confidence, class and track id (-1 when untracked)."""

    xyxy: FloatArray
    confidence: FloatArray
    class_id: IntArray
    class_names: Mapping[int, str] = field(default_factory=dict)
    tracker_id: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"xyxy must be Nx4, got shape {self.xyxy.shape}")
        if len(self.tracker_id) == 0 and n:
            object.__setattr__(self, "tracker_id", np.full(n, UNTRACKED, dtype=np.int64))
        for name in ("confidence", "class_id", "tracker_id"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} boxes")

    @classmethod
    def create(
        cls,
        xyxy: object,
        confidence: object,
        class_id: object,
        class_names: Mapping[int, str],
        tracker_id: object | None = None,
    ) -> Detections:
        """Build from anything array-like, normalising dtypes and shapes."""
        boxes = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
        ids = (
            np.full(len(boxes), UNTRACKED, dtype=np.int64)
            if tracker_id is None
            else np.asarray(tracker_id, dtype=np.int64).reshape(-1)
        )
        return cls(
            xyxy=boxes,
            confidence=np.asarray(confidence, dtype=np.float32).reshape(-1),
            class_id=np.asarray(class_id, dtype=np.int64).reshape(-1),
            class_names=dict(class_names),
            tracker_id=ids,
        )

    @classmethod
    def empty(cls, class_names: Mapping[int, str] | None = None) -> Detections:
        return cls.create(np.zeros((0, 4)), [], [], class_names or {})

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, selector: BoolArray | IntArray) -> Detections:
        """The detections a boolean mask or an index array selects."""
        return Detections(
            xyxy=self.xyxy[selector].reshape(-1, 4),
            confidence=self.confidence[selector].reshape(-1),
            class_id=self.class_id[selector].reshape(-1),
            class_names=self.class_names,
            tracker_id=self.tracker_id[selector].reshape(-1),
        )

    def __add__(self, other: Detections) -> Detections:
        """Both sets of boxes in one; class names from both (their ids must not clash)."""
        if not len(other):
            return self
        if not len(self):
            return other
        return Detections(
            xyxy=np.concatenate([self.xyxy, other.xyxy]),
            confidence=np.concatenate([self.confidence, other.confidence]),
            class_id=np.concatenate([self.class_id, other.class_id]),
            class_names={**self.class_names, **other.class_names},
            tracker_id=np.concatenate([self.tracker_id, other.tracker_id]),
        )

    def with_tracker_ids(self, tracker_id: IntArray) -> Detections:
        return Detections(self.xyxy, self.confidence, self.class_id, self.class_names, tracker_id)

    def anchors(self) -> FloatArray:
        """Bottom-centre point of each box: where a vehicle touches the ground."""
        x = (self.xyxy[:, 0] + self.xyxy[:, 2]) / 2
        return np.stack([x, self.xyxy[:, 3]], axis=1).astype(np.float32)

    def class_name(self, i: int) -> str:
        class_id = int(self.class_id[i])
        return self.class_names.get(class_id, str(class_id))

    def names(self) -> list[str]:
        return [self.class_name(i) for i in range(len(self))]


def box_iou(a: FloatArray | Sequence[float], b: FloatArray | Sequence[float]) -> float:
    """Intersection over union of two xyxy boxes (arrays, or tuples of pixels): the one pair
    IoU of the edge and of models/; iou_matrix is the same for many boxes at once."""
    ix = max(0.0, float(min(a[2], b[2]) - max(a[0], b[0])))
    iy = max(0.0, float(min(a[3], b[3]) - max(a[1], b[1])))
    inter = ix * iy
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


def iou_matrix(a: FloatArray, b: FloatArray) -> FloatArray:
    """IoU of every box in a (N x 4 xyxy) with every box in b (M x 4)."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0).astype(np.float32)
