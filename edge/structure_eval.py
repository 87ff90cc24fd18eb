"""Scores the structure comparison on before/after pairs with truth masks, plus no-change controls.

The folder is laid out like DSIFN: ``A/`` the before images, ``B/`` the after images,
``label/`` the truth masks (non-zero = changed), matched by file name. A pair counts as changed
when its truth mask has changed pixels.

Controls (edge.structure_controls): every before image against itself with only the light,
gamma, focus, sensor noise, the camera's aim (3 px, 1-2 %), a moved shadow, rain or the night IR
picture altered. None of them may raise a change. The built sets (`evaluate_set`, run by
``python -m bench.structures --set dev|test``) add a real parked car and person in view.

The classical Lab-distance + Otsu baseline is scored beside the method on the same inputs, so
the gain is visible. Seeds are fixed: two runs give the same figures (timings aside).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np
from pydantic import BaseModel, Field

from edge.config import StructureSettings
from edge.detections import BoolArray, Image
from edge.structure_compare import (
    StructureChange,
    compare_structure,
    lab_otsu_change,
)
from edge.structure_controls import Control, every_control, no_change_controls
from edge.structure_dataset import LabelledPair, SetName, build_set
from edge.structure_features import LearnedParts, local_learned_parts

__all__ = ["no_change_controls"]  # moved to edge.structure_controls; tests import it from here

TARGET_MEAN_F1 = 0.6
CONTROL_SEED = 20240501
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

Comparison = Callable[[Image, Image, np.ndarray, StructureSettings], StructureChange]
Progress = Callable[[int, int], None]


class PairResult(BaseModel):
    name: str
    truth_changed: bool
    decided_changed: bool
    precision: float = Field(ge=0, le=1)
    recall: float = Field(ge=0, le=1)
    f1: float = Field(ge=0, le=1)
    changed_share: float = Field(ge=0, le=1, description="of the zone (here: the whole image)")

    @property
    def decided_right(self) -> bool:
        return self.truth_changed == self.decided_changed


class ControlResult(BaseModel):
    name: str
    alteration: str
    alarm: bool
    changed_share: float = Field(ge=0, le=1)
    inconclusive: bool = Field(
        default=False, description="the method declined to judge the view (blur, noise, moved)"
    )


class MethodScore(BaseModel):
    method: str
    mean_f1: float
    pairs_right: int
    pairs: int
    control_alarms: int
    controls: int
    controls_inconclusive: int = Field(description="controls raising nothing by declining")
    ms_per_comparison: float = Field(description="median wall time of one comparison")
    pair_results: list[PairResult]
    control_results: list[ControlResult]


class StructureEvaluation(BaseModel):
    directory: str
    structure: MethodScore = Field(description="the method: learned when a model was at hand")
    previous: MethodScore | None = Field(
        default=None, description="the gradient-only comparison (edge.structures) beside it"
    )
    lab_otsu: MethodScore = Field(description="the classical Lab distance + Otsu baseline")
    change_net: bool = Field(
        default=False, description="the learned comparison ran with the change net"
    )

    @property
    def targets_met(self) -> bool:
        score = self.structure
        return (
            score.mean_f1 >= TARGET_MEAN_F1
            and score.pairs_right == score.pairs
            and score.control_alarms == 0
        )

    def summary(self) -> dict[str, object]:
        """The one-line figures: the method, the baseline beside it, and whether targets hold."""
        ours, classical, previous = self.structure, self.lab_otsu, self.previous
        changed = [r.f1 for r in ours.pair_results if r.truth_changed]
        return {
            "method": ours.method,
            "change_net": self.change_net,
            "pairs": ours.pairs,
            "mean_f1": round(ours.mean_f1, 4),
            "mean_f1_changed_pairs": round(statistics.fmean(changed), 4) if changed else None,
            "pairs_right": ours.pairs_right,
            "control_alarms": ours.control_alarms,
            "controls": ours.controls,
            "controls_inconclusive": ours.controls_inconclusive,
            "ms_per_comparison": round(ours.ms_per_comparison, 2),
            "previous_mean_f1": round(previous.mean_f1, 4) if previous else None,
            "previous_pairs_right": previous.pairs_right if previous else None,
            "previous_control_alarms": previous.control_alarms if previous else None,
            "baseline_mean_f1": round(classical.mean_f1, 4),
            "baseline_pairs_right": classical.pairs_right,
            "baseline_control_alarms": classical.control_alarms,
            "f1_vs_baseline": round(ours.mean_f1 / classical.mean_f1, 3)
            if classical.mean_f1
            else None,
            "targets_met": self.targets_met,
        }


@dataclass(frozen=True, slots=True)
class ChangePair:
    name: str
    before: Image
    after: Image
    truth: BoolArray


class PairFolderError(ValueError):
    """The folder cannot be scored: A/, B/ or label/ missing or unmatched, unreadable images."""


def load_pairs(directory: Path) -> list[ChangePair]:
    """The A/B/label triples of `directory`, matched by file name, checked for size."""
    folders = {part: directory / part for part in ("A", "B", "label")}
    for part, folder in folders.items():
        if not folder.is_dir():
            raise PairFolderError(
                f"{directory}: missing the {part}/ folder (A/, B/, label/ expected)"
            )
    names = {
        part: {p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
        for part, folder in folders.items()
    }
    unmatched = sorted(
        (names["A"] | names["B"] | names["label"]) - (names["A"] & names["B"] & names["label"])
    )
    if unmatched:
        raise PairFolderError(
            f"{directory}: not in all of A/, B/ and label/: {', '.join(unmatched)}"
        )
    if not names["A"]:
        raise PairFolderError(f"{directory}: no images in A/")
    pairs = []
    for name in sorted(names["A"]):
        before = _read(folders["A"] / name, cv2.IMREAD_COLOR)
        after = _read(folders["B"] / name, cv2.IMREAD_COLOR)
        label = _read(folders["label"] / name, cv2.IMREAD_GRAYSCALE)
        if before.shape != after.shape or label.shape != before.shape[:2]:
            raise PairFolderError(
                f"{directory}: {name} sizes differ: A {before.shape[1]}x{before.shape[0]}, "
                f"B {after.shape[1]}x{after.shape[0]}, label {label.shape[1]}x{label.shape[0]}"
            )
        pairs.append(ChangePair(name, before, after, label > 0))
    return pairs


def _read(path: Path, flags: int) -> Image:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise PairFolderError(f"{path}: not a readable image")
    return np.asarray(image, dtype=np.uint8)


def pixel_scores(predicted: BoolArray, truth: BoolArray) -> tuple[float, float, float]:
    """Precision, recall, F1. Nothing predicted and nothing true scores 1 on all three."""
    true_positive = int((predicted & truth).sum())
    predicted_count, truth_count = int(predicted.sum()), int(truth.sum())
    if predicted_count == 0 and truth_count == 0:
        return 1.0, 1.0, 1.0
    precision = true_positive / predicted_count if predicted_count else 0.0
    recall = true_positive / truth_count if truth_count else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _score_method(
    method: str,
    compare: Comparison,
    pairs: list[ChangePair],
    controls: list[list[Control]],
    settings: StructureSettings,
    progress: Callable[[], None],
) -> MethodScore:
    timings: list[float] = []

    def timed(before: Image, after: Image) -> StructureChange:
        height, width = before.shape[:2]
        whole = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
        started = time.perf_counter()
        change = compare(before, after, whole, settings)
        timings.append((time.perf_counter() - started) * 1000)
        return change

    pair_results, control_results = [], []
    for pair, altered in zip(pairs, controls, strict=True):
        change = timed(pair.before, pair.after)
        precision, recall, f1 = pixel_scores(change.mask, pair.truth)
        pair_results.append(
            PairResult(
                name=pair.name,
                truth_changed=bool(pair.truth.any()),
                decided_changed=change.changed,
                precision=precision,
                recall=recall,
                f1=f1,
                changed_share=min(1.0, change.changed_share),
            )
        )
        for alteration, image in altered:
            control = timed(pair.before, image)
            control_results.append(
                ControlResult(
                    name=pair.name,
                    alteration=alteration,
                    alarm=control.changed,
                    changed_share=min(1.0, control.changed_share),
                    inconclusive=not control.conclusive,
                )
            )
        progress()
    return MethodScore(
        method=method,
        mean_f1=statistics.fmean(r.f1 for r in pair_results),
        pairs_right=sum(r.decided_right for r in pair_results),
        pairs=len(pair_results),
        control_alarms=sum(r.alarm for r in control_results),
        controls=len(control_results),
        controls_inconclusive=sum(r.inconclusive for r in control_results),
        ms_per_comparison=statistics.median(timings),
        pair_results=pair_results,
        control_results=control_results,
    )


def evaluate_structures(
    directory: Path,
    settings: StructureSettings | None = None,
    progress: Progress | None = None,
    learned: LearnedParts | None = None,
) -> StructureEvaluation:
    """Score the structure comparison and the Lab + Otsu baseline on `directory`'s pairs."""
    settings = settings or StructureSettings()
    pairs = load_pairs(directory)
    controls = [every_control(p.before, CONTROL_SEED + i) for i, p in enumerate(pairs)]
    return _evaluate(str(directory), pairs, controls, settings, progress, learned)


