"""The text recognisers a plate reader runs: RapidOCR's PP-OCRv4 model, onnxruntime or OpenVINO.

The model ships inside the rapidocr-onnxruntime wheel, so nothing is downloaded.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Literal, Protocol

import numpy as np

from edge.config import PlateSettings
from edge.detections import FloatArray

REC_HEIGHT = 48  # PP-OCRv4 recogniser input height
REC_MODEL_FILE = "ch_PP-OCRv4_rec_infer.onnx"  # inside the rapidocr-onnxruntime wheel


def rapidocr_recogniser(threads: int) -> Any:
    """RapidOCR's text recogniser alone, with its bundled model (no detector, no classifier)."""
    from rapidocr_onnxruntime.ch_ppocr_rec import TextRecognizer  # type: ignore[import-untyped]
    from rapidocr_onnxruntime.main import DEFAULT_CFG_PATH  # type: ignore[import-untyped]
    from rapidocr_onnxruntime.utils import read_yaml, update_model_path  # type: ignore[import-untyped]

    config = update_model_path(read_yaml(DEFAULT_CFG_PATH))["Rec"]
    config["intra_op_num_threads"] = threads
    config["inter_op_num_threads"] = 1
    return TextRecognizer(config)


class CtcRecogniser(Protocol):
    """A text recogniser: a (N, 3, 48, W) batch in, (N, W/8, characters) probabilities out."""

    characters: list[str]  # index 0 is the CTC blank

    def __call__(self, batch: FloatArray) -> FloatArray: ...


class OnnxRuntimeRecogniser:
    """RapidOCR's own recogniser session (onnxruntime)."""

    def __init__(self, threads: int) -> None:
        self._recogniser = rapidocr_recogniser(threads)
        self.characters: list[str] = list(self._recogniser.postprocess_op.character)

    def __call__(self, batch: FloatArray) -> FloatArray:
        return np.asarray(self._recogniser.session(batch)[0], dtype=np.float32)


class OpenVinoRecogniser:
    """The same RapidOCR model file, compiled by OpenVINO for the CPU."""

    def __init__(self, threads: int, precision: Literal["auto", "f32"]) -> None:
        import openvino as ov  # type: ignore[import-untyped]

        model_path = resources.files("rapidocr_onnxruntime") / "models" / REC_MODEL_FILE
        core = ov.Core()
        model = core.read_model(str(model_path))
        # The ONNX file carries its character list; RapidOCR adds the blank and a space too.
        listed = model.get_rt_info(["framework", "character"]).astype(str).splitlines()
        self.characters = ["blank", *listed, " "]
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        if precision == "f32":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        self._request = core.compile_model(model, "CPU", config).create_infer_request()

    def __call__(self, batch: FloatArray) -> FloatArray:
        output = self._request.infer({0: batch})[0]
        return np.asarray(output, dtype=np.float32)


def build_recogniser(settings: PlateSettings) -> CtcRecogniser:
    if settings.engine == "openvino":
        return OpenVinoRecogniser(settings.threads, settings.precision)
    return OnnxRuntimeRecogniser(settings.threads)
