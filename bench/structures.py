"""Structure comparison: time per comparison and the metrics, over repeats.

Runs the full evaluation (the learned comparison, the gradient-only one before it and the
Lab + Otsu baseline, each on every pair and control) N times and, per repeat, one camera-sized
comparison (a no_build zone on a 768x576 vtest.avi frame, the real workload at the edge).
Reports median and spread (min, max) of the timings; the metrics are deterministic and the same
on every repeat. ``--set dev|test`` scores a built set (edge.structure_dataset) instead of a
folder; score test only once, at the end. ``--set held-out`` scores the held-out photos
(Ultralytics' bus.jpg and zidane.jpg, used by neither set; edge.structure_dataset.build_held_out),
also once, at the end; ``--set fresh`` round 5's fresh look (edge.structure_dataset
.build_fresh_look: the test clips' middle thirds, sheds textured from scikit-learn's china.jpg),
scored once; ``--set round6`` round 6's held-out look (edge.structure_dataset
.build_round6_look: the end of vtest.avi and two scikit-image photos, sheds faced with its brick
wall), scored once, with its object stress; ``--set round7`` round 7's
(edge.structure_dataset.build_round7_look: scikit-image photos no round used, a person with a
shed before them, smooth sheds over grass and gravel, sheds faced with scikit-learn's
flower.jpg, and motorway-cctv.avi's last frames), scored once; ``--set round8`` round 8's
(edge.structure_dataset.build_round8_look: scikit-image and matplotlib photos no round used,
smooth sheds over textured ground and sheds faced with scikit-image's retina.jpg), scored
once. ``--set dev-all`` (round 9 on): dev's 47 pairs, then round 7's, round 8's, (round 11
on) round 10's and (round 12 on) round 11's two looks, seen now and made dev (111 pairs);
its object stress is dev's 12 crops on dev's pairs and the looks' own on theirs.
``--set round10`` round 10's fresh look (edge.structure_dataset.build_round10_look: elevation
data rendered as aerial ground, people and cars in view, sheds faced with matplotlib's
Minduka_Present_Blue_Pack.png), scored once;
``--set round11`` round 11's (edge.structure_dataset.build_round11_look: an MRI slice and
tiled face photos rendered as aerial ground, people and cars in view, sheds faced with
scikit-image's logo.png), scored once; ``--set round11b`` round 11's second look
(edge.structure_dataset.build_round11b_look: tinted chessboard paving, sheds faced with
matplotlib's logo2.png), scored once, at the very end; ``--set round12`` round 12's
(edge.structure_dataset.build_round12_look: scikit-image's binary_blobs and matplotlib's EEG
traces rendered as aerial ground, sheds faced with a networkx drawing test image), scored
once, at the end; ``--set round14`` round 14's (edge.structure_dataset.build_round14_look:
matplotlib's membrane.dat and goog.npz traces crossed as plaids and rendered as aerial ground,
sheds faced with another networkx drawing test image), scored once, at the end; ``--set
round15`` round 15's (edge.structure_dataset.build_round15_look: scikit-learn's handwritten
digits tiled and matplotlib's Stocks.csv prices crossed as a plaid, rendered as aerial ground,
sheds faced with a third networkx drawing test image), scored once, at the end.
``--object-stress``
adds, for the learned comparison, how many of each
pair's before views raise with one of 12 people and cars the detector is only fairly sure of
pasted in (edge.structure_dataset.uncertain_crops; a stress test beside the set's controls,
which paste the most confident ones). When the change net is loaded (edge.structure_net), the
learned comparison is also scored without it in the same run (``without_net`` in the summary).

Timing: ``ms_per_comparison`` is the learned comparison as a camera's watch runs it on a frame
the detector skipped: one detector pass on the current view, the baseline's detections,
structure maps and backbone features found once per baseline (edge.structure_compare
.BaselineMemo; every pair's baseline is compared with its after view and its controls).
``cold_ms_per_comparison`` times each pair's first comparison with nothing kept (two detector
passes, as rounds 1-5 counted). Run from the repository root:

    .venv/bin/python -m bench.structures [--repeats 5]
        [--set dev|dev-all|test|held-out|fresh|round6|round7|round8|round10|round11|round11b
         |round12|round14|round15 | --dir FOLDER]

A folder it cannot read: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edge.config import StructureSettings
from edge.detector import LOCAL_MODEL_HINT
from edge.structure_compare import BaselineMemo, compare_structure
from edge.structure_controls import ObjectCrop, paste_object
from edge.structure_dataset import (
    LabelledPair,
    ObjectFinder,
    build_dev_all,
    build_fresh_look,
    build_held_out,
    build_round6_look,
    build_round7_look,
    build_round8_look,
    build_round10_look,
    build_round11_look,
    build_round11b_look,
    build_round12_look,
    build_round14_look,
    build_round15_look,
    build_set,
    held_out_photos,
    sklearn_china_photo,
    uncertain_crops,
)
from edge.structure_eval import (
    PairFolderError,
    StructureEvaluation,
    TerminalProgress,
    evaluate_labelled,
    evaluate_structures,
    evaluation_lines,
    score_learned,
)
from edge.structure_features import (
    LearnedParts,
    learned_parts,
    learned_structure_change,
    transient_boxes_of,
)

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
LAWN = [[10, 330], [380, 380], [420, 570], [10, 570]]  # a no_build zone on vtest.avi's lawn


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def _camera_frames(clip: Path) -> tuple[np.ndarray, np.ndarray]:
    capture = cv2.VideoCapture(str(clip))
    ok, first = capture.read()
    capture.set(cv2.CAP_PROP_POS_FRAMES, 300)
    ok_later, later = capture.read()
    capture.release()
    if not (ok and ok_later):
        raise SystemExit(f"{clip}: could not read two frames / {clip}：无法读取两帧")
    return np.asarray(first, dtype=np.uint8), np.asarray(later, dtype=np.uint8)


def _object_stress(
    crops: list[ObjectCrop],
    built: list[LabelledPair],
    learned: LearnedParts,
    settings: StructureSettings,
) -> str:
    """Alarms of the learned comparison with uncertain people and cars pasted in, over all."""
    compare = learned.comparison()
    alarms = total = 0
    for index, pair in enumerate(built):
        rng = np.random.default_rng(100 + index)
        height, width = pair.before.shape[:2]
        zone = [[0, 0], [width, 0], [width, height], [0, height]]
        for crop in crops:
            alarms += compare(
                pair.before, paste_object(pair.before, crop, rng), zone, settings
            ).changed
            total += 1
    return f"{alarms}/{total}"


def _stress_over(
    parts: list[tuple[list[LabelledPair], list[ObjectCrop]]],
    learned: LearnedParts,
    settings: StructureSettings,
) -> str:
    """`_object_stress` over each part (pairs with their own crops), summed."""
    alarms = total = 0
    for pairs, crops in parts:
        if crops:
            found, count = _object_stress(crops, pairs, learned, settings).split("/")
            alarms, total = alarms + int(found), total + int(count)
    return f"{alarms}/{total}"


def _cold_ms(
    built: list[LabelledPair], learned: LearnedParts, settings: StructureSettings
) -> list[float]:
    """Per pair, its comparison with nothing kept from its baseline: two detector passes."""
    cold = LearnedParts(learned.features, learned.finder, learned.net, BaselineMemo(size=0))
    compare = cold.comparison()
    timings = []
    for pair in built:
        height, width = pair.before.shape[:2]
        zone = [[0, 0], [width, 0], [width, height], [0, height]]
        started = time.perf_counter()
        compare(pair.before, pair.after, zone, settings)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


Look = tuple[list[LabelledPair], list[ObjectCrop]]
_LOOKS: dict[str, tuple[str, Callable[[ObjectFinder], Look]]] = {
    "fresh": (
        "fresh look (round 5)",
        lambda finder: build_fresh_look(SHARED_DATA, sklearn_china_photo(), finder),
    ),
    "round6": ("held-out look (round 6)", lambda finder: build_round6_look(SHARED_DATA, finder)),
    "round7": ("held-out look (round 7)", lambda finder: build_round7_look(SHARED_DATA, finder)),
    "round8": ("held-out look (round 8)", build_round8_look),
    "round10": ("fresh look (round 10)", lambda finder: build_round10_look(SHARED_DATA, finder)),
    "round11": ("fresh look (round 11)", lambda finder: build_round11_look(SHARED_DATA, finder)),
    "round11b": (
        "second fresh look (round 11)",
        lambda finder: build_round11b_look(SHARED_DATA, finder),
    ),
    "round12": ("fresh look (round 12)", lambda finder: build_round12_look(SHARED_DATA, finder)),
    "round14": ("fresh look (round 14)", lambda finder: build_round14_look(SHARED_DATA, finder)),
    "round15": ("fresh look (round 15)", lambda finder: build_round15_look(SHARED_DATA, finder)),
}
"""The looks ``--set`` builds by name: each one's label in the summary and its builder."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=SHARED_DATA / "structures" / "dsifn")
    parser.add_argument(
        "--set",
        choices=("dev", "dev-all", "test", "held-out", *_LOOKS),
        dest="built_set",
    )
    parser.add_argument("--object-stress", action="store_true")
    parser.add_argument("--clip", type=Path, default=SHARED_DATA / "clips" / "vtest.avi")
    parser.add_argument("--model", type=Path, default=ROOT / LOCAL_MODEL_HINT)
    args = parser.parse_args()

    settings = StructureSettings()
    learned = learned_parts(args.model)
    baseline, current = _camera_frames(args.clip)
    boxes = transient_boxes_of(learned.finder.detect(current))
    progress = TerminalProgress("structures bench")
    evaluations: list[StructureEvaluation] = []
    camera_ms: list[float] = []
    gradient_camera_ms: list[float] = []
    built: list[LabelledPair] = []
    stress_crops: list[ObjectCrop] = []
    stress_parts: list[tuple[list[LabelledPair], list[ObjectCrop]]] = []
    if args.built_set == "held-out":
        built = build_held_out(held_out_photos(), learned.finder)
    elif args.built_set in _LOOKS:
        built, stress_crops = _LOOKS[args.built_set][1](learned.finder)
    elif args.built_set == "dev-all":
        parts = build_dev_all(SHARED_DATA, learned.finder)
        built = [pair for pairs, _ in parts for pair in pairs]
        if args.object_stress:
            stress_crops = parts[0][1]
            stress_parts = parts
    elif args.built_set in ("dev", "test"):
        built = build_set(args.built_set, SHARED_DATA, learned.finder)
        if args.object_stress:
            stress_crops = uncertain_crops(args.built_set, SHARED_DATA, learned.finder)
    without = LearnedParts(learned.features, learned.finder) if learned.net else None
    without_ms: list[float] = []
    cold_ms: list[float] = []
    without_score = None
    for repeat in range(args.repeats):
        if built:
            label = {
                **{name: look_label for name, (look_label, _) in _LOOKS.items()},
                "held-out": "held-out photos",
                "dev-all": "set dev + the round 7, 8, 10, 11 and 11b looks",
            }.get(args.built_set, f"set {args.built_set}")
            evaluations.append(evaluate_labelled(label, built, learned, settings))
            cold_ms += _cold_ms(built, learned, settings)
            if without is not None:
                without_score = score_learned(built, without, settings)
                without_ms.append(without_score.ms_per_comparison)
        else:
            evaluations.append(evaluate_structures(args.dir, settings, learned=learned))
        started = time.perf_counter()
        learned_structure_change(
            baseline, current, LAWN, settings, learned.features, boxes, learned.net
        )
        camera_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        compare_structure(baseline, current, LAWN, settings)
        gradient_camera_ms.append((time.perf_counter() - started) * 1000)
        progress(repeat + 1, args.repeats)

    first = evaluations[0]
    for line in evaluation_lines(first):
        print(line)
    ours = [e.structure.ms_per_comparison for e in evaluations]
    previous = [e.previous.ms_per_comparison for e in evaluations if e.previous]
    classical = [e.lab_otsu.ms_per_comparison for e in evaluations]
    print(
        f"pairs {first.structure.pairs}, controls {first.structure.controls}, {args.repeats} runs"
    )
    print(f"learned ms/comparison (256x256, 1 detector pass, baseline kept): {_spread(ours)}")
    if cold_ms:
        print(
            f"learned ms/comparison (256x256, 2 detector passes, nothing kept): {_spread(cold_ms)}"
        )
    print(f"gradient ms/comparison (256x256): {_spread(previous)}")
    print(f"lab+otsu ms/comparison (256x256): {_spread(classical)}")
    print(f"learned ms/comparison (768x576 frame, lawn zone, boxes given): {_spread(camera_ms)}")
    print(f"gradient ms/comparison (768x576 frame, lawn zone): {_spread(gradient_camera_ms)}")
    summary = {
        **first.summary(),
        "repeats": args.repeats,
        "ms_per_comparison": _spread(ours),
        "cold_ms_per_comparison": _spread(cold_ms) if cold_ms else None,
        "previous_ms_per_comparison": _spread(previous),
        "baseline_ms_per_comparison": _spread(classical),
        "camera_zone_ms": _spread(camera_ms),
        "previous_camera_zone_ms": _spread(gradient_camera_ms),
        "metrics_identical_across_repeats": all(
            e.summary()["mean_f1"] == first.summary()["mean_f1"] for e in evaluations
        ),
    }
    stress = args.object_stress and bool(stress_crops)
    if not stress_parts:
        stress_parts = [(built, stress_crops)]
    if stress:
        summary["object_stress_alarms"] = _stress_over(stress_parts, learned, settings)
    if without is not None and without_score is not None:
        changed = [r.f1 for r in without_score.pair_results if r.truth_changed]
        summary["without_net"] = {
            "pairs_right": without_score.pairs_right,
            "mean_f1": round(without_score.mean_f1, 4),
            "mean_f1_changed_pairs": round(statistics.fmean(changed), 4) if changed else None,
            "control_alarms": without_score.control_alarms,
            "wrong_pairs": [r.name for r in without_score.pair_results if not r.decided_right],
            "control_alarm_names": [
                f"{c.name}: {c.alteration}" for c in without_score.control_results if c.alarm
            ],
            "ms_per_comparison": _spread(without_ms),
            "object_stress_alarms": _stress_over(stress_parts, without, settings)
            if stress
            else None,
        }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except PairFolderError as exc:
        print(f"bench.structures: {exc}", file=sys.stderr)
        sys.exit(2)
