"""Replay throughput: `civicwatch replay` over a real clip vs the bare detector on the same frames.

Starts a private Mosquitto and `civicwatch server` (SQLite), runs the replay N times, and, in the
same run, times decode + detector alone over the same clip as the baseline the pipeline is compared
against. Run from the repository root:

    .venv/bin/python bench/replay_throughput.py [--runs 3] [--clip ../shared/data/clips/vtest.avi]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
MODEL = SHARED / "models" / "yolo11n_int8_openvino_model"
VTEST_SITE = ROOT / "tests" / "e2e" / "configs" / "vtest.yaml"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"port {port} never opened")


def _progress(done: int, total: int, label: str) -> None:
    if sys.stderr.isatty():
        filled = int(30 * done / total)
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
        sys.stderr.flush()
        if done == total:
            sys.stderr.write("\n")


def _detector_only_fps(clip: Path, workdir: Path) -> tuple[float, int]:
    """Decode every frame and run the detector on it: the floor the pipeline adds to."""
    import cv2
    import numpy as np

    from edge.config import DetectorSettings
    from edge.detector import UltralyticsDetector, prepare_ultralytics_environment

    prepare_ultralytics_environment(workdir)
    detector = UltralyticsDetector(DetectorSettings(model=str(MODEL)))
    capture = cv2.VideoCapture(str(clip))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = capture.read()
    detector.detect(np.asarray(frame, dtype=np.uint8))  # warm-up, as the replay's is
    frames = 0
    started = time.perf_counter()
    while ok:
        detector.detect(np.asarray(frame, dtype=np.uint8))
        frames += 1
        _progress(frames, total, "detector only")
        ok, frame = capture.read()
    return frames / (time.perf_counter() - started), frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clip", type=Path, default=SHARED / "data" / "clips" / "vtest.avi")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="civicwatch-bench-"))
    broker_port, api_port = _free_port(), _free_port()
    (workdir / "mosquitto.conf").write_text(
        f"listener {broker_port} 127.0.0.1\nallow_anonymous true\n"
    )
    document = yaml.safe_load(VTEST_SITE.read_text())
    document.update(
        broker={"host": "127.0.0.1", "port": broker_port},
        edge={"data_dir": str(workdir / "edge"), "detector": {"model": str(MODEL)}},
        server={
            "database_url": f"sqlite:///{workdir / 'civicwatch.db'}",
            "ingest": {"evidence_dir": str(workdir / "evidence")},
            "api": {"port": api_port},
        },
    )
    config = workdir / "civicwatch.yaml"
    config.write_text(yaml.safe_dump(document))
    env = {**os.environ}
    env.pop("CIVICWATCH_MODEL", None)
    env.pop("CIVICWATCH_DATABASE_URL", None)
    cli = [sys.executable, "-m", "civicwatch.cli", "--log-level", "WARNING"]
    log = (workdir / "services.log").open("ab")
    broker = subprocess.Popen(["mosquitto", "-c", str(workdir / "mosquitto.conf")], stderr=log)
    server = subprocess.Popen([*cli, "server", "--config", str(config)], stderr=log, env=env)
    try:
        _wait_for_port(broker_port)
        _wait_for_port(api_port)
        replay_command = [*cli, "replay", "--config", str(config), "--camera", "cam-building"]
        runs = []
        for run in range(args.runs):
            replay = subprocess.run(
                [*replay_command, "--source", str(args.clip)],
                capture_output=True,
                env=env,
                check=True,
            )
            summary = json.loads(replay.stdout)
            runs.append(summary)
            _progress(run + 1, args.runs, "replay")
        baseline_fps, frames = _detector_only_fps(args.clip, workdir)
    finally:
        server.terminate()
        server.wait(30)
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)

    walls = [r["wall_seconds"] for r in runs]
    fps = [r["fps"] for r in runs]
    median_fps = statistics.median(fps)
    print(f"clip: {args.clip.name}, {frames} frames, {runs[0]['clip_seconds']} s of clip")
    print(
        f"replay wall s: median {statistics.median(walls):.2f} "
        f"(min {min(walls):.2f}, max {max(walls):.2f}) over {len(runs)} runs"
    )
    print(f"replay fps:    median {median_fps:.1f} (min {min(fps):.1f}, max {max(fps):.1f})")
    print(f"detector-only fps (same run): {baseline_fps:.1f}")
    print(
        f"summary: replay {median_fps:.1f} fps = {median_fps / baseline_fps:.2f}x detector-only; "
        f"{runs[0]['clip_seconds'] / statistics.median(walls):.1f}x real time; "
        f"violations {len(runs[0]['violations'])}, events confirmed "
        f"{runs[0]['events_confirmed']}/{runs[0]['events_published']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
