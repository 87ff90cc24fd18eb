"""Score a plate reader on a folder of crops named by their plate (皖A12345.jpg reads 皖A12345)."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from contracts.stats import percentile
from edge.config import PlateSettings
from edge.detections import Image
from edge.plate_decoding import PlateCandidate
from edge.plate_recognisers import rapidocr_recogniser
from edge.plates import PlateReader

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
    "PlainPlateReader",
    "PlateComparison",
    "PlateEvaluation",
    "PlateFailure",
    "compare_with_baseline",
    "edit_distance",
    "evaluate_plates",
    "labelled_crops",
    "load_crop",
    "terminal_progress",
]
