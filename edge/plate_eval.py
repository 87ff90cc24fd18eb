"""Score a plate reader on a folder of images named by their plate (皖A12345.jpg reads 皖A12345).

Two kinds of folder: plate crops (``evaluate_plates``), and whole scenes (``evaluate_frames``),
where the shared detector finds the vehicles first and every vehicle's plate is read.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from contracts.stats import percentile
from edge.config import PlateSettings
from edge.detections import FloatArray, Image
from edge.plate_decoding import PLATE_RE, PlateCandidate
from edge.plate_recognisers import rapidocr_recogniser
from edge.plates import PlateReader

if TYPE_CHECKING:
    from edge.detector import Detector

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
_BASELINE_UPSCALE = 3
_SEPARATORS = "·•.- "


class CropReader(Protocol):
    def read_plate(self, crop: Image) -> PlateCandidate | None: ...


class PlateFailure(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    expected: str
    read: str | None = Field(description="what the reader returned; None when it found nothing")


class PlateEvaluation(BaseModel):
    """How well a reader reads a labelled folder of plate crops."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(ge=0, description="crops read")
    exact_match_rate: float = Field(ge=0.0, le=1.0, description="share read exactly right")
    char_accuracy: float = Field(
        ge=0.0,
        le=1.0,
        description="1 - edit distance / label length, summed over the folder (missed = 0)",
    )
    ms_median: float = Field(ge=0.0, description="wall time per plate, median")
    ms_p95: float = Field(ge=0.0, description="wall time per plate, 95th percentile")
    cpu_ms_median: float = Field(
        ge=0.0, description="process CPU time per plate, median: steadier on a shared machine"
    )
    failures: list[PlateFailure] = Field(description="the first 20 misreads")


class FrameRead(BaseModel):
    """What one scene gave: its label, each accepted reading and the best one below the floor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    expected: str
    outcome: Literal["exact", "miss", "false_read"]
    reads: list[str] = Field(description="readings at or above the floor (all vehicles)")
    below_floor: str | None = Field(
        default=None, description="the best reading under the floor, for a miss: not decided on"
    )
    confidence: float | None = None


class FrameEvaluation(BaseModel):
    """Whole-scene images: detector, then each vehicle's plate; a reading counts above the floor.

    A scene is exact when a reading equals its label, a false read when any reading is a plate
    that is not the label (a wrong plate decided on is worse than none), a miss otherwise.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(ge=0, description="labelled scenes scored")
    exact: int = Field(ge=0)
    misses: int = Field(ge=0)
    false_reads: int = Field(ge=0, description="scenes with a reading that is not their label")
    exact_rate: float = Field(ge=0.0, le=1.0)
    floor: float = Field(ge=0.0, le=1.0, description="readings below this are not decided on")
    below_floor_right: int = Field(ge=0, description="readings under the floor that were right")
    below_floor_wrong: int = Field(ge=0, description="readings under the floor that were wrong")
    unlabelled: list[str] = Field(description="images whose name is no plate: not scored")
    unreadable: list[str] = Field(description="files that are not images: scored as misses")
    vehicles: int = Field(ge=0, description="vehicles the detector found, all scenes")
    ms_per_vehicle_median: float = Field(ge=0.0, description="plate search and read, wall time")
    ms_per_vehicle_p95: float = Field(ge=0.0)
    reads: list[FrameRead] = Field(description="every scene's outcome, in file order")


class PlateFolderError(ValueError):
    """The folder cannot be scored: missing, no crops, or a crop that is not an image."""


def labelled_crops(directory: Path) -> list[Path]:
    """The image files of a folder, sorted; each file's stem is its plate text."""
    if not directory.is_dir():
        raise PlateFolderError(f"plate folder not found: {directory}")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise PlateFolderError(
            f"no plate images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {directory}"
        )
    return files


