"""Face redaction per opened event: people's heads + CenterFace vs the old Haar cascade.

Opened events are made by the real camera pipeline from real footage, with the real detector
(YOLO11n, OpenVINO INT8): vtest.avi's white van parked by the building while people walk past
(each event starts at a different point of the clip), and the demo's bus.jpg held as a camera
with a fire lane round the bus. Each event's evidence (panoramas and close-up) is then redacted
by both paths, interleaved, on the same machine in the same run; the time is what redaction
adds to the event (decode, find, pixelate, encode every frame). Run from the repository root:

    .venv/bin/python -m bench.redaction [--events 12] [--repeats 5]

The last stdout line is the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from contracts.events import EvidenceFrame, Phase
from contracts.sites import CameraConfig, ZoneConfig, ZoneKind
from edge.config import DetectorSettings, EdgeSettings, RedactionSettings
from edge.detections import Detections, FloatArray, Frame, Image
from edge.detector import Detector, create_detector
from edge.outbox import Outbox
from edge.pipeline import CameraPipeline, GatewayServices
from edge.plate_eval import terminal_progress
from edge.redaction import EvidenceSealer, FaceRedactor, PeopleLog
from edge.redaction_eval import ULTRALYTICS_ASSETS, HaarRedactor

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
VTEST = SHARED / "data" / "clips" / "vtest.avi"
MODEL = SHARED / "models" / "yolo11n_int8_openvino_model"
KERB = [[600, 30], [768, 30], [768, 118], [600, 118]]  # where vtest's van stays parked
BUS_LANE = [[0, 450], [810, 450], [810, 900], [0, 900]]  # the demo's fire lane (example.yaml)
FPS = 2.0  # frames fed per second of clip time: a motion-gated camera's detection rate
DWELL_SECONDS = 10


@dataclass(frozen=True, slots=True)
class Opened:
    """One opened event's evidence, and what the pipeline knew when it was sealed."""

    scene: str
    evidence: list[EvidenceFrame]
    people: PeopleLog
    subject: FloatArray | None


def clip_frames(detector: Detector) -> list[tuple[Image, Detections]]:
    """vtest.avi at FPS, each frame with the detector's findings."""
    capture = cv2.VideoCapture(str(VTEST))
    step = round(capture.get(cv2.CAP_PROP_FPS) / FPS)
    frames: list[tuple[Image, Detections]] = []
    index = 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        if index % step == 0:
            picture = np.asarray(image, np.uint8)
            frames.append((picture, detector.detect(picture)))
        index += 1
    capture.release()
    return frames


def opened_event(
    scene: str,
    zone: ZoneConfig,
    frames: list[tuple[Image, Detections]],
    workdir: Path,
) -> Opened | None:
    """The first opened event of a fresh pipeline fed these frames, left unredacted."""
    camera = CameraConfig(id="cam-bench", source=scene, zones=[zone])
    settings = EdgeSettings(data_dir=workdir, redaction=RedactionSettings(blur_faces=False))
    outbox = Outbox(workdir / f"outbox-{time.monotonic_ns()}.sqlite")
    services = GatewayServices(model_info=None, outbox=outbox, sealer=EvidenceSealer(None))
    pipeline = CameraPipeline("site-bench", "gw-bench", camera, settings, services, fps=FPS)
    people = PeopleLog(3600)
    start = datetime(2026, 12, 3, tzinfo=UTC)
    try:
        for index, (image, detections) in enumerate(frames):
            frame = Frame(image, index, start + timedelta(seconds=index / FPS))
            people.note(frame.timestamp, image, detections)
            for event in pipeline.process(frame, detections):
                if event.phase is Phase.OPENED:
                    box = event.object.box if event.object is not None else None
                    subject = (
                        np.array([box.x1, box.y1, box.x2, box.y2], np.float32) if box else None
                    )
                    return Opened(scene, event.evidence, people, subject)
    finally:
        outbox.close()
    return None


