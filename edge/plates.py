"""Chinese plate reading: find the plate on a vehicle, read it constrained to the format, vote.

The recogniser is RapidOCR's PP-OCRv4 text recogniser (its model ships inside the
rapidocr-onnxruntime wheel, so nothing is downloaded). Its CTC output gives a score for every
character at every time step; instead of its greedy decoding we search for the best path that
spells a valid plate: province, issuing-office letter, then 5 or 6 letters/digits.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from contracts.events import PLATE_PATTERN, BoundingBox, PlateReading
from edge.config import PlateSettings, ReadPass
from edge.detections import FloatArray, Image, box_iou

log = logging.getLogger(__name__)

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼使领"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # plates never use I or O
DIGITS = "0123456789"
ALNUM = LETTERS + DIGITS
LAST_ONLY = "挂学警港澳"  # trailer, learner, police, Hong Kong, Macau: last position only

# Characters the recogniser emits that are not plate characters but mean one: their scores are
# added to the plate character's.
CONFUSABLES: dict[str, str] = {letter.lower(): letter for letter in LETTERS} | {
    "O": "0",
    "o": "0",
    "I": "1",
    "i": "1",
    "l": "1",
    "|": "1",
}
# What the recogniser prints between characters: the plate's dot, spaces, dashes. Scored as a gap.
SEPARATORS = "·•.-_ ：:"

_PLATE_RE = re.compile(PLATE_PATTERN)
_REC_HEIGHT = 48  # PP-OCRv4 recogniser input height
REC_MODEL_FILE = "ch_PP-OCRv4_rec_infer.onnx"  # inside the rapidocr-onnxruntime wheel


@dataclass(frozen=True, slots=True)
class PlateCandidate:
    """One reading of one plate image: its text, overall confidence and per-character scores."""

    text: str
    confidence: float
    char_confidences: tuple[float, ...] = ()

    @property
    def valid(self) -> bool:
        return _PLATE_RE.match(self.text) is not None


# --------------------------------------------------------------------------------------------
# Constrained CTC decoding


@dataclass(frozen=True, slots=True)
class _Layout:
    """The states of the plate path: one row per character slot, each with its allowed chars.

    Row 0 is the start (nothing emitted yet). Slots 1..6 are shared by 7- and 8-character
    plates; the 7th character is either the last (row 7) or a middle one (row 8, then row 9 last).
    """

    alphabet: str  # the union of plate characters; column j of the emission matrix is alphabet[j]
    allowed: NDArray[np.bool_]  # (rows, len(alphabet))
    predecessor: NDArray[np.int64]  # (rows,) the row a row is entered from; -1 for the start
    finals: tuple[int, ...]


def _build_layout() -> _Layout:
    alphabet = PROVINCES + ALNUM + LAST_ONLY
    slots = [
        "",  # start
        PROVINCES,
        LETTERS,
        ALNUM,
        ALNUM,
        ALNUM,
        ALNUM,
        ALNUM + LAST_ONLY,  # row 7: last of a 7-character plate
        ALNUM,  # row 8: 7th of an 8-character plate
        ALNUM + LAST_ONLY,  # row 9: last of an 8-character plate
    ]
    allowed = np.array([[char in slot for char in alphabet] for slot in slots], dtype=np.bool_)
    predecessor = np.array([-1, 0, 1, 2, 3, 4, 5, 6, 6, 8], dtype=np.int64)
    return _Layout(alphabet, allowed, predecessor, finals=(7, 9))


_LAYOUT = _build_layout()
_NEG = np.float32(-1e9)


class PlateDecoder:
    """Best plate-shaped path through a CTC score matrix (time steps x recogniser characters)."""

    def __init__(self, characters: Sequence[str], blank_index: int = 0) -> None:
        layout = _LAYOUT
        index = {char: i for i, char in enumerate(characters)}
        missing = [c for c in layout.alphabet if c not in index]
        if missing:
            raise ValueError(f"the recogniser cannot emit plate characters {''.join(missing)!r}")
        # sources[j]: the recogniser columns whose scores add up to plate character j.
        sources: list[list[int]] = [[index[c]] for c in layout.alphabet]
        position = {c: j for j, c in enumerate(layout.alphabet)}
        for other, target in CONFUSABLES.items():
            if other in index and other != target:
                sources[position[target]].append(index[other])
        gap = [blank_index] + [index[c] for c in SEPARATORS if c in index]
        width = max(len(s) for s in sources)
        # Ragged lists padded with their own first column; the mask zeroes the padding.
        self._columns = np.array([s + [s[0]] * (width - len(s)) for s in sources], dtype=np.int64)
        self._column_mask = np.array(
            [[k < len(s) for k in range(width)] for s in sources], dtype=np.float32
        )
        self._gap_columns = np.array(gap, dtype=np.int64)
        self.characters = list(characters)

    def scores(self, probabilities: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(T, plate chars) merged character scores and (T,) gap scores, as probabilities."""
        if probabilities.ndim != 2 or probabilities.shape[1] != len(self.characters):
            raise ValueError(
                f"scores must be (time steps, {len(self.characters)}), got {probabilities.shape}"
            )
        chars = (probabilities[:, self._columns] * self._column_mask).sum(axis=2)
        gap = probabilities[:, self._gap_columns].sum(axis=1)
        return chars.astype(np.float32), gap.astype(np.float32)

    def decode(self, probabilities: FloatArray) -> PlateCandidate | None:
        """The most likely plate; None when the matrix is too short to hold one."""
        chars, gap = self.scores(probabilities)
        return decode_plate_scores(chars, gap)


