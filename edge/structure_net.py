"""A small change-detection network on the detector backbone's stride-8 features of both views.

Input per cell: the two views' 96-channel feature vectors, each scaled to unit length (light
hardly moves their direction), and their absolute difference: 288 channels. Three layers: a
1x1 convolution to 32 channels, a 3x3 one to 32, a 3x3 one to one logit: "new structure here".
About 19,000 weights, trained by ``python -m models.structure_change_net`` on fresh draws from
the development set's sources (models/structure_change_net.py says which). Inference is plain
numpy (no torch at the edge): a 32x32 cell map costs well under a millisecond.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.npyio import NpzFile
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float32]
LAYER_NAMES = ("w1", "b1", "w2", "b2", "w3", "b3")
# The trained weights ship in the repository (73 KB): models/structure_change_net.npz.
BUNDLED_WEIGHTS = Path(__file__).resolve().parent.parent / "models" / "structure_change_net.npz"


def net_input(before: FloatArray, after: FloatArray) -> FloatArray:
    """(288, H, W) from two (96, H, W) feature maps: unit-length vectors and their difference."""
    a = before / np.maximum(np.linalg.norm(before, axis=0, keepdims=True), 1e-6)
    b = after / np.maximum(np.linalg.norm(after, axis=0, keepdims=True), 1e-6)
    return np.concatenate([a, b, np.abs(a - b)], axis=0).astype(np.float32)


def _conv3x3(x: FloatArray, weight: FloatArray, bias: FloatArray) -> FloatArray:
    """'Same' 3x3 convolution; x (C, H, W), weight (O, C, 3, 3)."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    windows = sliding_window_view(padded, (3, 3), axis=(1, 2))  # C, H, W, 3, 3
    out = np.einsum("chwij,ocij->ohw", windows, weight, optimize=True)
    return np.asarray(out + bias[:, None, None], np.float32)


@dataclass(frozen=True, slots=True)
class ChangeNet:
    """The trained weights; `probability` maps two feature maps to a per-cell change chance."""

    w1: FloatArray  # (32, 288)
    b1: FloatArray
    w2: FloatArray  # (32, 32, 3, 3)
    b2: FloatArray
    w3: FloatArray  # (1, 32, 3, 3)
    b3: FloatArray

    @classmethod
    def load(cls, path: Path) -> ChangeNet:
        """Weights saved by models.structure_change_net; ValueError when a layer is missing."""
        try:
            saved = np.load(path, allow_pickle=False)
        except (ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a change net ({exc})") from exc
        if not isinstance(saved, NpzFile):
            raise ValueError(f"{path}: not a change net (one array, not a set of layers)")
        with saved:
            missing = [name for name in LAYER_NAMES if name not in saved]
            if missing:
                raise ValueError(f"{path}: not a change net (no {', '.join(missing)})")
            layers = {name: np.asarray(saved[name], np.float32) for name in LAYER_NAMES}
        net = cls(**layers)
        net._check_shapes(path)
        return net

    def _check_shapes(self, path: Path) -> None:
        hidden = self.w1.shape[0]
        expected = {
            "w1": (hidden, 3 * 96),
            "b1": (hidden,),
            "w2": (hidden, hidden, 3, 3),
            "b2": (hidden,),
            "w3": (1, hidden, 3, 3),
            "b3": (1,),
        }
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(
                    f"{path}: layer {name} is {getattr(self, name).shape}, not {shape}"
                )

    def probability(self, before: FloatArray, after: FloatArray) -> FloatArray:
        """(H, W) in 0..1 from two (96, H, W) backbone feature maps of the same place."""
        x = net_input(before, after)
        channels, height, width = x.shape
        hidden = self.w1 @ x.reshape(channels, -1) + self.b1[:, None]
        hidden = np.maximum(hidden, 0).reshape(-1, height, width).astype(np.float32)
        hidden = np.maximum(_conv3x3(hidden, self.w2, self.b2), 0)
        logit = _conv3x3(hidden, self.w3, self.b3)[0]
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(logit, -30, 30))), np.float32)


def bundled_change_net(path: Path = BUNDLED_WEIGHTS) -> ChangeNet | None:
    """The shipped weights, or None (reason logged): the learned comparison then runs without."""
    try:
        return ChangeNet.load(path)
    except (OSError, ValueError) as exc:
        logger.info("structure watch: no change net: %s", exc)
        return None
