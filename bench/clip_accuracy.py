"""Accuracy on the real clips: violations opened against what a person sees in each clip.

Each scenario is one clip with the zones drawn on it and the number of violations a person
watching the clip expects. The clip runs through the live pipeline (`civicwatch.replay.replay`
without a broker: real detector, tracker, motion gate, rules, foreground path). Counted per
scenario:

- opened: violations raised;
- false alarms: opened beyond the expected;
- missed: expected but not opened;
- split: one object that raised more than once (must be 0 on vtest.avi, where people walk in
  front of the parked vehicles).

    .venv/bin/python -m bench.clip_accuracy [--imgsz 640] [--only vtest-kerb]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from civicwatch.replay import replay
from contracts.sites import CameraConfig, GatewayConfig, SiteConfig, ZoneConfig, ZoneKind
from edge.config import DetectorSettings, EdgeSettings
from edge.detector import create_detector, prepare_ultralytics_environment

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ROOT.parent / "shared" / "data" / "clips"
MODEL = ROOT.parent / "shared" / "models" / "yolo11n_int8_openvino_model"


@dataclass(frozen=True)
class Scenario:
    name: str
    clip: str
    kind: ZoneKind
    polygon: list[list[float]]
    dwell_seconds: float
    expected: int
    what: str


SCENARIOS = [
    Scenario(
        "vtest-kerb",
        "vtest.avi",
        ZoneKind.NO_PARKING,
        [[600, 30], [768, 30], [768, 118], [600, 118]],
        30,
        2,
        "a white van and a car parked by the building all clip; people walk past",
    ),
    Scenario(
        "vtest-road-fire-lane",
        "vtest.avi",
        ZoneKind.FIRE_LANE,
        [
            [0, 190],
            [400, 188],
            [640, 225],
            [768, 290],
            [768, 470],
            [600, 410],
            [430, 315],
            [250, 275],
            [0, 240],
        ],
        20,
        0,
        "people walk and stop along the road: nothing blocks it",
    ),
    Scenario(
        "traffic-kerb",
        "traffic_sequence.mp4",
        ZoneKind.NO_PARKING,
        [[500, 340], [585, 340], [540, 530], [430, 530]],
        8,
        3,
        "three cars parked along the right kerb all clip (grey, seen from high above)",
    ),
    Scenario(
        "car-park-aisle",
        "car-detection.mp4",
        ZoneKind.FIRE_LANE,
        [[0, 0], [768, 0], [768, 432], [0, 432]],
        8,
        0,
        "cars drive through the aisle and leave; none stops",
    ),
    Scenario(
        "junction-carriageway",
        "intersection-demo1.mp4",
        ZoneKind.NO_PARKING,
        [[70, 125], [500, 160], [470, 352], [120, 352], [70, 260]],
        8,
        0,
        "cars stop briefly at the line, shorter than the dwell",
    ),
    Scenario(
        "motorway",
        "motorway-traffic.mp4",
        ZoneKind.NO_PARKING,
        [[0, 180], [960, 180], [960, 540], [0, 540]],
        5,
        0,
        "dense moving traffic",
    ),
    Scenario(
        "motorway-cctv-shoulder",
        "motorway-cctv.avi",
        ZoneKind.FIRE_LANE,
        [[228, 60], [250, 60], [305, 240], [262, 240]],
        10,
        0,
        "the hard shoulder: a cyclist rides along it, traffic passes beside",
    ),
    Scenario(
        "motorway-cctv-whole-frame",
        "motorway-cctv.avi",
        ZoneKind.FIRE_LANE,
        [[0, 60], [320, 60], [320, 240], [0, 240]],
        10,
        0,
        "stress: a zone over the whole low-resolution view, traffic streaming past its edges",
    ),
]


class ScenarioResult(BaseModel):
    scenario: str
    clip: str
    expected: int
    opened: int
    false_alarms: int
    missed: int
    split: int
    classes: list[str]
    frames: int
    frames_detected: int
    fps: float


def run_scenario(scenario: Scenario, settings: EdgeSettings) -> ScenarioResult:
    zone = ZoneConfig(
        id="zone",
        kind=scenario.kind,
        polygon=scenario.polygon,
        dwell_seconds=scenario.dwell_seconds,
    )
    camera = CameraConfig(id="cam", source=scenario.clip, zones=[zone])
    gateway = GatewayConfig(id="gw", cameras=[camera])
    site = SiteConfig(id="bench", gateways=[gateway])
    detector = create_detector(settings.detector)
    summary = replay(site, gateway, camera, settings, None, detector, CLIPS / scenario.clip)
    distinct = summary.opened - summary.split  # objects that raised, each counted once
    return ScenarioResult(
        scenario=scenario.name,
        clip=scenario.clip,
        expected=scenario.expected,
        opened=summary.opened,
        false_alarms=max(0, distinct - scenario.expected),
        missed=max(0, scenario.expected - distinct),
        split=summary.split,
        classes=sorted(v.class_name for v in summary.violations),
        frames=summary.frames,
        frames_detected=summary.frames_detected,
        fps=summary.fps,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--only", help="run this scenario alone")
    args = parser.parse_args()
    scenarios = [s for s in SCENARIOS if args.only in (None, s.name)]
    results: list[ScenarioResult] = []
    with tempfile.TemporaryDirectory() as workdir:
        prepare_ultralytics_environment(Path(workdir))
        for index, scenario in enumerate(scenarios, start=1):
            settings = EdgeSettings(
                data_dir=Path(workdir) / scenario.name,
                detector=DetectorSettings(model=str(MODEL), imgsz=args.imgsz),
            )
            results.append(run_scenario(scenario, settings))
            print(results[-1].model_dump_json())
            if sys.stderr.isatty():
                sys.stderr.write(f"clip accuracy: {index}/{len(scenarios)} scenarios done\n")
    total = {
        "imgsz": args.imgsz,
        "scenarios": len(results),
        **{
            key: sum(getattr(r, key) for r in results)
            for key in ("expected", "opened", "false_alarms", "missed", "split")
        },
    }
    print(json.dumps(total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