def decode_plate_scores(chars: FloatArray, gap: FloatArray) -> PlateCandidate | None:
    """Viterbi over plate-shaped CTC paths.

    ``chars`` is (T, len(_LAYOUT.alphabet)) probabilities, ``gap`` (T,) the blank/separator
    probability. A repeated character needs a gap between its two copies, as CTC requires.
    """
    layout = _LAYOUT
    steps = len(chars)
    if steps < 7:
        return None
    log_chars = np.log(np.clip(chars, 1e-12, None))
    log_gap = np.log(np.clip(gap, 1e-12, None))
    rows, width = layout.allowed.shape
    emit_mask = np.where(layout.allowed, np.float32(0.0), _NEG)  # (rows, width)
    has_pred = layout.predecessor >= 0
    pred = np.where(has_pred, layout.predecessor, 0)
    columns = np.arange(width)

    # in_gap[r]: best path that emitted slot r's char (or nothing, r=0) and now sits in a gap.
    # in_char[r, j]: best path currently emitting char j in slot r.
    in_gap = np.full(rows, _NEG, dtype=np.float32)
    in_char = np.full((rows, width), _NEG, dtype=np.float32)
    in_gap[0] = log_gap[0]
    in_char[1] = log_chars[0] + emit_mask[1]
    # Backpointers: for in_gap, came from the gap (-1) or char j; for in_char, stayed (-2),
    # entered from the predecessor's gap (-1) or from the predecessor's char j.
    gap_from = np.full((steps, rows), -1, dtype=np.int64)
    char_from = np.full((steps, rows, width), -1, dtype=np.int64)
    char_from[0, 1] = -1
    for t in range(1, steps):
        best_char = in_char.argmax(axis=1)
        best_char_score = in_char[np.arange(rows), best_char]
        from_char = best_char_score > in_gap
        new_gap = np.where(from_char, best_char_score, in_gap) + log_gap[t]
        gap_from[t] = np.where(from_char, best_char, -1)

        # Entering slot r with char j: from the predecessor's gap, or its best char other than j.
        prev_chars = in_char[pred]  # (rows, width)
        top2 = np.argsort(prev_chars, axis=1)[:, -2:]
        first, second = top2[:, 1], top2[:, 0]
        other = np.where(columns[None, :] == first[:, None], second[:, None], first[:, None])
        other_score = np.take_along_axis(prev_chars, other, axis=1)
        prev_gap = in_gap[pred][:, None]
        enter_from_char = other_score > prev_gap
        enter_score = np.where(enter_from_char, other_score, prev_gap)
        enter_score = np.where(has_pred[:, None], enter_score, _NEG)
        stay = in_char >= enter_score
        new_char = np.maximum(in_char, enter_score) + log_chars[t][None, :] + emit_mask
        char_from[t] = np.where(stay, -2, np.where(enter_from_char, other, -1))
        in_gap, in_char = new_gap, new_char.astype(np.float32)

    # Best final state: a final slot, in its char or in the gap after it.
    best: tuple[float, int, int] = (float(_NEG), -1, -1)  # score, row, char (-1: gap)
    for row in layout.finals:
        j = int(in_char[row].argmax())
        for score, char in ((float(in_gap[row]), -1), (float(in_char[row, j]), j)):
            if score > best[0]:
                best = (score, row, char)
    if best[0] <= float(_NEG) / 2:
        return None
    return _trace(best[1], best[2], gap_from, char_from, chars, layout)


