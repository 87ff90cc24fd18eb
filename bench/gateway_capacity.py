"""How many cameras one gateway sustains at 5 detect-fps with motion gating.

Measurement. N cameras, each a real clip from ../shared/data/clips (camera i plays clip
i mod 7, started i // 7 seconds later), each delivering 5 frames per second of camera time
(the clip sampled at 5 fps, as a camera's 5-fps sub-stream would deliver). Every frame goes
through the camera's real MotionGate (zones below); frames the gate passes go, per tick, as
one detect_batch to one shared real OpenVINODetector (yolo11n INT8). For `--seconds` of
camera time the bench measures the processing time (gate + detector; frames are decoded
beforehand) and reports

    load = processing wall seconds / camera seconds

A gateway sustains N cameras when load <= 1 (it keeps up in real time). Because this machine
is shared, it also reports cpu_load = process CPU seconds / (camera seconds * cores), the
same figure from CPU time, which other processes disturb much less, and the decode load a
5-fps stream of each clip adds (decode_ms per frame, measured while loading). Median and
spread (min, max) over repeats; the sweep stops at the first N whose median load exceeds 1.
Target: >= 24 cameras on 2 cores. Run from the repository root:

    .venv/bin/python -m bench.gateway_capacity [--cameras 8 16 24 32 48] [--repeats 3]

Progress on stderr (terminal only); a JSON summary is the last stdout line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from bench.detect_rate import CLIPS, MODEL, progress, spread
from edge.config import MotionSettings
from edge.detections import Frame, Image
from edge.detector import Detector
from edge.motion import MotionGate

DETECT_FPS = 5.0
TARGET_CAMERAS = 24
T0 = datetime(2026, 1, 1, tzinfo=UTC)
# A no-parking or fire-lane zone per clip: the e2e configs' zones for vtest and the
# intersections; kerbs, a hard shoulder and an aisle picked on each clip's first frame.
ZONES: dict[str, list[list[list[float]]]] = {
    "vtest.avi": [[[600, 30], [768, 30], [768, 118], [600, 118]]],
    "intersection-demo1.mp4": [[[70, 125], [500, 160], [470, 352], [120, 352], [70, 260]]],
    "intersection-demo2.mp4": [[[70, 125], [500, 160], [470, 352], [120, 352], [70, 260]]],
    "traffic_sequence.mp4": [[[480, 320], [640, 320], [640, 420], [480, 420]]],
    "motorway-traffic.mp4": [[[20, 430], [290, 150], [330, 150], [120, 540], [40, 540]]],
    "motorway-cctv.avi": [[[220, 120], [320, 120], [320, 240], [240, 240]]],
    "car-detection.mp4": [[[0, 150], [768, 150], [768, 300], [0, 300]]],
}


@dataclass
class Clip:
    name: str
    frames: list[Image]  # sampled at DETECT_FPS
    decode_ms: float  # CPU time to decode one frame of this clip

    @property
    def size(self) -> tuple[int, int]:
        height, width = self.frames[0].shape[:2]
        return width, height


def load_clip(name: str, seconds: float) -> Clip:
    """The clip sampled at DETECT_FPS for `seconds` (looped if shorter), and its decode cost."""
    capture = cv2.VideoCapture(str(CLIPS / name))
    native = float(capture.get(cv2.CAP_PROP_FPS) or 0) or 25.0
    step = max(1, round(native / DETECT_FPS))
    wanted = round(seconds * DETECT_FPS)
    frames: list[Image] = []
    decoded, cpu = 0, 0.0
    index = 0
    while len(frames) < wanted:
        began = time.process_time()
        ok, image = capture.read()
        cpu += time.process_time() - began
        if not ok:
            if index == 0:
                raise SystemExit(f"cannot decode {name}")
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            index = 0
            continue
        decoded += 1
        if index % step == 0:
            frames.append(np.asarray(image, dtype=np.uint8))
        index += 1
    capture.release()
    return Clip(name, frames, decode_ms=1000 * cpu / decoded)


@dataclass
class RunResult:
    load: float
    cpu_load: float
    detected_share: float


def run_gateway(
    clips: Sequence[Clip],
    cameras: int,
    detector: Detector,
    ticks: int,
    motion: MotionSettings,
) -> RunResult:
    """Feed `cameras` gated cameras for `ticks` ticks of 1/DETECT_FPS s; time the processing."""
    feeds = [(clips[i % len(clips)], (i // len(clips)) * round(DETECT_FPS)) for i in range(cameras)]
    gates = [MotionGate(ZONES[clip.name], clip.size, motion) for clip, _ in feeds]
    detected = 0
    wall_began, cpu_began = time.perf_counter(), time.process_time()
    for tick in range(ticks):
        at = T0 + timedelta(seconds=tick / DETECT_FPS)
        wanted: list[Image] = []
        for (clip, offset), gate in zip(feeds, gates, strict=True):
            image = clip.frames[(tick + offset) % len(clip.frames)]
            if gate.should_detect(Frame(image=image, index=tick, timestamp=at)):
                wanted.append(image)
        detector.detect_batch(wanted)
        detected += len(wanted)
    wall = time.perf_counter() - wall_began
    cpu = time.process_time() - cpu_began
    camera_seconds = ticks / DETECT_FPS
    return RunResult(
        load=wall / camera_seconds,
        cpu_load=cpu / (camera_seconds * (os.cpu_count() or 1)),
        detected_share=detected / (ticks * cameras),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cameras", type=int, nargs="+", default=[8, 16, 24, 32, 48])
    parser.add_argument("--seconds", type=float, default=12.0, help="camera time per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=8, help="detector max_batch")
    parser.add_argument(
        "--no-gate-cameras", type=int, default=8, help="also run this many ungated (0: skip)"
    )
    args = parser.parse_args(argv)

    from edge.config import DetectorSettings
    from edge.detector import OpenVINODetector, prepare_ultralytics_environment

    prepare_ultralytics_environment(Path(tempfile.mkdtemp(prefix="civicwatch-bench-")))
    clips = [load_clip(name, args.seconds) for name in ZONES]
    detector = OpenVINODetector(
        DetectorSettings(model=str(MODEL), imgsz=args.imgsz), max_batch=args.batch
    )
    ticks = round(args.seconds * DETECT_FPS)
    detector.prepare(clip.size for clip in clips)
    plans = [(n, True) for n in sorted(args.cameras)]
    if args.no_gate_cameras:
        plans.insert(0, (args.no_gate_cameras, False))
    total = len(plans) * args.repeats
    rows = []
    done = 0
    for cameras, gated in plans:
        motion = MotionSettings(enabled=gated)
        runs = []
        for _ in range(args.repeats):
            runs.append(run_gateway(clips, cameras, detector, ticks, motion))
            done += 1
            progress(done, total, f"{cameras} cameras{'' if gated else ' ungated'}")
        decode_load = sum(
            clips[i % len(clips)].decode_ms / 1000 * DETECT_FPS for i in range(cameras)
        ) / (os.cpu_count() or 1)
        row = {
            "cameras": cameras,
            "gated": gated,
            "load": spread([r.load for r in runs], 3),
            "cpu_load": spread([r.cpu_load for r in runs], 3),
            "detected_share": round(statistics.median(r.detected_share for r in runs), 3),
            "decode_cpu_load": round(decode_load, 3),
        }
        rows.append(row)
        print(
            f"{cameras:>3} cameras {'gated  ' if gated else 'ungated'}: load median "
            f"{row['load']['median']:.2f} (min {row['load']['min']:.2f}, max "
            f"{row['load']['max']:.2f}), cpu_load {row['cpu_load']['median']:.2f}, "
            f"detected {row['detected_share']:.0%} of frames, +decode {decode_load:.2f}"
        )
        if gated and row["load"]["median"] > 1.0:
            break
    gated_rows = [r for r in rows if r["gated"]]
    sustained = [r["cameras"] for r in gated_rows if r["load"]["median"] <= 1.0]
    by_cpu = [r["cameras"] for r in gated_rows if r["cpu_load"]["median"] <= 1.0]
    summary = {
        "bench": "gateway_capacity",
        "model": MODEL.name,
        "imgsz": args.imgsz,
        "detect_fps": DETECT_FPS,
        "camera_seconds": args.seconds,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "cameras_sustained": max(sustained, default=0),
        "cameras_sustained_by_cpu_time": max(by_cpu, default=0),
        "target_cameras": TARGET_CAMERAS,
        "gate_pass_rate_per_clip": _pass_rates(clips, ticks),
        "decode_ms_per_frame": {c.name: round(c.decode_ms, 2) for c in clips},
        "results": rows,
    }
    print(json.dumps(summary))
    return 0


def _pass_rates(clips: Sequence[Clip], ticks: int) -> dict[str, float]:
    """Share of each clip's 5-fps frames its zone's gate sends to the detector."""
    rates = {}
    for clip in clips:
        gate = MotionGate(ZONES[clip.name], clip.size, MotionSettings())
        passed = sum(
            gate.should_detect(
                Frame(clip.frames[t % len(clip.frames)], t, T0 + timedelta(seconds=t / DETECT_FPS))
            )
            for t in range(ticks)
        )
        rates[clip.name] = round(passed / ticks, 3)
    return rates


if __name__ == "__main__":
    sys.exit(main())
