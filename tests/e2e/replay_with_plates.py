"""`civicwatch replay` with one part faked: the plate reader, which names vtest.avi's van and car.

vtest.avi (768x576) shows the parked van and car from a corner, too small and too far for any
plate to be read, and the exemption tests need plates. This runs the same clip through the same
wiring as `civicwatch replay` (civicwatch.replay: the real detector, tracker, dwell rules,
exemption gate, signed rule store, outbox and MQTT publisher) with ``KnownPlates`` in place of
the OCR reader: it answers, for a vehicle box, the plate the test gave the vehicle standing
there. Everything else is real; the summary is printed as `civicwatch replay` prints it.

    python -m tests.e2e.replay_with_plates --config C --camera CAM --source CLIP \
        --van-plate 沪A5V721 --car-plate 苏E88K19 [--hold-last S]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

from civicwatch.config import load_config
from civicwatch.gateway import camera_analysis, gateway_services, outbox_path, rule_store
from civicwatch.logformat import LogFormat, configure_logging
from contracts.events import BoundingBox
from edge.capture import ReplaySource
from edge.detections import FloatArray, Image
from edge.detector import create_detector, prepare_ultralytics_environment
from edge.outbox import Outbox
from edge.plate_decoding import PlateCandidate
from edge.plates import PlateReader
from edge.publisher import EdgePublisher
from edge.replay import replay_clip

VAN_CAR_SPLIT_X = 728.0
"""In vtest.avi the van stands at x 652-722 and the car at x 733-767 (the detector's boxes)."""


class KnownPlates(PlateReader):
    """The faked part: the plate of the vehicle whose box centre is left (van) or right (car) of
    VAN_CAR_SPLIT_X, read with a confidence above any floor. Loads no OCR model."""

    def __init__(self, van: str | None, car: str | None) -> None:  # no super(): no model
        self.van = van
        self.car = car

    def read_vehicle(
        self, frame: Image, vehicle_box: BoundingBox | Sequence[float] | FloatArray
    ) -> PlateCandidate | None:
        if isinstance(vehicle_box, BoundingBox):
            x1, x2 = vehicle_box.x1, vehicle_box.x2
        else:
            x1, x2 = float(vehicle_box[0]), float(vehicle_box[2])
        plate = self.van if (x1 + x2) / 2 < VAN_CAR_SPLIT_X else self.car
        if plate is None:
            return None
        return PlateCandidate(plate, 0.97, tuple(0.97 for _ in plate))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--camera", required=True)
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--van-plate")
    parser.add_argument("--car-plate")
    parser.add_argument("--hold-last", type=float, default=0.0)
    parser.add_argument("--confirm-timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    configure_logging("INFO", LogFormat("text"))
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

    config = load_config(args.config)
    found = config.camera(args.camera)
    if found is None:
        print(f"no camera {args.camera!r} in {args.config}", file=sys.stderr)
        return 2
    site, gateway, camera = found
    settings = config.edge
    prepare_ultralytics_environment(settings.data_dir)
    detector = create_detector(settings.detector)
    # From here as civicwatch.replay.replay, with the plate reader swapped for KnownPlates.
    source = ReplaySource(args.source, hold_last_seconds=args.hold_last)
    outbox = Outbox(outbox_path(settings, gateway.id))
    rules = rule_store(settings, site, gateway.id)
    publisher = EdgePublisher(
        config.broker,
        site.id,
        gateway.id,
        outbox,
        settings.resend_after_seconds,
        "-replay",
        announces_gateway=False,
        max_unconfirmed=settings.max_unconfirmed,
        rules=rules,
    )
    # Built with plates off so the OCR model, never asked here, is not loaded (seconds a run).
    no_ocr = settings.model_copy(
        update={"plates": settings.plates.model_copy(update={"enabled": False})}
    )
    services = replace(
        gateway_services(no_ocr, gateway.id, detector, outbox, ZoneInfo(site.timezone), rules),
        plate_reader=KnownPlates(args.van_plate, args.car_plate),
    )
    analysis = camera_analysis(
        site.id, gateway.id, camera, settings, services, detector, source.fps
    )
    summary = replay_clip(
        camera.id, source, analysis, detector, outbox, publisher, args.confirm_timeout
    )
    print(summary.model_dump_json(indent=2))
    print(
        f"exempted={rules.exempted} warned={rules.warned} "
        f"refused={json.dumps({str(k): n for k, n in rules.refused.items()})} "
        f"version={rules.version}",
        file=sys.stderr,
    )
    return 0 if summary.all_confirmed else 3


if __name__ == "__main__":
    sys.exit(main())