def _trace(
    row: int,
    char: int,
    gap_from: NDArray[np.int64],
    char_from: NDArray[np.int64],
    chars: FloatArray,
    layout: _Layout,
) -> PlateCandidate:
    """Walk the backpointers; each character's confidence is its best score over its frames."""
    emitted: list[tuple[int, float]] = []  # (char, confidence), last first
    current_peak = 0.0
    for t in range(len(chars) - 1, -1, -1):
        if char == -1:  # in the gap after slot `row`
            origin = int(gap_from[t, row])
            if origin >= 0:
                char = origin
            continue
        current_peak = max(current_peak, float(chars[t, char]))
        origin = int(char_from[t, row, char])
        if origin == -2:
            continue
        emitted.append((char, current_peak))
        current_peak = 0.0
        row = int(layout.predecessor[row])
        char = origin  # -1: the predecessor's gap
    emitted.reverse()
    text = "".join(layout.alphabet[j] for j, _ in emitted)
    confidences = tuple(round(c, 4) for _, c in emitted)
    return PlateCandidate(text, _overall(confidences), confidences)


def _overall(confidences: Sequence[float]) -> float:
    return float(np.mean(confidences)) if confidences else 0.0


def _weakest(candidate: PlateCandidate) -> float:
    return min(candidate.char_confidences, default=0.0)


# --------------------------------------------------------------------------------------------
# The reader


def rapidocr_recognizer(threads: int) -> Any:
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
        self._recognizer = rapidocr_recognizer(threads)
        self.characters: list[str] = list(self._recognizer.postprocess_op.character)

    def __call__(self, batch: FloatArray) -> FloatArray:
        return np.asarray(self._recognizer.session(batch)[0], dtype=np.float32)


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


def _as_bgr(image: Image, what: str) -> Image:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"{what}: expected a uint8 image array, got {type(image).__name__}")
    if image.ndim == 2:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what}: expected HxW or HxWx3, got shape {image.shape}")
    if image.shape[0] < 4 or image.shape[1] < 8:
        raise ValueError(f"{what}: image too small to read ({image.shape[1]}x{image.shape[0]})")
    return image