def evaluate_set(
    name: SetName,
    shared_data: Path,
    learned: LearnedParts,
    settings: StructureSettings | None = None,
    progress: Progress | None = None,
) -> StructureEvaluation:
    """Score the built dev or test set (edge.structure_dataset); test only once, at the end."""
    built = build_set(name, shared_data, learned.finder)
    return evaluate_labelled(f"set {name}", built, learned, settings, progress)


def evaluate_labelled(
    label: str,
    built: list[LabelledPair],
    learned: LearnedParts,
    settings: StructureSettings | None = None,
    progress: Progress | None = None,
) -> StructureEvaluation:
    """Score pairs that carry their own controls (a built set, the held-out photos)."""
    pairs = [ChangePair(p.name, p.before, p.after, p.truth) for p in built]
    controls = [p.controls for p in built]
    return _evaluate(label, pairs, controls, settings, progress, learned)


def score_learned(
    built: list[LabelledPair], learned: LearnedParts, settings: StructureSettings | None = None
) -> MethodScore:
    """The learned comparison alone on pairs that carry their controls (bench: with and without
    the change net in the same run)."""
    pairs = [ChangePair(p.name, p.before, p.after, p.truth) for p in built]
    controls = [p.controls for p in built]
    return _score_method(
        "learned",
        learned.comparison(),
        pairs,
        controls,
        settings or StructureSettings(),
        lambda: None,
    )


