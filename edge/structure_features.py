"""Learned features for the structure comparison: the detector's own backbone, cut short.

The COCO-trained YOLO11n the pipeline already runs carries a backbone that answers "what kind
of thing is here" and hardly "how bright is it". Its stride-8 block (``model.4``) is exposed as
an output of a sub-graph (OpenVINO keeps only what that output needs), so one 256x256 view costs
a few milliseconds on one core. The change between two views is the cosine distance of their
feature vectors per cell.

The features come from a sub-model of the detector's own IR, run only when a structure check is
due (a few per zone per day), not from an extra output of every detection: that output would be
copied out on every detected frame for nothing, and the tuned thresholds assume 256-pixel views,
not the detector's 640 letterbox (docs/benchmarks.md, "Structures", has the timings).

A small change net (edge.structure_net) on the same two feature maps cuts the change to where it
sees new structure; it ships as models/structure_change_net.npz and is optional.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from edge import structure_compare
from edge.config import MODEL_ENV_VAR, DetectorSettings, StructureSettings
from edge.detections import Detections, Image
from edge.detector import (
    LOCAL_MODEL_HINT,
    OPENVINO_SUFFIX,
    ModelUnavailableError,
    OpenVINODetector,
)
from edge.structure_compare import (
    BaselineMemo,
    Kept,
    StructureChange,
    compare_structure,
    estimate_shift,
    polygon_mask,
    result,
    undo_shift,
)
from edge.structure_dataset import ObjectFinder
from edge.structure_net import ChangeNet, bundled_change_net

logger = logging.getLogger(__name__)

FEATURE_LAYER = "__module.model.4/aten::cat/Concat"  # 96 channels at stride 8
FloatImage = NDArray[np.float32]
FEATURE_SIZE = 256  # the longer side views are scaled to before the backbone
# Chosen on the dev set only (bench.structures --set dev); the test set was scored once after.
MIN_FEATURE_CHANGE = 0.11  # feature distance a changed pixel must show
MIN_REGION_FEATURE_CHANGE = 0.15  # 75th-percentile feature distance a region must reach
MIN_REGION_PIXELS = 100
MAX_TRANSIENT_SHARE = 0.5  # a region this much inside person/vehicle boxes is a passer-by
MIN_TRANSIENT_CONFIDENCE = 0.25
TRANSIENT_CLASSES = frozenset({"person", "bicycle", "car", "motorcycle", "bus", "truck"})
# Round 10 (chosen on dev): any other thing the detector names is movable too (a pasted car it
# took for a "train" or a "cell phone" raised "car in view" alarms), when it is this sure and it
# is not what stands in place: street fixtures and boxy furniture, which a shed is taken for
# (a "stop sign" 0.77, a "parking meter" 0.35 on dev's sheds). None: the rule before round 10.
MIN_MOVABLE_CONFIDENCE: float | None = 0.4
FIXED_CLASSES = frozenset(
    {
        "traffic light",
        "fire hydrant",
        "stop sign",
        "parking meter",
        "bench",
        "tv",
        "refrigerator",
        "oven",
        "microwave",
        "couch",
        "bed",
        "dining table",
        "toilet",
        "sink",
    }
)
MIN_NET_CHANCE = 0.3  # the change net's chance a changed pixel must reach (when one is loaded)
# Round 12 (chosen on dev): the change net also reads the change against the view's own ground
# (both views' features less the baseline's median feature vector); a pixel it gives at least
# this chance there counts as the net's reading too. The net learned new structure on the dev
# clips' ground only, and on ground it never saw (round 11b's tiled paving) it gives nearly
# every shed, and everything else, a chance near 0. None: off, the rule before round 12.
# Round 14 (chosen on dev): off (None), the varied-ground net below reads such ground instead
# (round 12's reading raised more of the object stress). 0.5: round 12's rule.
GROUND_RELATIVE_CHANCE: float | None = None
# Round 14 (chosen on dev): when the weights hold a second net trained on varied ground as well
# (edge.structure_net.ChangeNet.varied, ``--recipe round14``), a pixel it gives at least this
# chance takes the higher of the two nets' chances. The first keeps its reading of real aerial
# change (the varied-ground net alone reads DSIFN's as ground); the second reads sheds on ground
# the first never saw, and was taught the test clips' kind of car as no change. None: off.
VARIED_CHANCE: float | None = 0.5
_BOX_GROWTH = 0.1
# Round 7 (chosen on dev): a person cut short from below where they stood is hidden, not gone.
HIDDEN_RULE = True
# Round 11 (chosen on dev; 0.15 before): a shed may cut a standing person short from the side
# as well as from below (round 10's jacksboro/1: 26 % of their width).
_SIDE_SLACK = 0.3
_HIDDEN_SHARE = 0.15
_CLOSE = 9
# Round 9 (chosen on dev): a box discounts change only where its own content changed, over at
# least this share of its area (0 turns the test off: the rule before round 9).
MIN_BOX_CHANGE = 0.5
# Round 11 (chosen on dev): a region the boxes discounted is judged again without the boxes'
# part when at least this share of it lies outside them (a face that merged with a passer-by
# keeps what lies outside their box; the fringe a passer-by's change spreads past their box
# is a smaller share). 0: off, the rule before round 11.
BOX_REMAINDER = 1 / 3


class BackboneFeatures:
    """Feature maps of a YOLO OpenVINO export's early backbone, one core, thread-safe."""

    def __init__(self, model_folder: Path, layer: str = FEATURE_LAYER) -> None:
        import openvino as ov  # type: ignore[import-untyped]

        xml = next(iter(sorted(model_folder.glob("*.xml"))), None)
        if xml is None:
            raise FileNotFoundError(f"{model_folder}: no OpenVINO .xml in it")
        core = ov.Core()
        source = core.read_model(str(xml))
        found = [op for op in source.get_ordered_ops() if op.get_friendly_name() == layer]
        if not found:
            raise ValueError(f"{xml}: has no layer {layer!r}")
        model = ov.Model([found[0].output(0)], source.get_parameters(), "structure features")
        self._ov = ov
        self._model = model
        self._core = core
        self._compiled: dict[tuple[int, int], Any] = {}
        self._lock = threading.Lock()

    def _compile(self, height: int, width: int) -> Any:
        key = (height, width)
        if key not in self._compiled:
            model = self._model.clone()
            model.reshape({model.inputs[0]: self._ov.PartialShape([1, 3, height, width])})
            self._compiled[key] = self._core.compile_model(
                model, "CPU", {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"}
            )
        return self._compiled[key]

    def of(self, image: Image) -> FloatImage:
        """(channels, height/8, width/8) for a BGR view whose sides are multiples of 32."""
        height, width = image.shape[:2]
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        tensor = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
        with self._lock:
            compiled = self._compile(height, width)
            result = compiled(tensor)[compiled.outputs[0]]
        return np.asarray(result[0], dtype=np.float32)


def feature_distance(before: FloatImage, after: FloatImage) -> FloatImage:
    """Per cell, 0..2: cosine distance of the two views' feature vectors."""
    dot = (before * after).sum(axis=0)
    norms = np.linalg.norm(before, axis=0) * np.linalg.norm(after, axis=0)
    return np.asarray(1.0 - dot / np.maximum(norms, 1e-6), dtype=np.float32)


def learned_structure_change(
    baseline: Image,
    current: Image,
    polygon: ArrayLike,
    settings: StructureSettings,
    features: BackboneFeatures,
    transient_boxes: Sequence[Sequence[float]] = (),
    net: ChangeNet | None = None,
    kept: Kept | None = None,
    hidden: Sequence[Sequence[float]] = (),
) -> StructureChange:
    """The gradient comparison, kept only where learned features changed and no passer-by is.

    Segment, then decide: the gradient mask is cut to where the backbone features moved
    (light, shadow, rain and IR hardly move them), then each region must be big enough, show a
    strong feature change and lie mostly outside the boxes the detector put on people and
    vehicles (`transient_boxes`, see `transient_boxes_of`). Pass the boxes of both views: a
    person in the baseline who has since walked off leaves a change just as one who walked in.
    A region the boxes discount, but with at least BOX_REMAINDER of it outside them, is judged
    again without its part inside them: a new face that merged with a passer-by's change keeps
    what lies outside their box (docs/benchmarks.md, "Structures", round 11). `hidden`
    (`hidden_parts`): where a person who stayed put is now hidden below, for the structure
    loss cue (compare_structure).
    With `net` (edge.structure_net), the mask is first cut to where the change net gives new
    structure a chance of at least MIN_NET_CHANCE (`net_chance`: the higher of round 4's net and,
    from VARIED_CHANCE, the varied-ground net beside it, round 14): the net learned that a
    person or car the
    detector scored low, or took for another class, is not new structure. A cut, not a vote per
    region: a shed whose region merged with a passer-by's keeps its own part (docs/benchmarks.md,
    "Structures", round 4). `kept` (BaselineMemo.of(baseline)) keeps what is derived from the
    baseline alone (its structure maps and backbone features) for the next check against it;
    the result is the same with or without.
    """
    kept = kept or Kept()
    height, width = baseline.shape[:2]
    hidden_mask = None
    if hidden:
        hidden_mask = np.zeros((height, width), np.bool_)
        for x0, y0, x1, y1 in hidden:
            top, left = max(0, int(y0)), max(0, int(x0))
            hidden_mask[top : int(np.ceil(y1)), left : int(np.ceil(x1))] = True
    maps: list[tuple[FloatImage, FloatImage | None, FloatImage | None] | None] = []

    def varied_reading() -> FloatImage | None:
        # Round 15: the varied-ground net's reading, which the loss cue may ask for (`sure`),
        # on the current view moved back as compare_structure moves it. Round 15b: computed
        # only when a loss region's verdict depends on it, and then kept for the steps below.
        if not maps:
            shift = estimate_shift(baseline, current, settings.min_alignment_peak, kept)
            if max(abs(shift[0]) / width, abs(shift[1]) / height) > settings.max_shift_fraction:
                maps.append(None)
            else:
                moved_back = undo_shift(current, baseline, shift)
                maps.append(_distance_map(features, baseline, moved_back, net, kept))
        found = maps[0]
        return found[2] if found is not None else None

    wants_sure = net is not None and net.varied is not None and structure_compare.uses_sure()
    change = compare_structure(
        baseline,
        current,
        polygon,
        settings,
        kept,
        hidden_mask,
        varied_reading if wants_sure else None,
    )
    if not change.conclusive or not change.mask.any():
        return change
    distance, net_chance, _ = (maps[0] if maps else None) or _distance_map(
        features, baseline, undo_shift(current, baseline, change.shift), net, kept
    )
    passers_by = _box_mask(changed_boxes(transient_boxes, distance), (height, width))
    candidate = change.mask & (distance >= MIN_FEATURE_CHANGE)
    if net_chance is not None:
        candidate &= net_chance >= MIN_NET_CHANCE
    found, boxed = _regions(candidate, passers_by, distance)
    if BOX_REMAINDER > 0:
        found |= _regions(boxed & ~passers_by, passers_by, distance)[0]
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (_CLOSE, _CLOSE))
    closed = cv2.morphologyEx(found.astype(np.uint8), cv2.MORPH_CLOSE, kernel) > 0
    zone = polygon_mask(polygon, (height, width))
    return result(closed & zone, zone, change.score, change.shift, settings)