def load_crop(path: Path) -> Image:
    """Decode an image whose name may be UTF-8 (cv2.imread cannot open those everywhere)."""
    image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise PlateFolderError(f"not a readable image: {path}")
    return np.asarray(image, dtype=np.uint8)


def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def evaluate_plates(
    directory: Path,
    reader: CropReader,
    progress: Callable[[int, int], None] | None = None,
) -> PlateEvaluation:
    """Read every crop of the folder and compare with its file name.

    A crop that cannot be decoded counts as a miss and is named in the failures.
    """
    files = labelled_crops(directory)
    exact = 0
    chars_right = 0
    chars_total = 0
    wall_ms: list[float] = []
    cpu_ms: list[float] = []
    failures: list[PlateFailure] = []
    for done, path in enumerate(files, start=1):
        expected = path.stem
        try:
            crop = load_crop(path)
        except ValueError:
            crop = None
        read: str | None = None
        if crop is not None:
            wall, cpu = time.perf_counter(), time.process_time()
            candidate = reader.read_plate(crop)
            wall_ms.append((time.perf_counter() - wall) * 1000)
            cpu_ms.append((time.process_time() - cpu) * 1000)
            read = candidate.text if candidate is not None else None
        chars_total += len(expected)
        if read == expected:
            exact += 1
            chars_right += len(expected)
        else:
            if read is not None:
                chars_right += max(0, len(expected) - edit_distance(expected, read))
            if len(failures) < 20:
                failures.append(PlateFailure(file=path.name, expected=expected, read=read))
        if progress is not None:
            progress(done, len(files))
    return PlateEvaluation(
        count=len(files),
        exact_match_rate=round(exact / len(files), 4),
        char_accuracy=round(chars_right / chars_total, 4) if chars_total else 0.0,
        ms_median=round(statistics.median(wall_ms), 2) if wall_ms else 0.0,
        ms_p95=round(percentile(wall_ms, 0.95), 2) if wall_ms else 0.0,
        cpu_ms_median=round(statistics.median(cpu_ms), 2) if cpu_ms else 0.0,
        failures=failures,
    )


class VehicleReader(Protocol):
    def read_vehicle(self, frame: Image, vehicle_box: FloatArray) -> PlateCandidate | None: ...


VEHICLE_CLASSES = frozenset({"car", "truck", "bus", "motorcycle"})


def _label(stem: str) -> str | None:
    return stem if PLATE_RE.match(stem) else None


