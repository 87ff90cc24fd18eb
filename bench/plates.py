"""Plate reading: exact-match rate and ms per plate, constrained reader vs plain RapidOCR.

Readers: ours (OpenVINO, precision auto), ours on onnxruntime, ours in forced f32, and the
plain baseline (RapidOCR recogniser with its greedy decoding on a 3x upscaled crop).

Reads every crop of the folder with each reader, N times over, in one process on the same
machine, and reports each reader's accuracy and its per-repeat median ms per plate (median and
spread over the repeats). Run from the repository root:

    .venv/bin/python -m bench.plates [--repeats 3] [--folder ../shared/data/plates/lprnet]
        [--readers constrained net_vote net_alone]

The last stdout line is the JSON summary. A folder it cannot read: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from edge.config import PlateSettings
from edge.detections import Image
from edge.plate_decoding import PlateCandidate
from edge.plate_eval import (
    CropReader,
    PlainPlateReader,
    PlateEvaluation,
    PlateFolderError,
    evaluate_plates,
    terminal_progress,
)
from edge.plates import PlateReader

ROOT = Path(__file__).resolve().parent.parent
LPRNET = ROOT.parent / "shared" / "data" / "plates" / "lprnet"


READERS = ("constrained", "constrained_ort", "constrained_f32", "plain")
NET_READERS = ("net_vote", "net_alone")


class NetAloneReader:
    """The plate-trained recogniser alone on the whole crop (edge.plate_net), plate-decoded."""

    def __init__(self, reader: PlateReader) -> None:
        self._reader = reader

    def read_plate(self, crop: Image) -> PlateCandidate | None:
        return self._reader.net_reading((crop,))


def _summary(runs: list[PlateEvaluation]) -> dict[str, object]:
    medians = [run.ms_median for run in runs]
    return {
        "exact_match_rate": runs[-1].exact_match_rate,
        "char_accuracy": runs[-1].char_accuracy,
        "count": runs[-1].count,
        "ms_per_plate_median": round(statistics.median(medians), 2),
        "ms_per_plate_spread": [round(min(medians), 2), round(max(medians), 2)],
        "ms_p95_median": round(statistics.median(run.ms_p95 for run in runs), 2),
        "cpu_ms_per_plate_median": round(statistics.median(run.cpu_ms_median for run in runs), 2),
        "failures": [f"{f.expected}->{f.read}" for f in runs[-1].failures],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=LPRNET)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per reader")
    parser.add_argument(
        "--readers",
        nargs="+",
        choices=[*READERS, *NET_READERS],
        default=list(READERS),
        help="which readers to run; net_vote and net_alone need models/plate_recogniser.onnx",
    )
    args = parser.parse_args()

    # constrained: PP-OCR alone, as in every round before 8 (the shipped reader, which votes
    # with the plate net since plates round 8, is net_vote).
    settings = PlateSettings(threads=args.threads, second_opinion="off")
    vote = settings.model_copy(update={"second_opinion": "vote"})
    makers: dict[str, Callable[[], CropReader]] = {
        "constrained": lambda: PlateReader(settings),
        # The same reader on RapidOCR's own engine: separates decoding gains from engine gains.
        "constrained_ort": lambda: PlateReader(
            settings.model_copy(update={"engine": "onnxruntime"})
        ),
        "constrained_f32": lambda: PlateReader(settings.model_copy(update={"precision": "f32"})),
        "plain": lambda: PlainPlateReader(args.threads),
        # Round 5: the reader with the plate-trained recogniser voting, and that net alone.
        "net_vote": lambda: PlateReader(vote),
        "net_alone": lambda: NetAloneReader(PlateReader(vote)),
    }
    readers = {name: makers[name]() for name in args.readers}
    runs: dict[str, list[PlateEvaluation]] = {name: [] for name in readers}
    for repeat in range(1, args.repeats + 1):
        # Interleaved, so load from other processes falls on both readers alike.
        for name, reader in readers.items():
            progress = terminal_progress(f"{name} {repeat}/{args.repeats}")
            runs[name].append(evaluate_plates(args.folder, reader, progress))
    summary = {name: _summary(evaluations) for name, evaluations in runs.items()}
    for name, figures in summary.items():
        print(
            f"{name:>15}: exact {figures['exact_match_rate']:.2%}, "
            f"{figures['ms_per_plate_median']} ms/plate (spread {figures['ms_per_plate_spread']})"
        )
    print(json.dumps({"bench": "plates", "repeats": args.repeats, **summary}, ensure_ascii=False))


if __name__ == "__main__":
    try:
        main()
    except PlateFolderError as exc:
        print(f"bench.plates: {exc}", file=sys.stderr)
        sys.exit(2)
