"""Score a detector on labelled frames: precision, recall and AP50 per class, by IoU matching.

    python -m models.evaluate MODEL IMAGES [--labels DIR] [--names DATA_YAML] [--imgsz 640]
        [--conf 0.25] [--iou 0.5]

Labels are YOLO txt files (``class cx cy w h`` normalised), one per image with the same stem,
in --labels or in the ``labels`` folder beside ``images`` (YOLO layout). With --names the
label classes are matched to the model's classes by name (a COCO model scored on a car-only
set); without, label ids are the model's ids. AP50 is the all-point interpolated area under
the precision-recall curve of the detections above --conf ("mAP50-ish": a low --conf gives
the usual figure). Prints a progress bar on a terminal and a JSON summary as its last line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel

from edge.capture import IMAGE_SUFFIXES, read_image
from edge.config import DetectorSettings
from edge.detections import Detections, FloatArray, IntArray, iou_matrix
from edge.detector import Detector, create_detector


class LabelError(Exception):
    """A label file that is not YOLO format; says which file and line."""


@dataclass(frozen=True)
class Labels:
    class_id: IntArray
    xyxy: FloatArray


def read_yolo_labels(path: Path, width: int, height: int) -> Labels:
    """Boxes of a YOLO label file in pixels of a width x height image; no file: no boxes."""
    rows: list[list[float]] = []
    if path.is_file():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                values = [float(v) for v in line.split()]
            except ValueError as exc:
                raise LabelError(f"{path}:{number}: not numbers: {line!r}") from exc
            if len(values) != 5:
                raise LabelError(f"{path}:{number}: expected 'class cx cy w h', got {line!r}")
            rows.append(values)
    table = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    cx, cy, w, h = (
        table[:, 1] * width,
        table[:, 2] * height,
        table[:, 3] * width,
        table[:, 4] * height,
    )
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
    return Labels(class_id=table[:, 0].astype(np.int64), xyxy=xyxy)


def match(
    labels: FloatArray, boxes: FloatArray, confidence: FloatArray, min_iou: float
) -> list[bool]:
    """For each box (same class as the labels), True if it is a true positive.

    Greedy by confidence: each box takes the free label it overlaps most, at min_iou or more.
    """
    result = [False] * len(boxes)
    if not len(labels) or not len(boxes):
        return result
    ious = iou_matrix(boxes, labels)
    taken = np.zeros(len(labels), dtype=bool)
    for i in np.argsort(-confidence, kind="stable"):
        candidates = np.where(taken, -1.0, ious[i])
        best = int(candidates.argmax())
        if candidates[best] >= min_iou:
            taken[best] = True
            result[i] = True
    return result


def average_precision(hits: Sequence[bool], confidence: Sequence[float], positives: int) -> float:
    """All-point interpolated area under the precision-recall curve."""
    if positives == 0 or not hits:
        return 0.0
    order = np.argsort(-np.asarray(confidence), kind="stable")
    tp = np.cumsum(np.asarray(hits, dtype=np.float64)[order])
    precision = tp / np.arange(1, len(tp) + 1)
    recall = tp / positives
    precision = np.concatenate([[1.0], precision, [0.0]])
    recall = np.concatenate([[0.0], recall, [recall[-1]]])
    # Make precision monotone from the right, then sum the rectangles where recall grows.
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.where(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


class ClassScore(BaseModel):
    labels: int
    detections: int
    true_positives: int
    precision: float
    recall: float
    ap50: float


class EvaluationReport(BaseModel):
    model: str
    images: int
    imgsz: int
    confidence: float
    iou: float
    precision: float
    recall: float
    map50: float
    classes: dict[str, ClassScore]


@dataclass
class _Tally:
    labels: int = 0
    hits: list[bool] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)

    def score(self) -> ClassScore:
        tp = sum(self.hits)
        return ClassScore(
            labels=self.labels,
            detections=len(self.hits),
            true_positives=tp,
            precision=round(tp / len(self.hits), 4) if self.hits else 0.0,
            recall=round(tp / self.labels, 4) if self.labels else 0.0,
            ap50=round(average_precision(self.hits, self.confidence, self.labels), 4),
        )


class Scorer:
    """Accumulates one image at a time; label class ids are mapped to model class names."""

    def __init__(self, label_names: Mapping[int, str], min_iou: float = 0.5) -> None:
        self.label_names = dict(label_names)
        self.min_iou = min_iou
        self._tallies = {name: _Tally() for name in self.label_names.values()}
        self.images = 0

    def add(self, labels: Labels, detections: Detections) -> None:
        self.images += 1
        names = np.asarray(detections.names(), dtype=object)
        for class_id, name in self.label_names.items():
            tally = self._tallies[name]
            truth = labels.xyxy[labels.class_id == class_id]
            mine = names == name
            tally.labels += len(truth)
            tally.hits += match(
                truth, detections.xyxy[mine], detections.confidence[mine], self.min_iou
            )
            tally.confidence += detections.confidence[mine].tolist()
        unknown = set(labels.class_id.tolist()) - set(self.label_names)
        if unknown:
            raise LabelError(f"label classes {sorted(unknown)} have no name")

    def scores(self) -> dict[str, ClassScore]:
        return {name: tally.score() for name, tally in self._tallies.items()}


def _label_dir(images: Path) -> Path:
    beside = images.parent.parent / "labels" / images.name  # images/val -> labels/val
    if images.parent.name == "images" and beside.is_dir():
        return beside
    sibling = images.parent / "labels"
    return sibling if images.name == "images" and sibling.is_dir() else images


def _progress(done: int, total: int) -> None:
    if sys.stderr.isatty():
        filled = int(30 * done / max(total, 1))
        sys.stderr.write(f"\revaluate [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def evaluate(
    detector: Detector,
    samples: Iterable[tuple[Path, Path]],
    label_names: Mapping[int, str],
    settings: DetectorSettings,
    min_iou: float = 0.5,
) -> EvaluationReport:
    """Run the detector on every (image, label file) pair and score it."""
    pairs = list(samples)
    scorer = Scorer(label_names, min_iou)
    for done, (image_path, label_path) in enumerate(pairs, start=1):
        image = read_image(image_path)
        height, width = image.shape[:2]
        scorer.add(read_yolo_labels(label_path, width, height), detector.detect_batch([image])[0])
        _progress(done, len(pairs))
    classes = scorer.scores()
    labelled = [s for s in classes.values() if s.labels]
    detections = sum(s.detections for s in classes.values())
    tp = sum(s.true_positives for s in classes.values())
    labels = sum(s.labels for s in classes.values())
    return EvaluationReport(
        model=detector.name,
        images=scorer.images,
        imgsz=settings.imgsz,
        confidence=settings.confidence,
        iou=min_iou,
        precision=round(tp / detections, 4) if detections else 0.0,
        recall=round(tp / labels, 4) if labels else 0.0,
        map50=round(float(np.mean([s.ap50 for s in labelled])), 4) if labelled else 0.0,
        classes=classes,
    )


def _names(path: Path | None, model_names: Mapping[int, str]) -> dict[int, str]:
    if path is None:
        return dict(model_names)
    data = yaml.safe_load(path.read_text()) or {}
    names = data.get("names")
    if not names:
        raise LabelError(f"{path}: no 'names'")
    return {
        int(k): str(v) for k, v in (names.items() if isinstance(names, dict) else enumerate(names))
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.evaluate", description=__doc__)
    parser.add_argument("model", help="a model Ultralytics or edge.detector loads")
    parser.add_argument("images", type=Path, help="folder of labelled images")
    parser.add_argument("--labels", type=Path, help="label folder (default: YOLO layout)")
    parser.add_argument("--names", type=Path, help="data.yaml naming the label classes")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--iou", type=float, default=0.5, help="IoU that counts as a match")
    args = parser.parse_args(argv)
    images = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        print(f"no images in {args.images}", file=sys.stderr)
        return 2
    labels = args.labels or _label_dir(args.images)
    settings = DetectorSettings(model=args.model, imgsz=args.imgsz, confidence=args.conf)
    detector = create_detector(settings)
    model_names = getattr(detector, "class_names", {})
    try:
        report = evaluate(
            detector,
            [(p, labels / f"{p.stem}.txt") for p in images],
            _names(args.names, model_names),
            settings,
            args.iou,
        )
    except LabelError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(report.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