def events(detector: Detector, count: int, workdir: Path) -> list[Opened]:
    """count - 1 vtest events from spread-out starting points, and the bus demo's."""
    kerb = ZoneConfig(
        id="kerb", kind=ZoneKind.NO_PARKING, polygon=KERB, dwell_seconds=DWELL_SECONDS
    )
    lane = ZoneConfig(
        id="fire-lane", kind=ZoneKind.FIRE_LANE, polygon=BUS_LANE, dwell_seconds=DWELL_SECONDS
    )
    clip = clip_frames(detector)
    needed = round((DWELL_SECONDS + 4) * FPS)
    starts = np.linspace(0, len(clip) - needed, max(1, count - 1), dtype=np.int64)
    found: list[Opened] = []
    for start in starts:
        run = clip[int(start) : int(start) + needed]
        event = opened_event(f"vtest.avi@{int(start) / FPS:.0f}s", kerb, run, workdir)
        if event is not None:
            found.append(event)
    bus = cv2.imread(str(ULTRALYTICS_ASSETS / "bus.jpg"))
    still = np.asarray(bus, np.uint8)
    held = [(still, detector.detect(still))] * needed
    event = opened_event("bus.jpg", lane, held, workdir)
    if event is not None:
        found.append(event)
    return found


def timed(redact: Callable[[Opened], object], event: Opened) -> tuple[float, float]:
    """Wall and process CPU milliseconds of redacting one event."""
    wall, cpu = time.perf_counter(), time.process_time()
    redact(event)
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def spread(values: list[float]) -> dict[str, object]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered), 1),
        "p10_p90_ms": [
            round(ordered[int(0.1 * (len(ordered) - 1))], 1),
            round(ordered[int(0.9 * (len(ordered) - 1))], 1),
        ],
        "min_max_ms": [round(ordered[0], 1), round(ordered[-1], 1)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=12, help="opened events (one is the bus)")
    parser.add_argument("--repeats", type=int, default=5, help="redactions of each event")
    parser.add_argument("--model", type=Path, default=MODEL)
    args = parser.parse_args()

    detector = create_detector(DetectorSettings(model=str(args.model)))
    settings = RedactionSettings()
    ours, haar = FaceRedactor(settings), HaarRedactor(settings)
    with tempfile.TemporaryDirectory() as folder:
        opened = events(detector, args.events, Path(folder))
    frames = [len(event.evidence) for event in opened]
    ours.redact(np.zeros((576, 768, 3), np.uint8))  # the first inference compiles
    sealer = EvidenceSealer(ours)  # as the pipeline seals: the event's frames side by side
    paths: dict[str, Callable[[Opened], object]] = {
        "heads_and_centerface": lambda e: sealer.seal(
            uuid.uuid4(), Phase.OPENED, e.evidence, e.people, e.subject
        ),
        "haar_baseline": lambda e: [haar.redacted_copy(f) for f in e.evidence],
    }
    wall: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    progress = terminal_progress("redaction")
    total = args.repeats * len(opened)
    for repeat in range(args.repeats):
        for number, event in enumerate(opened):
            for name, redact in paths.items():  # interleaved: load falls on both alike
                w, c = timed(redact, event)
                wall[name].append(w)
                cpu[name].append(c)
            if progress is not None:
                progress(repeat * len(opened) + number + 1, total)
    figures = {
        name: {**spread(wall[name]), "cpu_median_ms": round(statistics.median(cpu[name]), 1)}
        for name in paths
    }
    ours_ms = statistics.median(wall["heads_and_centerface"])
    ratio = round(statistics.median(wall["haar_baseline"]) / ours_ms, 1)
    print(
        f"redaction per opened event: {ours_ms:.1f} ms median "
        f"(p10-p90 {figures['heads_and_centerface']['p10_p90_ms']}), Haar baseline "
        f"{figures['haar_baseline']['median_ms']} ms: {ratio}x faster"
    )
    summary = {
        "bench": "redaction",
        "events": len(opened),
        "scenes": sorted({event.scene.split("@")[0] for event in opened}),
        "frames_per_event": [min(frames), max(frames)] if frames else [],
        "repeats": args.repeats,
        **figures,
        "baseline_over_ours": ratio,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