def labelled_scenes(directory: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """The folder's images named by a plate with their label, and the names of the others."""
    files = labelled_crops(directory)
    labelled = [(path, label) for path in files if (label := _label(path.stem)) is not None]
    unlabelled = [path.name for path in files if _label(path.stem) is None]
    if not labelled:
        raise PlateFolderError(f"no image in {directory} is named by a plate (e.g. 皖A12345.jpg)")
    return labelled, unlabelled


def evaluate_frames(
    directory: Path,
    detector: Detector,
    reader: VehicleReader,
    floor: float,
    progress: Callable[[int, int], None] | None = None,
    observe: Callable[[str, PlateCandidate], None] | None = None,
) -> FrameEvaluation:
    """Detect the vehicles of every labelled scene, read each one's plate, compare with the name.

    Images whose name is no plate (e.g. street.png) are listed as unlabelled, not scored; a file
    that is not an image is a miss, named in ``unreadable``. ``observe`` sees each vehicle's
    reading with the scene's label (calibration).
    """
    labelled, unlabelled = labelled_scenes(directory)
    reads: list[FrameRead] = []
    unreadable: list[str] = []
    wall_ms: list[float] = []
    right_below = wrong_below = 0
    for done, (path, expected) in enumerate(labelled, start=1):
        frame: Image | None = None
        try:
            frame = load_crop(path)
        except PlateFolderError:
            unreadable.append(path.name)
        accepted: list[PlateCandidate] = []
        weak: list[PlateCandidate] = []
        if frame is not None:
            detections = detector.detect(frame)
            for box, cls in zip(detections.xyxy, detections.class_id, strict=True):
                if detections.class_names.get(int(cls)) not in VEHICLE_CLASSES:
                    continue
                started = time.perf_counter()
                candidate = reader.read_vehicle(frame, box)
                wall_ms.append((time.perf_counter() - started) * 1000)
                if candidate is None:
                    continue
                if observe is not None:
                    observe(expected, candidate)
                (accepted if candidate.confidence >= floor else weak).append(candidate)
        for candidate in weak:
            if candidate.text == expected:
                right_below += 1
            else:
                wrong_below += 1
        texts = [c.text for c in accepted]
        wrong = [t for t in texts if t != expected]
        outcome: Literal["exact", "miss", "false_read"] = (
            "false_read" if wrong else "exact" if expected in texts else "miss"
        )
        best = max(accepted or weak, key=lambda c: c.confidence, default=None)
        reads.append(
            FrameRead(
                file=path.name,
                expected=expected,
                outcome=outcome,
                reads=texts,
                below_floor=max(weak, key=lambda c: c.confidence).text if weak else None,
                confidence=round(best.confidence, 4) if best is not None else None,
            )
        )
        if progress is not None:
            progress(done, len(labelled))
    exact = sum(r.outcome == "exact" for r in reads)
    return FrameEvaluation(
        count=len(reads),
        exact=exact,
        misses=sum(r.outcome == "miss" for r in reads),
        false_reads=sum(r.outcome == "false_read" for r in reads),
        exact_rate=round(exact / len(reads), 4),
        floor=floor,
        below_floor_right=right_below,
        below_floor_wrong=wrong_below,
        unlabelled=unlabelled,
        unreadable=unreadable,
        vehicles=len(wall_ms),
        ms_per_vehicle_median=round(statistics.median(wall_ms), 2) if wall_ms else 0.0,
        ms_per_vehicle_p95=round(percentile(wall_ms, 0.95), 2) if wall_ms else 0.0,
        reads=reads,
    )


class PlainPlateReader:
    """The baseline: RapidOCR's recogniser on a 3x upscaled crop, greedy CTC, separators dropped."""

    def __init__(self, threads: int = 1) -> None:
        self._recogniser = rapidocr_recogniser(threads)

    def read_plate(self, crop: Image) -> PlateCandidate | None:
        upscaled = cv2.resize(
            crop, None, fx=_BASELINE_UPSCALE, fy=_BASELINE_UPSCALE, interpolation=cv2.INTER_CUBIC
        )
        results, _ = self._recogniser([upscaled])
        text, score = results[0]
        text = "".join(char for char in str(text) if char not in _SEPARATORS)
        return PlateCandidate(text, float(score)) if text else None


class PlateComparison(BaseModel):
    """Our reader and the plain baseline, on the same folder in the same run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reader: PlateEvaluation
    baseline: PlateEvaluation


def compare_with_baseline(directory: Path, settings: PlateSettings) -> PlateComparison:
    """What `civicwatch eval plates DIR` runs: both readers, a progress bar on a terminal."""
    ours = evaluate_plates(directory, PlateReader(settings), terminal_progress("plates"))
    plain = evaluate_plates(
        directory, PlainPlateReader(settings.threads), terminal_progress("baseline")
    )
    return PlateComparison(reader=ours, baseline=plain)


def terminal_progress(label: str) -> Callable[[int, int], None] | None:
    """A one-line stderr progress bar, or None when stderr is not a terminal."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        filled = 30 * done // total
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


__all__ = [
    "CropReader",
    "FrameEvaluation",
    "FrameRead",
    "PlainPlateReader",
    "PlateComparison",
    "PlateEvaluation",
    "PlateFailure",
    "VehicleReader",
    "compare_with_baseline",
    "edit_distance",
    "evaluate_frames",
    "evaluate_plates",
    "labelled_crops",
    "labelled_scenes",
    "load_crop",
    "terminal_progress",
]