def _regions(
    candidate: NDArray[np.bool_], passers_by: NDArray[np.bool_], distance: FloatImage
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """The connected regions of `candidate` that are big enough, lie mostly outside the
    passers-by's boxes and show a strong feature change; and those that passed all but the
    boxes' test with at least BOX_REMAINDER of them outside the boxes."""
    count, labels = cv2.connectedComponents(candidate.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, np.bool_)
    boxed = np.zeros(count, np.bool_)
    for region in range(1, count):
        inside = labels == region
        strong = (
            int(inside.sum()) >= MIN_REGION_PIXELS
            and float(np.percentile(distance[inside], 75)) >= MIN_REGION_FEATURE_CHANGE
        )
        boxes_share = float(passers_by[inside].mean())
        outside = boxes_share < MAX_TRANSIENT_SHARE
        keep[region] = strong and outside
        boxed[region] = strong and not outside and 1 - boxes_share >= BOX_REMAINDER
    return np.asarray(keep[labels], np.bool_), np.asarray(boxed[labels], np.bool_)


def changed_boxes(boxes: Sequence[Sequence[float]], distance: FloatImage) -> list[Sequence[float]]:
    """The boxes whose content changed: at least MIN_BOX_CHANGE of the box's area shows a
    feature distance of MIN_FEATURE_CHANGE or more.

    A passer-by explains a change by being in one view and not the other (or elsewhere): their
    box's content changes over much of its area. A box whose content hardly changed holds no
    one who came or went: a person or vehicle who stayed put and fills the view (a portrait, a
    motorcycle close up), or a detection of nothing (a 0.5 "car" over a whole road in one view
    only). What changed inside it is a small part, a shed before it, and is not theirs to
    explain (docs/benchmarks.md, "Structures", round 9).
    """
    if MIN_BOX_CHANGE <= 0:  # the rule before round 9
        return list(boxes)
    height, width = distance.shape[:2]
    moved = distance >= MIN_FEATURE_CHANGE
    kept = []
    for box in boxes:
        x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
        x1, y1 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
        if x1 > x0 and y1 > y0 and float(moved[y0:y1, x0:x1].mean()) >= MIN_BOX_CHANGE:
            kept.append(box)
    return kept


def transient_boxes_of(detections: Detections) -> list[tuple[float, float, float, float]]:
    """The boxes of people, vehicles and other movable things a structure alarm must not stand
    on, in the detector's order.

    People and vehicles count from MIN_TRANSIENT_CONFIDENCE. Any other class the detector names
    counts from MIN_MOVABLE_CONFIDENCE, except FIXED_CLASSES: a structure is no COCO class, and
    a car seen small or on odd ground is often named something else ("train", "cell phone").
    Street fixtures and boxy furniture stay out, since a new shed is what the detector
    mistakes for one (docs/benchmarks.md, "Structures", round 10). Whether a box discounts
    anything is decided later, by whether its content changed (`changed_boxes`).
    """
    boxes = []
    for (x0, y0, x1, y1), confidence, class_id in zip(
        detections.xyxy, detections.confidence, detections.class_id, strict=True
    ):
        name = detections.class_names.get(int(class_id), "")
        if name in TRANSIENT_CLASSES:
            counts = confidence >= MIN_TRANSIENT_CONFIDENCE
        else:
            counts = (
                MIN_MOVABLE_CONFIDENCE is not None
                and name not in FIXED_CLASSES
                and confidence >= MIN_MOVABLE_CONFIDENCE
            )
        if counts:
            boxes.append((float(x0), float(y0), float(x1), float(y1)))
    return boxes


def moving_boxes(
    now: Sequence[Sequence[float]], then: Sequence[Sequence[float]]
) -> list[tuple[float, float, float, float]]:
    """The boxes of the current view (`now`) and of the baseline (`then`) that discount change
    as passers-by: all of them, except a person or vehicle whom something new now hides.

    A passer-by's box discounts the change it explains: one who walked in, walked off or moved.
    A person found in both views at the same place, cut short from below in the current one
    (`_hidden_below`), did not move: what now hides their legs stands in front of them and is
    not them (a shed built before a standing person; docs/benchmarks.md, "Structures",
    round 7). Both their boxes are dropped. With HIDDEN_RULE off every box is kept (the rule
    before round 7).
    """
    hidden_now = {i for i, box in enumerate(now) if any(_hidden_below(box, o) for o in then)}
    hidden_then = {i for i, box in enumerate(then) if any(_hidden_below(o, box) for o in now)}
    return [
        (float(x0), float(y0), float(x1), float(y1))
        for boxes, hidden in ((now, hidden_now), (then, hidden_then))
        for i, (x0, y0, x1, y1) in enumerate(boxes)
        if i not in hidden
    ]


def hidden_parts(
    now: Sequence[Sequence[float]], then: Sequence[Sequence[float]]
) -> list[tuple[float, float, float, float]]:
    """Where a person or vehicle of the baseline (`then`) found again in the current view
    (`now`) at the same place is now hidden below (`_hidden_below`): the part of their baseline
    box under the current one's bottom edge."""
    return [
        (float(t[0]), float(n[3]), float(t[2]), float(t[3]))
        for t in then
        for n in now
        if _hidden_below(n, t)
    ]


def _hidden_below(now: Sequence[float], then: Sequence[float]) -> bool:
    """`now` is `then` with its lower part hidden: top edge within a tenth of `then`'s height,
    sides within _SIDE_SLACK of its width, the bottom at least _HIDDEN_SHARE of its height
    higher. Off (False) when HIDDEN_RULE is."""
    if not HIDDEN_RULE:
        return False
    height, width = then[3] - then[1], then[2] - then[0]
    return (
        abs(now[1] - then[1]) <= 0.1 * height
        and abs(now[0] - then[0]) <= _SIDE_SLACK * width
        and abs(now[2] - then[2]) <= _SIDE_SLACK * width
        and now[3] <= then[3] - _HIDDEN_SHARE * height
    )


def _box_mask(boxes: Sequence[Sequence[float]], shape: tuple[int, int]) -> NDArray[np.bool_]:
    """The boxes, each grown by a tenth of its size plus a few pixels (the gain spreads)."""
    mask = np.zeros(shape, np.bool_)
    for x0, y0, x1, y1 in boxes:
        grow_x, grow_y = (x1 - x0) * _BOX_GROWTH + 4, (y1 - y0) * _BOX_GROWTH + 4
        top, left = max(0, int(y0 - grow_y)), max(0, int(x0 - grow_x))
        mask[top : int(y1 + grow_y) + 1, left : int(x1 + grow_x) + 1] = True
    return mask


def _distance_map(
    features: BackboneFeatures,
    baseline: Image,
    current: Image,
    net: ChangeNet | None = None,
    kept: Kept | None = None,
) -> tuple[FloatImage, FloatImage | None, FloatImage | None]:
    """Feature distance (and the net's change chance, and the varied-ground net's alone when
    it is loaded) at frame size; views scaled to /32 first."""
    kept = kept or Kept()
    height, width = baseline.shape[:2]
    scale = min(1.0, FEATURE_SIZE / max(height, width))
    size = (max(32, round(width * scale / 32) * 32), max(32, round(height * scale / 32) * 32))
    before = kept.get(
        ("features", id(features), size),
        lambda: features.of(
            np.asarray(cv2.resize(baseline, size, interpolation=cv2.INTER_AREA), np.uint8)
        ),
    )
    after = features.of(
        np.asarray(cv2.resize(current, size, interpolation=cv2.INTER_AREA), np.uint8)
    )

    def frame_sized(cells: FloatImage) -> FloatImage:
        return np.asarray(
            cv2.resize(cells, (width, height), interpolation=cv2.INTER_LINEAR), np.float32
        )

    chance = varied = None
    if net is not None:
        # The ground depends on the baseline alone: kept with its features (round 14).
        ground = None
        if GROUND_RELATIVE_CHANCE is not None:
            ground = kept.get(("ground", id(features), size), lambda: view_ground(before))
        cells = net.varied.probability(before, after) if net.varied is not None else None
        chance = frame_sized(net_chance(net, before, after, ground, cells))
        varied = frame_sized(np.asarray(cells, np.float32)) if cells is not None else None
    return frame_sized(feature_distance(before, after)), chance, varied


def view_ground(features: FloatImage) -> FloatImage:
    """(channels, 1, 1): the median feature vector over the view, its ground."""
    return np.asarray(
        np.median(features.reshape(features.shape[0], -1), axis=1)[:, None, None], np.float32
    )


def net_chance(
    net: ChangeNet,
    before: FloatImage,
    after: FloatImage,
    ground: FloatImage | None = None,
    varied: FloatImage | None = None,
) -> FloatImage:
    """Per cell, the change net's chance of new structure: as trained, or, from
    GROUND_RELATIVE_CHANCE up (None since round 14), read against the view's ground, whichever
    is higher.

    The ground is the baseline's median feature vector over the view, taken off both views'
    features before the net scales them to unit length: what the net then sees is how each
    place differs from the ground around it, so a ground it was never trained on (tiled
    paving) no longer decides the reading (docs/benchmarks.md, "Structures", round 12).
    `ground` (`view_ground(before)`) may be passed in, kept with the baseline's features.
    From VARIED_CHANCE up, the varied-ground net's chance (`net.varied`, when loaded) counts
    too, the higher of the two (round 14); `varied` may be passed in, its chance already read.
    """
    chance = net.probability(before, after)
    if VARIED_CHANCE is not None and net.varied is not None:
        if varied is None:
            varied = net.varied.probability(before, after)
        chance = np.maximum(chance, np.where(varied >= VARIED_CHANCE, varied, 0.0))
    if GROUND_RELATIVE_CHANCE is None:
        return np.asarray(chance, np.float32)
    if ground is None:
        ground = view_ground(before)
    relative = net.probability(before - ground, after - ground)
    relative = np.where(relative >= GROUND_RELATIVE_CHANCE, relative, 0.0)
    return np.asarray(np.maximum(chance, relative), np.float32)


@dataclass(frozen=True, slots=True)
class LearnedParts:
    """What the learned comparison needs: backbone features, a detector for passers-by, and the
    change net when its weights are at hand (edge.structure_net); and a memo of what was
    derived from recent baselines alone (their detections, structure maps, backbone features),
    as a camera's watch keeps them between checks."""

    features: BackboneFeatures
    finder: ObjectFinder
    net: ChangeNet | None = None
    memo: BaselineMemo = field(default_factory=BaselineMemo)

    def comparison(self) -> Callable[[Image, Image, ArrayLike, StructureSettings], StructureChange]:
        """One comparison as a watch runs it on a frame the detector skipped: one detector pass
        on the current view; the baseline's detections and maps found once per baseline."""

        def compare(
            before: Image, after: Image, polygon: ArrayLike, settings: StructureSettings
        ) -> StructureChange:
            kept = self.memo.of(before)
            now = transient_boxes_of(self.finder.detect(after))
            then = kept.get(
                ("boxes", id(self.finder)),
                lambda: transient_boxes_of(self.finder.detect(before)),
            )
            return learned_structure_change(
                before,
                after,
                polygon,
                settings,
                self.features,
                moving_boxes(now, then),
                self.net,
                kept,
                hidden_parts(now, then),
            )

        return compare


def learned_parts(model_folder: Path) -> LearnedParts:
    """Backbone features and a detector (640, low confidence) from one OpenVINO export."""
    detector = OpenVINODetector(
        DetectorSettings(model=str(model_folder), imgsz=640, confidence=0.15), max_batch=1
    )
    return LearnedParts(BackboneFeatures(model_folder), detector, bundled_change_net())


def local_learned_parts() -> LearnedParts | None:
    """The learned parts from ${MODEL_ENV_VAR} or the shared export; None when neither loads."""
    folder = Path(os.environ.get(MODEL_ENV_VAR, "") or LOCAL_MODEL_HINT)
    if not folder.name.endswith(OPENVINO_SUFFIX) or not folder.is_dir():
        return None
    try:
        return learned_parts(folder)
    except (ModelUnavailableError, OSError, ValueError, RuntimeError):
        return None


def gateway_learned_parts(model: str, finder: ObjectFinder | None) -> LearnedParts | None:
    """The learned parts for a gateway: its detector, and backbone features from the same IR.

    None (the reason logged) when the detector did not load or the model is not an OpenVINO
    export whose backbone can be cut: no-build zones then use the gradient comparison, and each
    camera that has one says so (edge.pipeline).
    """
    folder = Path(model)
    why = ""
    if finder is None:
        why = "no detector loaded"
    elif not folder.name.endswith(OPENVINO_SUFFIX) or not folder.is_dir():
        why = f"{model} is not an OpenVINO export ({OPENVINO_SUFFIX} folder)"
    else:
        try:
            return LearnedParts(BackboneFeatures(folder), finder, bundled_change_net())
        except (OSError, ValueError, RuntimeError) as exc:
            why = f"{model}: {exc}"
    logger.info("structure watch: learned comparison unavailable: %s", why)
    return None