class PlateReader:
    """Reads Chinese plates from plate crops or from vehicles in full frames.

    The recogniser is loaded on construction. One instance may serve every camera of a
    gateway: a lock keeps inference one at a time.
    """

    def __init__(self, settings: PlateSettings) -> None:
        self.settings = settings
        self._recogniser = build_recogniser(settings)
        self._decoder = PlateDecoder(self._recogniser.characters)
        self._lock = threading.Lock()

    def recognise(self, crop: Image, read_pass: ReadPass) -> FloatArray:
        """The recogniser's CTC probabilities (time steps x characters) for one crop."""
        resized = cv2.resize(
            crop, (read_pass.text_width, _REC_HEIGHT), interpolation=cv2.INTER_CUBIC
        )
        batch = np.zeros((1, 3, _REC_HEIGHT, read_pass.input_width), dtype=np.float32)
        # PP-OCR input: CHW scaled to [-1, 1]; padding stays 0 (mid grey), as PP-OCR pads.
        batch[0, :, :, : read_pass.text_width] = resized.transpose(2, 0, 1) / 127.5 - 1.0
        with self._lock:
            probabilities: FloatArray = self._recogniser(batch)[0]
        return probabilities

    def read_plate(self, crop: Image) -> PlateCandidate | None:
        """Read a plate crop; None when no plate reads above min_confidence."""
        crop = _as_bgr(crop, "plate crop")
        best: PlateCandidate | None = None
        for read_pass in self.settings.passes:
            candidate = self._decoder.decode(self.recognise(crop, read_pass))
            if candidate is not None and (best is None or _weakest(candidate) > _weakest(best)):
                best = candidate
            if best is not None and _weakest(best) >= self.settings.retry_below:
                break
        if best is None or best.confidence < self.settings.min_confidence:
            return None
        return best

    def read_vehicle(
        self, frame: Image, vehicle_box: BoundingBox | Sequence[float] | FloatArray
    ) -> PlateCandidate | None:
        """Find the plate on one vehicle of a full frame and read it; None when none reads."""
        frame = _as_bgr(frame, "frame")
        x1, y1, x2, y2 = _box_pixels(vehicle_box, frame.shape[1], frame.shape[0])
        top = y2 - round((y2 - y1) * self.settings.search_lower_share)
        region = frame[top:y2, x1:x2]
        if region.shape[0] < 8 or region.shape[1] < self.settings.min_plate_width:
            return None
        best: PlateCandidate | None = None
        for rx1, ry1, rx2, ry2 in find_plate_regions(region, self.settings)[
            : self.settings.max_candidates
        ]:
            candidate = self.read_plate(region[ry1:ry2, rx1:rx2])
            if candidate is not None and (best is None or candidate.confidence > best.confidence):
                best = candidate
        return best


def _box_pixels(
    box: BoundingBox | Sequence[float] | FloatArray, width: int, height: int
) -> tuple[int, int, int, int]:
    if isinstance(box, BoundingBox):
        values = [box.x1, box.y1, box.x2, box.y2]
    else:
        values = [float(v) for v in box]
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"vehicle box must be 4 finite numbers x1, y1, x2, y2, got {values}")
    x1, y1, x2, y2 = values
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"vehicle box corners must be ordered, got {values}")
    return (
        max(0, int(x1)),
        max(0, int(y1)),
        min(width, math.ceil(x2)),
        min(height, math.ceil(y2)),
    )


# --------------------------------------------------------------------------------------------
# Finding plates: plate colours, dense vertical edges, plate aspect ratio

# OpenCV HSV (H in 0..179): blue ordinary, yellow large/old, green new-energy plates.
_PLATE_HUES: tuple[tuple[int, int], ...] = ((88, 135), (15, 35), (40, 87))


Box = tuple[int, int, int, int]


