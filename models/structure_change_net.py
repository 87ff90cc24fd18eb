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
That is ``--recipe round4``, the default: it gives the shipped weights. Round 5 tried harder
negatives (``--recipe round5-negatives``), from the same views with a second seeded draw:

- per view two more still pairs, 0.5-2 s and 8-20 s apart (traffic moved less or further),
  and those with 1-3 people or cars pasted in;
- people and cars (those found at >= 0.1 too, which the detector is unsure of) pasted at any
  size, 8-55 % of the view, alone or up to three at a time, into either view or over the shed;

and ``--recipe round5`` adds GENERATED new things of no set's shape (random polygons faced
with the dev texture, with a soft shadow) as positives. ``--difference-only`` trains on
|a - b| alone (the two views' own vectors zeroed). None of these won on dev; the shipped weights
are round 4's (docs/benchmarks.md, "Structures", round 5).

``--recipe round14`` (rounds 13 and 14's try: docs/benchmarks.md, "Structures", round 14) adds,
after round 4's samples, `--ground-views` views of each ground the dev looks are made on
(`look_grounds`: round 7's grass and gravel, round 8's moon, ihc and coins photos, the rendered
elevations, MRI slice, face tiles, paving, blobs and EEG plaid), each view GENERATED: a textured
and a smooth shed (dev texture) as positives, the built view under four controls, the before
view under every control, people and cars pasted into either view or over the shed, and round
5's harder negatives there (1-3 of them at any size, the unsure ones too). The people and cars
are the dev clips' and, for the cars, the test clips' at odd eighths (frames round 11's look,
now dev, cut its cars at; no fresh look cuts there): the kind of car the looks paste.

    OMP_NUM_THREADS=1 .venv/bin/python -m models.structure_change_net [--out FILE.npz]
        [--recipe round4|round5|round5-negatives|round14] [--ground-views 1]
        [--difference-only] [--pos-weight 3] [--epochs 60] [--add-to BASE.npz]

Round 14's shipped file is round 4's net with round 14's beside it (its varied-ground net,
``edge.structure_net.ChangeNet.varied``): ``--recipe round14 --epochs 40 --add-to
models/structure_change_net.npz`` (round 4's weights as they shipped before round 14).

The last stdout line is a JSON summary (samples, epochs, training and validation loss).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import cv2
import numpy as np

from edge.detections import BoolArray, Image
from edge.detector import LOCAL_MODEL_HINT
from edge.structure_controls import (
    ObjectCrop,
    every_control,
    no_change_controls,
    paste_object,
    paste_scaled,
)
from edge.structure_dataset import (
    CLIP_SPLIT,
    ROUND7_GROUND_PHOTOS,
    ROUND8_GROUND_PHOTOS,
    ROUND10_GROUNDS,
    ROUND11_EIGHTHS,
    ROUND11_GROUNDS,
    ROUND12_GROUNDS,
    SIZE,
    ObjectFinder,
    composite_shed,
    elevation_ground,
    paving_ground,
    read_source_image,
    round11_ground,
    round12_ground,
    skimage_data,
    smooth_shed,
)
from edge.structure_features import BackboneFeatures, learned_parts
from edge.structure_net import LAYER_NAMES, VARIED_PREFIX, net_input

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
DEFAULT_OUT = ROOT / "models" / "structure_change_net.npz"
SEED = 20261204
VIEWS_PER_CLIP = 8
CELL = 8
Recipe = Literal["round4", "round5", "round5-negatives", "round14"]


def _frame(capture: cv2.VideoCapture, index: int) -> Image:
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = capture.read()
    if not ok:
        raise ValueError(f"could not read frame {index}")
    return np.asarray(frame, np.uint8)


def _crops(
    clips: list[Path],
    finder: ObjectFinder,
    min_confidence: float = 0.3,
    at: tuple[int, ...] = (1, 3, 5, 7, 9, 11),
    parts: int = 12,
    max_confidence: float = 1.01,
) -> list[ObjectCrop]:
    """People and cars the detector finds at `min_confidence` to `max_confidence` in the
    frames `at` `parts`-ths of each clip."""
    found: list[ObjectCrop] = []
    for clip in clips:
        capture = cv2.VideoCapture(str(clip))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        for part in at:
            frame = _frame(capture, part * count // parts)
            seen = finder.detect(frame)
            for box, confidence, class_id in zip(
                seen.xyxy, seen.confidence, seen.class_id, strict=True
            ):
                kind = seen.class_names.get(int(class_id), "")
                kind = "car" if kind in ("car", "truck", "bus") else kind
                x0, y0, x1, y1 = np.round(box).astype(int)
                if (
                    kind in ("person", "car")
                    and min_confidence <= confidence < max_confidence
                    and min(x1 - x0, y1 - y0) >= 16
                ):
                    found.append(ObjectCrop(kind, frame[y0:y1, x0:x1].copy()))
        capture.release()
    return found


def _pasted(image: Image, crop: ObjectCrop, rng: np.random.Generator) -> tuple[Image, BoolArray]:
    out = paste_object(image, crop, rng)
    return out, np.abs(out.astype(np.int16) - image.astype(np.int16)).max(axis=2) > 0


def _pasted_at_scale(
    image: Image, crop: ObjectCrop, rng: np.random.Generator
) -> tuple[Image, BoolArray]:
    """The crop pasted at a seeded place and a size anywhere from far off to close by (its
    longer side 8-55 % of the view's), edges feathered; also where it went."""
    height, width = image.shape[:2]
    scale = rng.uniform(0.08, 0.55) * min(height, width) / max(crop.image.shape[:2])
    pasted, covered = paste_scaled(image, crop.image, scale, rng)
    where = np.zeros((height, width), np.bool_)
    where[covered] = True
    return pasted, where


@dataclass(frozen=True, slots=True)
class View:
    before: Image
    after: Image  # a still pair's later frame: people and cars moved, nothing built
    built: Image  # the later frame with a GENERATED shed
    truth: BoolArray
    more_still: list[Image]  # later frames at other gaps (round 5's harder negatives)


def _views(
    clip: Path,
    texture: Image,
    rng: np.random.Generator,
    extra_gaps: tuple[tuple[float, float], ...],
) -> list[View]:
    """Per view from the middle third: before, a still after 3-8 s on, a built one, the truth,
    and still afters at `extra_gaps` (seconds) on."""
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

        def crop(frame: Image, x: int = x, y: int = y, side: int = side) -> Image:
            part = frame[y : y + side, x : x + side]
            return np.asarray(
                cv2.resize(part, (SIZE, SIZE), interpolation=cv2.INTER_AREA), np.uint8
            )

        before, after = crop(before_frame), crop(after_frame)
        built, truth = composite_shed(after, texture, rng)
        more = [
            crop(_frame(capture, min(count - 1, first + max(1, round(fps * rng.uniform(*gap))))))
            for gap in extra_gaps
        ]
        views.append(View(before, after, built, truth, more))
    capture.release()
    return views


Add = Callable[[Image, Image, BoolArray, int], None]


def _harder_negatives(
    add: Add,
    view: View,
    pool: list[ObjectCrop],
    texture: Image,
    rng: np.random.Generator,
    group: int,
    new_things: bool,
) -> None:
    """Round 5: still pairs at other gaps (traffic moved further or less), and people and cars
    at many sizes, the ones the detector is unsure of among them, alone or a few at a time."""
    nothing = np.zeros_like(view.truth)

    def with_objects(image: Image, count: int) -> tuple[Image, BoolArray]:
        where = np.zeros_like(view.truth)
        for pick in rng.choice(len(pool), size=count, replace=False):
            image, placed = _pasted_at_scale(image, pool[int(pick)], rng)
            where |= placed
        return image, where

    for still in view.more_still:
        add(view.before, still, nothing, group)
        add(view.before, with_objects(still, int(rng.integers(1, 4)))[0], nothing, group)
    add(view.before, with_objects(view.after, int(rng.integers(1, 4)))[0], nothing, group)
    add(view.before, with_objects(view.before, 1)[0], nothing, group)
    add(view.before, with_objects(view.before, 3)[0], nothing, group)
    add(with_objects(view.before, 2)[0], view.after, nothing, group)
    built, where = with_objects(view.built, 2)
    add(view.before, built, view.truth & ~where, group)
    if new_things:
        for base in (view.after, view.before):
            made, truth = _new_thing(base, texture, rng)
            add(view.before, made, truth, group)
        made, truth = _new_thing(view.after, texture, rng)
        made, where = with_objects(made, 1)
        add(view.before, made, truth & ~where, group)


def _new_thing(image: Image, texture: Image, rng: np.random.Generator) -> tuple[Image, BoolArray]:
    """GENERATED: a rigid new thing of no set's shape (a random polygon, 12-40 % of the view
    across, faced with a window of real texture, with a soft shadow): new structure need not
    look like the sheds, while new people and cars are never structure."""
    height, width = image.shape[:2]
    across = rng.uniform(0.12, 0.4) * width
    centre = rng.uniform(0.15, 0.85, 2) * (width, height)
    corners = int(rng.integers(4, 8))
    angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
    radii = across / 2 * rng.uniform(0.6, 1.0, corners)
    polygon = centre + np.stack([np.cos(angles), np.sin(angles)], 1) * radii[:, None]
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    tex_height, tex_width = texture.shape[:2]
    side = int(min(tex_height, tex_width) * rng.uniform(0.15, 0.5))
    x = int(rng.integers(0, tex_width - side + 1))
    y = int(rng.integers(0, tex_height - side + 1))
    patch = cv2.resize(texture[y : y + side, x : x + side], (width, height)).astype(np.float32)
    patch *= rng.uniform(0.7, 1.3, 3)
    shadow = np.roll(mask, (int(across * 0.1), int(across * 0.2)), axis=(0, 1)).astype(np.float32)
    shadow = np.asarray(cv2.GaussianBlur(shadow, (0, 0), 2.0), np.float32)
    out = image.astype(np.float32) * (1 - 0.4 * shadow[..., None])
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.7)[..., None]
    out = out * (1 - soft) + np.clip(patch, 0, 255) * soft
    return np.asarray(np.clip(out, 0, 255), np.uint8), mask > 0


def look_grounds() -> list[tuple[str, Image]]:
    """The grounds the dev looks are made on (rounds 7, 8, 10, 11, 11b and 12; all seen), by
    their own renderers: (name, BGR image at least SIZE on its shorter side)."""
    grounds = [(name, read_source_image(skimage_data() / name)) for name in ROUND7_GROUND_PHOTOS]
    grounds += [(name, read_source_image(skimage_data() / name)) for name in ROUND8_GROUND_PHOTOS]
    grounds += [(name, elevation_ground(name)) for name in ROUND10_GROUNDS]
    grounds += [(name, round11_ground(name)) for name in ROUND11_GROUNDS]
    grounds.append(("paving", paving_ground()))
    grounds += [(name, round12_ground(name)) for name in ROUND12_GROUNDS]
    return grounds


def _ground_view(ground: Image, rng: np.random.Generator) -> Image:
    """A seeded square of 50-90 % of the ground's shorter side, at SIZE x SIZE."""
    height, width = ground.shape[:2]
    side = round(min(height, width) * rng.uniform(0.5, 0.9))
    x = int(rng.integers(0, width - side + 1))
    y = int(rng.integers(0, height - side + 1))
    part = ground[y : y + side, x : x + side]
    return np.asarray(cv2.resize(part, (SIZE, SIZE), interpolation=cv2.INTER_AREA), np.uint8)


def _ground_samples(
    add: Add,
    grounds: list[tuple[str, Image]],
    views: int,
    objects: list[ObjectCrop],
    pool: list[ObjectCrop],
    texture: Image,
    rng: np.random.Generator,
    group: int,
) -> int:
    """Round 14: per ground view (GENERATED), a textured and a smooth shed as positives, the
    built view under four controls (truth the shed), the before view under every control, an
    object moved, pasted into either view or over the built one (truth the shed less it), and
    round 5's harder negatives (`pool`: 1-3 people and cars at any size). The next group."""
    nothing = np.zeros((SIZE, SIZE), np.bool_)

    def with_objects(image: Image, count: int) -> tuple[Image, BoolArray]:
        where = np.zeros((SIZE, SIZE), np.bool_)
        for pick in rng.choice(len(pool), size=count, replace=False):
            image, placed = _pasted_at_scale(image, pool[int(pick)], rng)
            where |= placed
        return image, where

    for _, ground in grounds:
        for _ in range(views):
            empty = _ground_view(ground, rng)
            crops = [objects[int(i)] for i in rng.choice(len(objects), size=4, replace=False)]
            before = _pasted(empty, crops[0], rng)[0]
            after = _pasted(empty, crops[0], rng)[0]  # the same object, elsewhere: moved
            built, truth = composite_shed(before, texture, rng)
            smooth, smooth_truth = smooth_shed(before, rng)
            seed = SEED + 14000 + group
            add(before, after, nothing, group)
            add(before, built, truth, group)
            add(before, smooth, smooth_truth, group)
            for _, altered in [no_change_controls(built, seed)[i] for i in (0, 2, 4, 5)]:
                add(before, altered, truth, group)
            for _, control in every_control(before, seed):
                add(before, control, nothing, group)
            add(before, _pasted(before, crops[1], rng)[0], nothing, group)
            add(_pasted(before, crops[2], rng)[0], before, nothing, group)
            pasted, where = _pasted(built, crops[3], rng)
            add(before, pasted, truth & ~where, group)
            add(before, with_objects(before, int(rng.integers(1, 4)))[0], nothing, group)
            add(before, with_objects(after, int(rng.integers(1, 4)))[0], nothing, group)
            add(with_objects(before, 2)[0], before, nothing, group)
            built_over, where = with_objects(built, 2)
            add(before, built_over, truth & ~where, group)
            group += 1
    return group


def build_samples(
    shared_data: Path, model: Path, recipe: Recipe = "round4", ground_views: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs (N, 288, 32, 32), targets (N, 32, 32) and each sample's view index (N,)."""
    parts = learned_parts(model)
    features: BackboneFeatures = parts.features
    clips = [shared_data / "clips" / name for name in CLIP_SPLIT["dev"]]
    rng = np.random.default_rng(SEED)
    objects = _crops(clips, parts.finder)
    hard = recipe in ("round5", "round5-negatives")
    # Round 5: people and cars the detector is unsure of (0.1-0.3), drawn after round 4's draws
    # so that round 4's samples come out the same.
    unsure = _crops(clips, parts.finder, 0.1) if hard else []
    hard_rng = np.random.default_rng(SEED + 5)
    extra_gaps = ((0.5, 2.0), (8.0, 20.0)) if hard else ()
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
        for view in _views(clip, texture, rng, extra_gaps):
            before, after, built, truth = view.before, view.after, view.built, view.truth
            seed = SEED + group
            add(before, after, nothing, group)
            add(before, built, truth, group)
            for _, altered in [no_change_controls(built, seed)[i] for i in (0, 2, 4, 5)]:
                add(before, altered, truth, group)
            for _, control in every_control(before, seed):
                add(before, control, nothing, group)
            picks = rng.choice(len(objects), size=5, replace=False)
            crops = [objects[int(i)] for i in picks]
            pasted, where = _pasted(built, crops[0], rng)
            add(before, pasted, truth & ~where, group)
            for crop in crops[1:3]:
                add(before, _pasted(after, crop, rng)[0], nothing, group)
            add(_pasted(before, crops[3], rng)[0], after, nothing, group)
            add(before, _pasted(before, crops[4], rng)[0], nothing, group)
            if hard:
                _harder_negatives(
                    add, view, objects + unsure, texture, hard_rng, group, recipe == "round5"
                )
            group += 1
    if recipe == "round14":
        test_clips = [shared_data / "clips" / name for name in CLIP_SPLIT["test"]]
        # The test clips' cars at round 11's odd eighths (its look, now dev, cut them there).
        test_cars = [
            c
            for c in _crops(test_clips, parts.finder, 0.3, ROUND11_EIGHTHS, 8)
            if c.class_name == "car"
        ]
        unsure = _crops(clips, parts.finder, 0.1, max_confidence=0.3)
        unsure += [
            c
            for c in _crops(test_clips, parts.finder, 0.1, ROUND11_EIGHTHS, 8, 0.3)
            if c.class_name == "car"
        ]
        ground_rng = np.random.default_rng(SEED + 14)
        _ground_samples(
            add,
            look_grounds(),
            ground_views,
            objects + test_cars,
            objects + test_cars + unsure,
            texture,
            ground_rng,
            group,
        )
    return np.stack(inputs), np.stack(targets), np.asarray(groups)


def train(
    inputs: np.ndarray,
    targets: np.ndarray,
    groups: np.ndarray,
    epochs: int,
    difference_only: bool = False,
    pos_weight: float = 3.0,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Train the net (seeded, one thread); `difference_only` zeroes the two views' own vectors
    so that it sees only |a - b| (the first layer's weights for them are saved as zeros)."""
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
    if difference_only:
        inputs = inputs.copy()
        inputs[:, : 2 * 96] = 0.0
    x = torch.from_numpy(inputs)
    y = torch.from_numpy(targets)[:, None]
    train_index = np.flatnonzero(~validation)
    loss_of = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))
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
    if difference_only:
        weights["w1"][:, : 2 * 96] = 0.0
    assert tuple(weights) == LAYER_NAMES
    return weights, {"train_loss": round(train_loss, 4), "validation_loss": round(val_loss, 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--model", type=Path, default=ROOT / LOCAL_MODEL_HINT)
    parser.add_argument(
        "--recipe",
        choices=get_args(Recipe),
        default="round4",
        help="round4 (the shipped weights); round5: also harder negatives and GENERATED new"
        " things of other shapes; round5-negatives: the harder negatives only (round 5's tries,"
        " not kept: docs/benchmarks.md, Structures, round 5); round14: also the dev looks'"
        " grounds with people, cars and harder negatives (round 14's try)",
    )
    parser.add_argument(
        "--ground-views", type=int, default=1, help="views per look ground (round14)"
    )
    parser.add_argument(
        "--add-to",
        type=Path,
        default=None,
        help="write BASE.npz's layers with the trained net as its varied-ground net (layers"
        " named varied_*: edge.structure_net.ChangeNet.varied), as round 14 ships them",
    )
    parser.add_argument("--difference-only", action="store_true")
    parser.add_argument("--pos-weight", type=float, default=3.0)
    args = parser.parse_args()
    started = time.perf_counter()
    inputs, targets, groups = build_samples(SHARED_DATA, args.model, args.recipe, args.ground_views)
    built_s = time.perf_counter() - started
    weights, losses = train(
        inputs, targets, groups, args.epochs, args.difference_only, args.pos_weight
    )
    arrays: dict[str, Any] = {name: value.astype(np.float32) for name, value in weights.items()}
    if args.add_to is not None:
        with np.load(args.add_to, allow_pickle=False) as base:
            first = {name: np.asarray(base[name], np.float32) for name in LAYER_NAMES}
        arrays = {**first, **{VARIED_PREFIX + name: value for name, value in arrays.items()}}
    np.savez_compressed(args.out, **arrays)
    print(
        json.dumps(
            {
                "samples": len(inputs),
                "views": int(groups.max()) + 1,
                "positive_cells": round(float((targets > 0.5).mean()), 4),
                "recipe": args.recipe,
                "ground_views": args.ground_views if args.recipe == "round14" else None,
                "difference_only": args.difference_only,
                "added_to": str(args.add_to) if args.add_to else None,
                "pos_weight": args.pos_weight,
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
