"""Reading a plate's characters: the best path through the CTC scores that spells a plate.

Instead of the recogniser's greedy decoding, a Viterbi search keeps only plate-shaped paths
(contracts.events.PLATE_PATTERN): province, issuing-office letter, then 5 or 6 letters/digits
(the last of 5 may be 挂学警港澳领); 使 and 6 digits; WJ, an optional province and 5. A
double-row plate is read row by row: ``HEAD`` (province and letter, or WJ and a province) above,
``TAIL`` (5 characters) below.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from contracts.events import PLATE_PATTERN
from edge.detections import FloatArray
from edge.plate_confidence import ReadingFeatures

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼使领"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # plates never use I or O
DIGITS = "0123456789"
ALNUM = LETTERS + DIGITS
LAST_ONLY = "挂学警港澳领"  # trailer, learner, police, Hong Kong, Macau, consulate: last only

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

PLATE_RE = re.compile(PLATE_PATTERN)


@dataclass(frozen=True, slots=True)
class PlateCandidate:
    """One reading of one plate image: its text, overall confidence and per-character scores."""

    text: str
    confidence: float
    char_confidences: tuple[float, ...] = ()
    score: float = 0.0  # the raw score the reader calibrates (edge.plate_confidence.raw_score)
    features: ReadingFeatures | None = None  # what the confidence was computed from (a vehicle's)
    rivals: tuple[float, ...] = ()  # each character's best other allowed character's score
    opinion: tuple[str, float] | None = None  # the plate net's reading and weakest char, if run

    @property
    def valid(self) -> bool:
        return PLATE_RE.match(self.text) is not None


@dataclass(frozen=True, slots=True)
class Layout:
    """The states of plate paths: one row per character slot, each with its allowed characters.

    Row 0 is the start (nothing emitted yet); each other row is entered from one predecessor, so
    the paths form a tree whose final rows end a plate.
    """

    alphabet: str  # the union of plate characters; column j of the emission matrix is alphabet[j]
    allowed: NDArray[np.bool_]  # (rows, len(alphabet))
    predecessor: NDArray[np.int64]  # (rows,) the row a row is entered from; -1 for the start
    finals: tuple[int, ...]
    shortest: int  # the fewest characters a path spells


ALPHABET = "".join(dict.fromkeys(PROVINCES + ALNUM + LAST_ONLY))


def build_layout(paths: Sequence[Sequence[str]]) -> Layout:
    """The tree of ``paths``, each a list of slots (the characters allowed there).

    Paths sharing their first slots share those rows; a path's last slot is a final row.
    """
    slots: list[str] = [""]
    predecessor: list[int] = [-1]
    rows: dict[tuple[str, ...], int] = {(): 0}
    finals: list[int] = []
    for path in paths:
        for depth in range(1, len(path) + 1):
            key = tuple(path[:depth])
            if key not in rows:
                rows[key] = len(slots)
                slots.append(path[depth - 1])
                predecessor.append(rows[key[:-1]])
        finals.append(rows[tuple(path)])
    allowed = np.array([[char in slot for char in ALPHABET] for slot in slots], dtype=np.bool_)
    return Layout(
        ALPHABET,
        allowed,
        np.array(predecessor, dtype=np.int64),
        tuple(dict.fromkeys(finals)),
        min(len(path) for path in paths),
    )


_ORDINARY = [PROVINCES, LETTERS, ALNUM, ALNUM, ALNUM, ALNUM]
PLATE_LAYOUT = build_layout(
    [
        [*_ORDINARY, ALNUM + LAST_ONLY],  # 7 characters
        [*_ORDINARY, ALNUM, ALNUM],  # 8: new energy
        ["使", *[DIGITS] * 6],  # embassy
        ["W", "J", PROVINCES, DIGITS, DIGITS, DIGITS, DIGITS, ALNUM],  # armed police
        ["W", "J", DIGITS, DIGITS, DIGITS, DIGITS, ALNUM],  # armed police headquarters
    ]
)
"""A whole plate on one row (or a double-row plate's rows side by side)."""
HEAD_LAYOUT = build_layout([[PROVINCES, LETTERS], ["W", "J", PROVINCES], ["W", "J"]])
"""A double-row plate's top row: province and letter, or WJ and maybe a province."""
TAIL_LAYOUT = build_layout([[ALNUM, ALNUM, ALNUM, ALNUM, ALNUM + LAST_ONLY]])
"""A double-row plate's bottom row: 5 letters/digits, the last maybe 挂学警港澳领."""
WJ_PROVINCE_LAYOUT = build_layout([["W", "J", PROVINCES, DIGITS, DIGITS, DIGITS, DIGITS, ALNUM]])
"""An armed-police plate with its province: a bare WJ reading's scores read again this way show
how strong a province glyph the bare reading passed over (edge.plates.province_glyph)."""
WJ_PROVINCE_HEAD = build_layout([["W", "J", PROVINCES]])
"""The same for a double-row plate's top row."""


_NEG = np.float32(-1e9)


class PlateDecoder:
    """Best plate-shaped path through a CTC score matrix (time steps x recogniser characters)."""

    def __init__(self, characters: Sequence[str], blank_index: int = 0) -> None:
        layout = PLATE_LAYOUT
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

    def decode(
        self, probabilities: FloatArray, layout: Layout = PLATE_LAYOUT
    ) -> PlateCandidate | None:
        """The most likely path of ``layout``; None when the matrix is too short to hold one."""
        chars, gap = self.scores(probabilities)
        return decode_plate_scores(chars, gap, layout)


def decode_plate_scores(
    chars: FloatArray, gap: FloatArray, layout: Layout = PLATE_LAYOUT
) -> PlateCandidate | None:
    """Viterbi over plate-shaped CTC paths.

    ``chars`` is (T, len(ALPHABET)) probabilities, ``gap`` (T,) the blank/separator
    probability. A repeated character needs a gap between its two copies, as CTC requires.
    """
    steps = len(chars)
    if steps < layout.shortest:
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
    first_rows = layout.predecessor == 0
    in_gap[0] = log_gap[0]
    in_char[first_rows] = log_chars[0][None, :] + emit_mask[first_rows]
    # Backpointers: for in_gap, came from the gap (-1) or char j; for in_char, stayed (-2),
    # entered from the predecessor's gap (-1) or from the predecessor's char j.
    gap_from = np.full((steps, rows), -1, dtype=np.int64)
    char_from = np.full((steps, rows, width), -1, dtype=np.int64)
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
    layout: Layout,
) -> PlateCandidate:
    """Walk the backpointers; each character's confidence is its best score over its frames.

    Each character's rival is the best score another character allowed in its slot has over
    the same frames (a province read 0.8 with the right one at 0.15 beside it is less sure).
    """
    emitted: list[tuple[int, float, float]] = []  # (char, confidence, rival), last first
    current_peak = 0.0
    current_rival = 0.0
    for t in range(len(chars) - 1, -1, -1):
        if char == -1:  # in the gap after slot `row`
            origin = int(gap_from[t, row])
            if origin >= 0:
                char = origin
            continue
        current_peak = max(current_peak, float(chars[t, char]))
        others = np.where(layout.allowed[row], chars[t], 0.0)
        others[char] = 0.0
        current_rival = max(current_rival, float(others.max()))
        origin = int(char_from[t, row, char])
        if origin == -2:
            continue
        emitted.append((char, current_peak, current_rival))
        current_peak = current_rival = 0.0
        row = int(layout.predecessor[row])
        char = origin  # -1: the predecessor's gap
    emitted.reverse()
    text = "".join(layout.alphabet[j] for j, _, _ in emitted)
    confidences = tuple(round(c, 4) for _, c, _ in emitted)
    rivals = tuple(round(r, 4) for _, _, r in emitted)
    return PlateCandidate(text, _overall(confidences), confidences, rivals=rivals)


def _overall(confidences: Sequence[float]) -> float:
    return float(np.mean(confidences)) if confidences else 0.0
