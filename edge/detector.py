"""Object detectors. Ultralytics output becomes our Detections here, so nothing else sees it."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from contracts.events import ModelInfo
from edge.config import MODEL_ENV_VAR, DetectorSettings
from edge.detections import Detections, Image

LOCAL_MODEL_HINT = "../shared/models/yolo11n_int8_openvino_model"


class ModelUnavailableError(Exception):
    """The configured model cannot be loaded (missing file, or a download while offline)."""


class Detector(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def model_info(self) -> ModelInfo: ...

    def detect(self, images: Sequence[Image]) -> list[Detections]: ...


def prepare_ultralytics_environment(data_dir: Path) -> None:
    """Keep Ultralytics off the network: offline flag and a config dir holding its Arial font.

    Call before anything imports ultralytics; variables already set are left alone.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    config_dir = Path(os.environ.setdefault("YOLO_CONFIG_DIR", str(data_dir / "ultralytics")))
    import matplotlib

    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    # Ultralytics looks in YOLO_CONFIG_DIR/Ultralytics; the top level is kept for older versions.
    for folder in (config_dir, config_dir / "Ultralytics"):
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "Arial.ttf").exists():
            shutil.copy(font, folder / "Arial.ttf")


def _model_version(model: str) -> str:
    metadata = Path(model) / "metadata.yaml"
    if metadata.is_file():
        import yaml

        data = yaml.safe_load(metadata.read_text()) or {}
        if isinstance(data, dict) and data.get("version"):
            return str(data["version"])[:64]
    import ultralytics

    return f"ultralytics-{ultralytics.__version__}"[:64]


class UltralyticsDetector:
    """Anything Ultralytics loads: a .pt, an *_openvino_model folder, an .onnx file.

    One instance serves every camera of a gateway; a lock keeps inference one at a time.
    """

    def __init__(self, settings: DetectorSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        model = settings.model
        path = Path(model)
        if path.suffix != ".pt" and not path.exists():
            # Only bare .pt names can be fetched by Ultralytics; anything else must exist here.
            raise ModelUnavailableError(self._unavailable(model, "no such file or folder"))
        # Ultralytics logs to stdout, which belongs to our commands' results (replay's JSON);
        # its logger binds to whatever sys.stdout is at import, so import it under stderr.
        with contextlib.redirect_stdout(sys.stderr):
            try:
                from ultralytics import YOLO  # type: ignore[attr-defined]

                self._model: Any = YOLO(model, task="detect")
            except Exception as exc:
                raise ModelUnavailableError(self._unavailable(model, str(exc).strip())) from exc
            names = self._model.names
        self._class_names: dict[int, str] = {int(k): str(v) for k, v in dict(names).items()}
        # Exported models (OpenVINO, ONNX) are built for batch 1; only .pt takes a real batch.
        self._batch = 16 if path.suffix == ".pt" else 1
        self._info = ModelInfo(
            name=path.name.removesuffix(".pt")[:128], version=_model_version(model)
        )

    @staticmethod
    def _unavailable(model: str, why: str) -> str:
        first_line = why.splitlines()[0] if why else "unknown error"
        return (
            f"cannot load detector model {model!r} ({first_line}); set {MODEL_ENV_VAR} to a "
            f"local model, e.g. {MODEL_ENV_VAR}={LOCAL_MODEL_HINT}"
        )

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def model_info(self) -> ModelInfo:
        return self._info

    @property
    def class_names(self) -> dict[int, str]:
        return dict(self._class_names)

    def detect(self, images: Sequence[Image]) -> list[Detections]:
        out: list[Detections] = []
        with self._lock:
            for start in range(0, len(images), self._batch):
                results = self._model.predict(
                    list(images[start : start + self._batch]),
                    imgsz=self._settings.imgsz,
                    conf=self._settings.confidence,
                    iou=self._settings.iou,
                    device=self._settings.device,
                    verbose=False,
                )
                out.extend(self._convert(r) for r in results)
        return out

    def _convert(self, result: Any) -> Detections:
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return Detections.empty(self._class_names)
        boxes = boxes.cpu().numpy()
        return Detections.create(
            xyxy=np.asarray(boxes.xyxy),
            confidence=np.asarray(boxes.conf),
            class_id=np.asarray(boxes.cls),
            class_names=self._class_names,
        )