def find_plate_regions(region: Image, settings: PlateSettings) -> list[Box]:
    """Plate-like boxes (x1, y1, x2, y2) in a vehicle's lower part, most plate-like first.

    Candidates come from plate-coloured blobs and, for dark or washed-out plates, from blobs of
    dense vertical edges (characters); both must have a plate's shape and dense edges inside.
    """
    hsv = cv2.cvtColor(region, cv2.COLOR_BGR2HSV)
    gray = cv2.cvtColor(region, cv2.COLOR_BGR2GRAY)
    strong = (np.abs(cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)) > 60).astype(np.uint8)
    h, w = gray.shape
    # Wide enough to bridge the gaps between characters, of which a plate has 7 or 8.
    bridge = cv2.getStructuringElement(cv2.MORPH_RECT, (max(3, w // 20), max(3, h // 40)))
    masks = [cv2.inRange(hsv, (low, 50, 30), (high, 255, 255)) for low, high in _PLATE_HUES]
    masks.append(strong * 255)
    scored: list[tuple[float, Box]] = []
    for mask in masks:
        closed = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, bridge)
        contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            bx, by, bw, bh = cv2.boundingRect(contour)
            if bw < settings.min_plate_width or bh < 8 or not 2.0 <= bw / bh <= 6.5:
                continue
            fill = cv2.contourArea(contour) / float(bw * bh)
            edge_density = float(strong[by : by + bh, bx : bx + bw].mean())
            if fill < 0.35 or edge_density < 0.08:
                continue
            aspect_fit = 1.0 - min(abs(bw / bh - 3.3) / 3.3, 1.0)
            score = fill * min(edge_density, 0.4) * (0.5 + aspect_fit)
            scored.append((score, (bx, by, bx + bw, by + bh)))
    scored.sort(key=lambda item: item[0], reverse=True)
    kept: list[Box] = []
    for _, box in scored:
        if all(box_iou(box, other) < 0.5 for other in kept):
            kept.append(box)
    return kept


# --------------------------------------------------------------------------------------------
# Voting across frames


@dataclass
class PlateVote:
    """Readings of one vehicle's plate across the frames of one violation.

    best() takes the text with the most confidence-weighted support, then lets the readings that
    differ from it in at most one character vote each position by their character scores, so a
    character misread in the leading text can still be outvoted.
    """

    candidates: list[PlateCandidate] = field(default_factory=list)

    def add(self, candidate: PlateCandidate | None) -> None:
        """Count a frame's reading; None and text that is no plate are ignored."""
        if candidate is not None and candidate.valid:
            self.candidates.append(candidate)

    def __len__(self) -> int:
        return len(self.candidates)

    def best(self) -> PlateReading | None:
        """The voted plate; votes counts the frames that read exactly this text.

        A text assembled position by position that no frame read whole gets the votes of the
        frames it was assembled from.
        """
        if not self.candidates:
            return None
        weight: defaultdict[str, float] = defaultdict(float)
        for candidate in self.candidates:
            weight[candidate.text] += candidate.confidence
        leader = max(weight, key=lambda text: weight[text])
        near = [c for c in self.candidates if _differences(c.text, leader) <= 1]
        text = _vote_positions(near, leader)
        agreeing = [c for c in self.candidates if c.text == text] or near
        confidence = sum(c.confidence for c in agreeing) / len(agreeing)
        return PlateReading(text=text, confidence=round(confidence, 4), votes=len(agreeing))


def _differences(a: str, b: str) -> int:
    """Positions where two texts differ; texts of different length differ everywhere."""
    if len(a) != len(b):
        return max(len(a), len(b))
    return sum(x != y for x, y in zip(a, b, strict=True))


def _vote_positions(near: Sequence[PlateCandidate], leader: str) -> str:
    chars = []
    for position in range(len(leader)):
        tally: defaultdict[str, float] = defaultdict(float)
        for candidate in near:
            scores = candidate.char_confidences
            score = scores[position] if len(scores) == len(leader) else candidate.confidence
            tally[candidate.text[position]] += score
        chars.append(max(tally, key=lambda char: tally[char]))
    text = "".join(chars)
    return text if _PLATE_RE.match(text) else leader


__all__ = [
    "CtcRecogniser",
    "OnnxRuntimeRecogniser",
    "OpenVinoRecogniser",
    "PlateCandidate",
    "PlateDecoder",
    "PlateReader",
    "PlateSettings",
    "PlateVote",
    "ReadPass",
    "build_recogniser",
    "decode_plate_scores",
    "find_plate_regions",
    "rapidocr_recognizer",
]
