"""A small change-detection network on the detector backbone's stride-8 features of both views.

Input per cell: the two views' 96-channel feature vectors, each scaled to unit length (light
hardly moves their direction), and their absolute difference: 288 channels. Three layers: a
1x1 convolution to 32 channels, a 3x3 one to 32, a 3x3 one to one logit: "new structure here".
About 19,000 weights, trained by ``python -m models.structure_change_net`` on fresh draws from
the development set's sources (models/structure_change_net.py says which). Inference is plain
numpy (no torch at the edge): a 32x32 cell map costs well under a millisecond. From round 14 the
file holds two nets of this shape: round 4's, trained on the dev clips' street ground, and
`varied`, trained on the dev looks' varied grounds as well (``--recipe round14``);
edge.structure_features.net_chance reads both.
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
# Round 14: a second net of the same shape, trained on varied ground as well
# (``--recipe round14``), may ship in the same file, its layers named with this prefix.
VARIED_PREFIX = "varied_"
# The trained weights ship in the repository (146 KB, two nets): models/structure_change_net.npz.
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
    varied: ChangeNet | None = None  # round 14: the net trained on varied ground too

    @classmethod
    def load(cls, path: Path) -> ChangeNet:
        """Weights saved by models.structure_change_net, with the varied-ground net when the
        file holds its layers too; ValueError when a layer is missing."""
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
            varied_names = [VARIED_PREFIX + name for name in LAYER_NAMES]
            varied = None
            if any(name in saved for name in varied_names):
                missing = [name for name in varied_names if name not in saved]
                if missing:
                    raise ValueError(f"{path}: not a change net (no {', '.join(missing)})")
                varied = cls._of(saved, VARIED_PREFIX)
                varied._check_shapes(path)
            net = cls._of(saved, "", varied)
        net._check_shapes(path)
        return net

    @classmethod
    def _of(cls, saved: NpzFile, prefix: str, varied: ChangeNet | None = None) -> ChangeNet:
        def layer(name: str) -> FloatArray:
            return np.asarray(saved[prefix + name], np.float32)

        return cls(
            layer("w1"), layer("b1"), layer("w2"), layer("b2"), layer("w3"), layer("b3"), varied
        )

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
