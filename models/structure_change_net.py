"""Train the structure change net (edge.structure_net) on fresh draws from the dev set's sources.

Training data, built on the fly from ../shared (nothing written but the weights):

- the dev clips only (vtest, intersection-demo1 and -demo2; no DSIFN pair, no test clip), views
  drawn from the *middle third* of each clip, where the dev set (first third) and the third
  held-out look (late stretches) do not draw;
- per view a still pair (real frames 3-8 s apart, truth empty: people and cars moved) and a
  built one (GENERATED: a shed composited as in edge.structure_dataset, dev texture);
- the before view against its own no-change controls (light, blur, noise, shift, shadow, rain,
  night IR), truth empty;
- people and cars the detector finds (confidence >= 0.3) at the clips' odd twelfths (frames no
  set's controls or stress crops come from), pasted into either view: truth empty there.

Per cell of the backbone's stride-8 map the target is the share of the cell the shed covers.
Run from the repository root (a few minutes on one core):

    OMP_NUM_THREADS=1 .venv/bin/python -m models.structure_change_net [--out FILE.npz]

The last stdout line is a JSON summary (samples, epochs, training and validation loss).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.detections import BoolArray, Image
from edge.detector import LOCAL_MODEL_HINT
from edge.structure_controls import ObjectCrop, camera_controls, no_change_controls, paste_object
from edge.structure_dataset import CLIP_SPLIT, SIZE, ObjectFinder, composite_shed
from edge.structure_features import BackboneFeatures, learned_parts
from edge.structure_net import LAYER_NAMES, net_input

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
DEFAULT_OUT = ROOT / "models" / "structure_change_net.npz"
SEED = 20261204
VIEWS_PER_CLIP = 8
CELL = 8


def _frame(capture: cv2.VideoCapture, index: int) -> Image:
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = capture.read()
    if not ok:
        raise ValueError(f"could not read frame {index}")
    return np.asarray(frame, np.uint8)


def _crops(clips: list[Path], finder: ObjectFinder) -> list[ObjectCrop]:
    found: list[ObjectCrop] = []
    for clip in clips:
        capture = cv2.VideoCapture(str(clip))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        for twelfth in (1, 3, 5, 7, 9, 11):
            frame = _frame(capture, twelfth * count // 12)
            seen = finder.detect(frame)
            for box, confidence, class_id in zip(
                seen.xyxy, seen.confidence, seen.class_id, strict=True
            ):
                kind = seen.class_names.get(int(class_id), "")
                kind = "car" if kind in ("car", "truck", "bus") else kind
                x0, y0, x1, y1 = np.round(box).astype(int)
                if kind in ("person", "car") and confidence >= 0.3 and min(x1 - x0, y1 - y0) >= 16:
                    found.append(ObjectCrop(kind, frame[y0:y1, x0:x1].copy()))
        capture.release()
    return found


def _pasted(image: Image, crop: ObjectCrop, rng: np.random.Generator) -> tuple[Image, BoolArray]:
    out = paste_object(image, crop, rng)
    return out, np.abs(out.astype(np.int16) - image.astype(np.int16)).max(axis=2) > 0


View = tuple[Image, Image, Image, BoolArray]


def _views(clip: Path, texture: Image, rng: np.random.Generator) -> list[View]:
    """(before, still after, built after, truth) per view from the middle third."""
    capture = cv2.VideoCapture(str(clip))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    views: list[View] = []
    for _ in range(VIEWS_PER_CLIP):
        first = int(rng.integers(count // 3, 2 * count // 3))
        later = min(count - 1, first + round(fps * rng.uniform(3.0, 8.0)))
        before_frame, after_frame = _frame(capture, first), _frame(capture, later)
        height, width = before_frame.shape[:2]
        side = round(min(height, width) * rng.uniform(0.6, 0.9))
        x = int(rng.integers(0, width - side + 1))
        y = int(rng.integers(0, height - side + 1))
        before, after = (
            np.asarray(
                cv2.resize(
                    f[y : y + side, x : x + side], (SIZE, SIZE), interpolation=cv2.INTER_AREA
                ),
                np.uint8,
            )
            for f in (before_frame, after_frame)
        )
        built, truth = composite_shed(after, texture, rng)
        views.append((before, after, built, truth))
    capture.release()
    return views


def build_samples(shared_data: Path, model: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs (N, 288, 32, 32), targets (N, 32, 32) and each sample's view index (N,)."""
    parts = learned_parts(model)
    features: BackboneFeatures = parts.features
    clips = [shared_data / "clips" / name for name in CLIP_SPLIT["dev"]]
    rng = np.random.default_rng(SEED)
    objects = _crops(clips, parts.finder)
    street = cv2.imread(str(shared_data / "images" / "street.png"))
    if street is None:
        raise FileNotFoundError(f"{shared_data}/images/street.png: missing or unreadable")
    texture = np.asarray(street[: street.shape[0] // 2], np.uint8)  # the dev half
    inputs, targets, groups = [], [], []

    def add(before: Image, after: Image, truth: BoolArray, group: int) -> None:
        inputs.append(net_input(features.of(before), features.of(after)))
        cells = cv2.resize(
            truth.astype(np.float32), (SIZE // CELL, SIZE // CELL), interpolation=cv2.INTER_AREA
        )
        targets.append(cells)
        groups.append(group)

    nothing = np.zeros((SIZE, SIZE), np.bool_)
    group = 0
    for clip in clips:
        for before, after, built, truth in _views(clip, texture, rng):
            seed = SEED + group
            add(before, after, nothing, group)
            add(before, built, truth, group)
            for _, altered in [no_change_controls(built, seed)[i] for i in (0, 2, 4, 5)]:
                add(before, altered, truth, group)
            for _, control in no_change_controls(before, seed) + camera_controls(before, seed):
                add(before, control, nothing, group)
            picks = rng.choice(len(objects), size=5, replace=False)
            crops = [objects[int(i)] for i in picks]
            pasted, where = _pasted(built, crops[0], rng)
            add(before, pasted, truth & ~where, group)
            for crop in crops[1:3]:
                add(before, _pasted(after, crop, rng)[0], nothing, group)
            add(_pasted(before, crops[3], rng)[0], after, nothing, group)
            add(before, _pasted(before, crops[4], rng)[0], nothing, group)
            group += 1
    return np.stack(inputs), np.stack(targets), np.asarray(groups)


def train(
    inputs: np.ndarray, targets: np.ndarray, groups: np.ndarray, epochs: int
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    import torch

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(inputs.shape[1], 32, 1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(32, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(32, 1, 3, padding=1),
    )
    validation = groups % 6 == 5  # every sixth view, all its samples
    x = torch.from_numpy(inputs)
    y = torch.from_numpy(targets)[:, None]
    train_index = np.flatnonzero(~validation)
    loss_of = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(3.0))
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    generator = np.random.default_rng(SEED)
    for _ in range(epochs):
        net.train()
        order = generator.permutation(train_index)
        for start in range(0, len(order), 32):
            batch = order[start : start + 32]
            optimiser.zero_grad()
            loss = loss_of(net(x[batch]), y[batch])
            loss.backward()
            optimiser.step()
    net.eval()
    with torch.no_grad():
        train_loss = float(loss_of(net(x[~validation]), y[~validation]))
        val_loss = float(loss_of(net(x[validation]), y[validation])) if validation.any() else 0.0
    layers = [m for m in net if isinstance(m, torch.nn.Conv2d)]
    weights: dict[str, np.ndarray] = {}
    for index, layer in enumerate(layers, start=1):
        weight = layer.weight.detach().numpy()
        weights[f"w{index}"] = weight[:, :, 0, 0] if index == 1 else weight
        weights[f"b{index}"] = np.asarray([] if layer.bias is None else layer.bias.detach().numpy())
    assert tuple(weights) == LAYER_NAMES
    return weights, {"train_loss": round(train_loss, 4), "validation_loss": round(val_loss, 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--model", type=Path, default=ROOT / LOCAL_MODEL_HINT)
    args = parser.parse_args()
    started = time.perf_counter()
    inputs, targets, groups = build_samples(SHARED_DATA, args.model)
    built_s = time.perf_counter() - started
    weights, losses = train(inputs, targets, groups, args.epochs)
    arrays: dict[str, Any] = {name: value.astype(np.float32) for name, value in weights.items()}
    np.savez_compressed(args.out, **arrays)
    print(
        json.dumps(
            {
                "samples": len(inputs),
                "views": int(groups.max()) + 1,
                "positive_cells": round(float((targets > 0.5).mean()), 4),
                "epochs": args.epochs,
                **losses,
                "build_s": round(built_s, 1),
                "train_s": round(time.perf_counter() - started - built_s, 1),
                "out": str(args.out),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
