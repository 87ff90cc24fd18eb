"""Structure comparison: time per comparison and the DSIFN metrics, over repeats.

Runs the full evaluation (6 pairs + 48 no-change controls, and the Lab + Otsu baseline) N times
and, per repeat, one camera-sized comparison (a no_build zone on a 768x576 vtest.avi frame, the
real workload at the edge). Reports median and spread (min, max) of the timings; the metrics are
deterministic and the same on every repeat. Run from the repository root:

    .venv/bin/python -m bench.structures [--repeats 5] [--dir ../shared/data/structures/dsifn]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from edge.config import StructureSettings
from edge.structure_eval import TerminalProgress, evaluate_structures
from edge.structures import compare_structure

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
        raise SystemExit(f"{clip}: could not read two frames")
    return np.asarray(first, dtype=np.uint8), np.asarray(later, dtype=np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=SHARED_DATA / "structures" / "dsifn")
    parser.add_argument("--clip", type=Path, default=SHARED_DATA / "clips" / "vtest.avi")
    args = parser.parse_args()

    settings = StructureSettings()
    baseline, current = _camera_frames(args.clip)
    progress = TerminalProgress("structures bench")
    evaluations, camera_ms = [], []
    for repeat in range(args.repeats):
        evaluations.append(evaluate_structures(args.dir, settings))
        started = time.perf_counter()
        compare_structure(baseline, current, LAWN, settings)
        camera_ms.append((time.perf_counter() - started) * 1000)
        progress(repeat + 1, args.repeats)

    first = evaluations[0]
    ours = [e.structure.ms_per_comparison for e in evaluations]
    classical = [e.lab_otsu.ms_per_comparison for e in evaluations]
    print(
        f"pairs {first.structure.pairs}, controls {first.structure.controls}, {args.repeats} runs"
    )
    print(f"structure ms/comparison (256x256): {_spread(ours)}")
    print(f"lab+otsu  ms/comparison (256x256): {_spread(classical)}")
    print(f"structure ms/comparison (768x576 frame, lawn zone): {_spread(camera_ms)}")
    summary = {
        **first.summary(),
        "repeats": args.repeats,
        "ms_per_comparison": _spread(ours),
        "baseline_ms_per_comparison": _spread(classical),
        "camera_zone_ms": _spread(camera_ms),
        "metrics_identical_across_repeats": all(
            e.summary()["mean_f1"] == first.summary()["mean_f1"] for e in evaluations
        ),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
