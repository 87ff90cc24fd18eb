"""Detections (inferences) per second of the shared YOLO11n INT8 model on real frames.

For each clip (motorway-traffic.mp4 960x540, vtest.avi 768x576) and imgsz (640, 416, 320):
the native OpenVINODetector one frame per call ("single") and in batches ("batch"), plus the
Ultralytics baseline (the only way the model ran before: 640, one frame per call). Frames are
decoded before timing; each repeat times every frame once. Reports median and spread (min,
max) of frames per second over the repeats; target >= 100/s. Run from the repository root:

    .venv/bin/python -m bench.detect_rate [--frames 48] [--repeats 5] [--batch 4]

Progress on stderr (terminal only); a JSON summary is the last stdout line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.detections import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
MODEL = SHARED / "models" / "yolo11n_int8_openvino_model"
CLIPS = SHARED / "data" / "clips"
TARGET_PER_SECOND = 100.0


def progress(done: int, total: int, label: str) -> None:
    """One self-rewriting bar on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        return
    filled = int(30 * done / max(total, 1))
    sys.stderr.write(f"\r{label:<40} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def read_frames(clip: Path, count: int, step: int = 1, start: int = 0) -> list[Image]:
    """count frames of clip, every step-th from start, looping the clip when it is short."""
    capture = cv2.VideoCapture(str(clip))
    if not capture.isOpened():
        raise SystemExit(f"cannot open {clip}")
    frames: list[Image] = []
    index = 0
    while len(frames) < count:
        ok, image = capture.read()
        if not ok:
            if index == 0:
                raise SystemExit(f"cannot decode {clip}")
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        if index >= start and (index - start) % step == 0:
            frames.append(np.asarray(image, dtype=np.uint8))
        index += 1
    capture.release()
    return frames


def spread(values: Sequence[float], digits: int = 1) -> dict[str, float]:
    """Median and range of repeated measurements."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


@dataclass
class Row:
    clip: str
    imgsz: int
    mode: str
    batch: int
    per_second: dict[str, float]  # frames per wall second
    cpu_ms_per_frame: dict[str, float]  # process CPU time per frame: less disturbed by others

    @property
    def setting(self) -> str:
        return f"{self.imgsz}/{self.mode}"


def _measure(
    run: Callable[[Sequence[Image]], object], frames: list[Image], batch: int
) -> tuple[float, float]:
    """(frames per wall second, CPU ms per frame) of one pass over frames."""
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(frames), batch):
        run(frames[start : start + batch])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return len(frames) / wall, 1000 * cpu / len(frames)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=48, help="frames per clip")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4, help="frames per detect_batch call")
    parser.add_argument("--imgsz", type=int, nargs="+", default=[640, 416, 320])
    parser.add_argument(
        "--clips", nargs="+", default=["motorway-traffic.mp4", "vtest.avi"], help="in clips/"
    )
    args = parser.parse_args(argv)

    from edge.config import DetectorSettings
    from edge.detector import OpenVINODetector, UltralyticsDetector, prepare_ultralytics_environment

    prepare_ultralytics_environment(Path(tempfile.mkdtemp(prefix="civicwatch-bench-")))
    clips = {name: read_frames(CLIPS / name, args.frames, step=3) for name in args.clips}
    plans: list[tuple[str, int, str, int]] = [(clip, 640, "ultralytics", 1) for clip in clips] + [
        (clip, imgsz, mode, 1 if mode == "single" else args.batch)
        for clip, imgsz, mode in itertools.product(clips, args.imgsz, ("single", "batch"))
    ]
    detectors: dict[tuple[str, int], Callable[[Sequence[Image]], object]] = {}
    results: list[Row] = []
    for done, (clip, imgsz, mode, batch) in enumerate(plans, start=1):
        backend = "ultralytics" if mode == "ultralytics" else "openvino"
        if (backend, imgsz) not in detectors:
            settings = DetectorSettings(model=str(MODEL), imgsz=imgsz)
            detector = (
                UltralyticsDetector(settings)
                if backend == "ultralytics"
                else OpenVINODetector(settings, max_batch=args.batch)
            )
            detectors[(backend, imgsz)] = detector.detect_batch
        run = detectors[(backend, imgsz)]
        frames = clips[clip]
        _measure(run, frames[: 2 * batch], batch)  # warm-up: compiles this shape
        measured = [_measure(run, frames, batch) for _ in range(args.repeats)]
        row = Row(
            clip,
            imgsz,
            mode,
            batch,
            per_second=spread([rate for rate, _ in measured]),
            cpu_ms_per_frame=spread([cpu for _, cpu in measured], 2),
        )
        results.append(row)
        progress(done, len(plans), f"{clip} {imgsz} {mode}")
        rate = row.per_second
        print(
            f"{clip:<22} imgsz {imgsz:>3} {mode:<11} batch {batch}: median {rate['median']:6.1f}"
            f"/s (min {rate['min']:.1f}, max {rate['max']:.1f}); "
            f"CPU {row.cpu_ms_per_frame['median']:.1f} ms/frame"
        )
    best = max(results, key=lambda r: r.per_second["median"])
    missed = {r.setting for r in results if r.per_second["median"] < TARGET_PER_SECOND}
    summary = {
        "bench": "detect_rate",
        "model": MODEL.name,
        "cpus": os.cpu_count(),
        "frames_per_clip": args.frames,
        "repeats": args.repeats,
        "target_per_second": TARGET_PER_SECOND,
        "best": asdict(best),
        # imgsz/mode settings at which every clip reaches the target
        "target_met_at": sorted({r.setting for r in results} - missed),
        "results": [asdict(r) for r in results],
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
