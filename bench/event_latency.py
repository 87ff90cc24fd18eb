"""Latency from the dwell crossing to the violation event on the broker: p50 and p99.

The live path, in one process: a real vtest.avi frame with a parked vehicle's box goes through
the camera pipeline (dwell rule, panoramas, close-up, plate reading, face redaction, evidence
chain, outbox) and the edge publisher to a private Mosquitto; a subscriber notes when each
opened event arrives. Timed from the call that processes the crossing frame (the frame on
which the dwell runs out) to the event's arrival at the subscriber.

    .venv/bin/python -m bench.event_latency [--violations 200]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt

from civicwatch.gateway import gateway_services
from contracts.events import ViolationEvent
from contracts.mqtt import BrokerSettings, make_client
from contracts.sites import CameraConfig, ZoneConfig, ZoneKind
from contracts.stats import percentile
from contracts.topics import VIOLATION_SUBSCRIPTION
from edge.config import EdgeSettings, RedactionSettings, TrackerSettings
from edge.detections import Detections, Frame
from edge.outbox import Outbox
from edge.pipeline import CameraPipeline
from edge.publisher import EdgePublisher

ROOT = Path(__file__).resolve().parent.parent
VTEST = ROOT.parent / "shared" / "data" / "clips" / "vtest.avi"
VAN = (652.8, 43.3, 722.7, 100.8)  # the white van parked by the building in vtest.avi
DWELL_SECONDS = 10


def start_broker(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    config = workdir / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n")
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    process = subprocess.Popen([mosquitto, "-c", str(config)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process, port
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("mosquitto did not start")


class Arrivals:
    """Subscribes to every violation; notes when each opened event arrives."""

    def __init__(self, broker: BrokerSettings) -> None:
        self.opened: dict[str, float] = {}
        self._ready = threading.Event()
        self._client = make_client(broker, "latency-probe")
        self._client.on_connect = lambda client, *_: client.subscribe(VIOLATION_SUBSCRIPTION, 1)
        self._client.on_subscribe = lambda *_: self._ready.set()
        self._client.on_message = self._on_message
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("latency probe could not subscribe")

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        arrived = time.perf_counter()
        event = ViolationEvent.model_validate_json(message.payload)
        if event.phase.value == "opened":
            self.opened.setdefault(str(event.violation_id), arrived)  # not the resends

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def frame_of_vtest() -> np.ndarray[Any, np.dtype[np.uint8]]:
    capture = cv2.VideoCapture(str(VTEST))
    ok, image = capture.read()
    capture.release()
    if not ok:
        raise RuntimeError(f"cannot read {VTEST}")
    return np.asarray(image, dtype=np.uint8)


def measure(
    violations: int, workdir: Path, port: int, blur_faces: bool = True
) -> tuple[list[float], list[float]]:
    """Crossing -> on the broker, and the crossing frame's processing alone, in ms."""
    broker = BrokerSettings(host="127.0.0.1", port=port)
    settings = EdgeSettings(
        data_dir=workdir / "edge",
        tracker=TrackerSettings(grace_seconds=2, rearm_seconds=0),
        redaction=RedactionSettings(blur_faces=blur_faces),
    )
    outbox = Outbox(workdir / "outbox.sqlite")
    services = gateway_services(settings, "gw-bench", None, outbox)
    zone = ZoneConfig(
        id="kerb",
        kind=ZoneKind.NO_PARKING,
        polygon=[[600, 30], [768, 30], [768, 118], [600, 118]],
        dwell_seconds=DWELL_SECONDS,
    )
    camera = CameraConfig(id="cam-bench", source="vtest.avi", zones=[zone])
    pipeline = CameraPipeline("site-bench", "gw-bench", camera, settings, services, fps=1)
    publisher = EdgePublisher(broker, "site-bench", "gw-bench", outbox, 30.0)
    arrivals = Arrivals(broker)
    publisher.start()
    deadline = time.monotonic() + 10
    while not publisher.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    image = frame_of_vtest()
    clock = datetime(2026, 11, 27, tzinfo=UTC)
    crossings: dict[str, float] = {}
    processing: list[float] = []
    show = sys.stderr.isatty()
    try:
        for trial in range(violations):
            van = Detections.create([VAN], [0.9], [7], {7: "truck"}, [trial + 1])
            # A new track is confirmed on its second frame: two frames to spare.
            for step in range(DWELL_SECONDS + 3):
                frame = Frame(image, step, clock)
                clock += timedelta(seconds=1)
                began = time.perf_counter()
                events = pipeline.process(frame, van)
                if any(event.phase.value == "opened" for event in events):
                    processing.append((time.perf_counter() - began) * 1000)
                if events:
                    publisher.flush_due()  # as the worker loop does when a frame raised
                    for event in events:
                        if event.phase.value == "opened":
                            crossings[str(event.violation_id)] = began
            # The van leaves: the violation clears before the next trial's van arrives.
            for _ in range(4):
                pipeline.process(Frame(image, 0, clock), Detections.empty())
                clock += timedelta(seconds=1)
            publisher.flush_due()
            if show:
                sys.stderr.write(f"\rlatency: violation {trial + 1}/{violations}")
        deadline = time.monotonic() + 30
        while len(arrivals.opened) < len(crossings) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        if show:
            sys.stderr.write("\n")
        publisher.stop()
        arrivals.stop()
        outbox.close()
    latencies = [
        (arrivals.opened[v] - began) * 1000
        for v, began in crossings.items()
        if v in arrivals.opened
    ]
    return latencies, processing


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered), 1),
        "p99_ms": round(percentile(ordered, 0.99), 1),
        "min_ms": round(ordered[0], 1),
        "max_ms": round(ordered[-1], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--violations", type=int, default=200)
    parser.add_argument(
        "--no-blur-faces",
        action="store_true",
        help="skip face redaction, to see its share of the latency",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        broker, port = start_broker(workdir)
        try:
            latencies, processing = measure(
                args.violations, workdir, port, blur_faces=not args.no_blur_faces
            )
        finally:
            broker.terminate()
            broker.wait(10)
    if not latencies:
        print(json.dumps({"error": "no opened event arrived"}))
        return 1
    summary = {
        "violations": args.violations,
        "blur_faces": not args.no_blur_faces,
        "arrived": len(latencies),
        "crossing_to_broker": percentiles(latencies),
        "crossing_frame_processing": percentiles(processing),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
