"""The plate-trained recogniser (models/plate_recogniser.onnx) run by onnxruntime at the edge.

A small CNN with CTC output trained by ``python -m models.plate_recogniser`` on GENERATED plate
crops drawn in fonts-wqy-microhei (not the real plate font). Its characters are the CTC blank
and edge.plate_decoding.ALPHABET, so its scores go straight into the plate-constrained decoder.
A missing or corrupt weights file is refused when the reader is built (PlateNetError), never
mid-stream.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from edge.detections import FloatArray, Image
from edge.plate_decoding import ALPHABET

INPUT_HEIGHT = 32
INPUT_WIDTH = 128
BUNDLED_WEIGHTS = Path(__file__).resolve().parent.parent / "models" / "plate_recogniser.onnx"
CHARACTERS = ["blank", *ALPHABET]


class PlateNetError(ValueError):
    """The plate recogniser's weights cannot be used (missing, corrupt, wrong shape)."""


def net_input(crop: Image) -> NDArray[np.float32]:
    """(3, 32, 128) from a BGR crop of any size: resized (stretched), scaled to [-1, 1]."""
    resized = cv2.resize(crop, (INPUT_WIDTH, INPUT_HEIGHT), interpolation=cv2.INTER_AREA)
    return np.asarray(resized.transpose(2, 0, 1), np.float32) / np.float32(127.5) - 1.0


class PlateNet:
    """The recogniser: ``probabilities(crop)`` is (32 time steps, 1 + len(ALPHABET))."""

    characters: list[str]

    def __init__(self, path: Path = BUNDLED_WEIGHTS, threads: int = 1) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped]

        if not path.is_file():
            raise PlateNetError(f"plate recogniser weights not found: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
            listed = self._session.get_modelmeta().custom_metadata_map.get("characters", "")
        except Exception as error:  # onnxruntime raises its own exception types
            raise PlateNetError(f"plate recogniser weights unreadable: {path}: {error}") from error
        characters = listed.split("\n")
        if characters != CHARACTERS:
            raise PlateNetError(
                f"plate recogniser {path} lists other characters than this reader decodes"
            )
        self.characters = characters
        self._input = self._session.get_inputs()[0].name
        probe = self(np.zeros((1, 3, INPUT_HEIGHT, INPUT_WIDTH), np.float32))
        if probe.ndim != 3 or probe.shape[2] != len(CHARACTERS):
            raise PlateNetError(f"plate recogniser {path} outputs shape {probe.shape}")

    def __call__(self, batch: FloatArray) -> FloatArray:
        """(N, 3, 32, 128) in, (N, 32, characters) probabilities out."""
        return np.asarray(self._session.run(None, {self._input: batch})[0], dtype=np.float32)

    def probabilities(self, crop: Image) -> FloatArray:
        result: FloatArray = self(net_input(crop)[None])[0]
        return result


__all__ = ["BUNDLED_WEIGHTS", "CHARACTERS", "PlateNet", "PlateNetError", "net_input"]
