"""Export a trained .pt to what gateways run: an OpenVINO IR folder (optionally INT8) or ONNX.

    python -m models.export WEIGHTS --format openvino|onnx --imgsz N [--int8 --data DATA_YAML]

Offline: INT8 needs calibration images, given as a YOLO data.yaml (--data; Ultralytics would
otherwise download coco8). Writes next to WEIGHTS as Ultralytics does (``best_openvino_model/``,
``best.onnx``). Prints a JSON summary with the SHA-256 of each file as its last stdout line;
add the model to models/manifest.yaml with ``python -m models.manifest describe``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import sys
import time
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from edge.detector import prepare_ultralytics_environment
from models.manifest import sha256_file


class ExportFormat(StrEnum):
    OPENVINO = "openvino"
    ONNX = "onnx"


class ExportError(Exception):
    """The export cannot run here: missing input, missing package, or Ultralytics failed."""


class ExportResult(BaseModel):
    source: Path
    exported: Path
    format: ExportFormat
    imgsz: int
    int8: bool
    seconds: float
    files: dict[str, str]


# Packages Ultralytics would otherwise try to pip-install at export time.
REQUIRED_PACKAGES = {ExportFormat.OPENVINO: ("openvino",), ExportFormat.ONNX: ("onnx",)}
INT8_PACKAGES = ("nncf",)


def _check_packages(names: Sequence[str]) -> None:
    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if missing:
        raise ExportError(
            f"export needs {missing}; install them (pip install {' '.join(missing)}), "
            "Ultralytics must not install them at run time"
        )


def export_model(
    weights: Path,
    export_format: ExportFormat,
    imgsz: int,
    int8: bool = False,
    data: Path | None = None,
) -> ExportResult:
    if weights.suffix != ".pt" or not weights.is_file():
        raise ExportError(f"weights must be an existing .pt file: {weights}")
    if imgsz < 32 or imgsz % 32:
        raise ExportError(f"imgsz must be a multiple of 32 (the model stride), got {imgsz}")
    if int8 and export_format is not ExportFormat.OPENVINO:
        raise ExportError("--int8 is supported for openvino exports only")
    if int8 and (data is None or not data.is_file()):
        raise ExportError("--int8 needs --data DATA_YAML with calibration images (no download)")
    _check_packages(REQUIRED_PACKAGES[export_format] + (INT8_PACKAGES if int8 else ()))
    prepare_ultralytics_environment(weights.resolve().parent)
    options: dict[str, Any] = {"format": export_format.value, "imgsz": imgsz, "int8": int8}
    if int8:
        options["data"] = str(data)
    if export_format is ExportFormat.ONNX:
        options["simplify"] = False  # onnxslim is not installed; nothing to gain for our use
    began = time.monotonic()
    with contextlib.redirect_stdout(sys.stderr):  # Ultralytics logs; stdout ends with our JSON
        from ultralytics import YOLO  # type: ignore[attr-defined]

        try:
            model: Any = YOLO(str(weights), task="detect")
            exported = Path(str(model.export(**options)))
        except Exception as exc:
            raise ExportError(f"exporting {weights} to {export_format}: {exc}") from exc
    files = sorted(exported.iterdir()) if exported.is_dir() else [exported]
    return ExportResult(
        source=weights,
        exported=exported,
        format=export_format,
        imgsz=imgsz,
        int8=int8,
        seconds=round(time.monotonic() - began, 2),
        files={p.name: sha256_file(p) for p in files if p.is_file()},
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.export", description=__doc__)
    parser.add_argument("weights", type=Path)
    parser.add_argument("--format", type=ExportFormat, choices=list(ExportFormat), required=True)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--int8", action="store_true", help="INT8 weights (openvino; needs nncf)")
    parser.add_argument("--data", type=Path, help="data.yaml whose images calibrate INT8")
    args = parser.parse_args(argv)
    try:
        result = export_model(args.weights, args.format, args.imgsz, args.int8, args.data)
    except ExportError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(result.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