def _evaluate(
    label: str,
    pairs: list[ChangePair],
    controls: list[list[Control]],
    settings: StructureSettings | None,
    progress: Progress | None,
    learned: LearnedParts | None = None,
) -> StructureEvaluation:
    settings = settings or StructureSettings()
    total, done = (2 if learned is None else 3) * len(pairs), 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    gradient = _score_method("structure", compare_structure, pairs, controls, settings, step)
    classical = _score_method("lab_otsu", lab_otsu_change, pairs, controls, settings, step)
    if learned is None:
        return StructureEvaluation(directory=label, structure=gradient, lab_otsu=classical)
    ours = _score_method("learned", learned.comparison(), pairs, controls, settings, step)
    return StructureEvaluation(
        directory=label,
        structure=ours,
        previous=gradient,
        lab_otsu=classical,
        change_net=learned.net is not None,
    )


class TerminalProgress:
    """A self-rewriting progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        filled = int(30 * done / total)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def evaluation_lines(evaluation: StructureEvaluation) -> list[str]:
    """Per pair, the method beside the older ones; then every control that alarmed or declined."""
    previous = evaluation.previous.pair_results if evaluation.previous else None
    lines = []
    for index, (ours, classical) in enumerate(
        zip(evaluation.structure.pair_results, evaluation.lab_otsu.pair_results, strict=True)
    ):
        before = "" if previous is None else f"; gradient-only F1 {previous[index].f1:.3f}"
        lines.append(
            f"{ours.name}: structure F1 {ours.f1:.3f} (P {ours.precision:.3f} "
            f"R {ours.recall:.3f}) decided {'changed' if ours.decided_changed else 'unchanged'}"
            f"{'' if ours.decided_right else ' WRONG'}{before}; lab+otsu F1 {classical.f1:.3f}"
        )
    for control in evaluation.structure.control_results:
        if control.alarm or control.inconclusive:
            verdict = "ALARM" if control.alarm else "inconclusive (raises nothing)"
            lines.append(f"control {control.name} {control.alteration}: {verdict}")
    return lines


def print_evaluation(evaluation: StructureEvaluation, out: TextIO | None = None) -> None:
    """Per-pair lines for people, then the JSON summary as the last line."""
    out = out or sys.stdout
    for line in evaluation_lines(evaluation):
        print(line, file=out)
    print(json.dumps(evaluation.summary()), file=out)


def run_structure_evaluation(
    directory: Path, settings: StructureSettings | None = None, out: TextIO | None = None
) -> StructureEvaluation:
    """What `civicwatch eval structures DIR` runs: progress on a terminal, summary JSON last.

    The learned comparison runs when the detector model is at hand (${MODEL_ENV_VAR}, else the
    shared YOLO11n export); without one, the gradient comparison alone.
    """
    evaluation = evaluate_structures(
        directory, settings, TerminalProgress("structures"), local_learned_parts()
    )
    print_evaluation(evaluation, out)
    return evaluation
