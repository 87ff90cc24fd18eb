"""Chinese plate reading: find the plate on a vehicle, read it constrained to the format, vote.

This module is the reader; its parts live beside it: ``plate_regions`` finds plate-like boxes
on a vehicle, ``plate_recognisers`` runs RapidOCR's PP-OCRv4 text recogniser (bundled in its
wheel), ``plate_decoding`` reads only plate-shaped paths from the recogniser's CTC scores, and
``plate_votes`` votes one vehicle's readings across frames. An unsure reading gets a second
look (altered copies of its crop read and voted) and ``plate_confidence``'s model (fitted on dev
scenes, ``plate_confidence_fit``) turns the reading's features into the chance it is right.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from contracts.events import BoundingBox
from contracts.exemptions import DEFAULT_PLATE_CONFIDENCE_FLOOR
from edge.config import PlateSettings, ReadPass
from edge.detections import FloatArray, Image
from edge.plate_colour import PlateColour, plate_colour
from edge.plate_confidence import (
    RED_SUFFIXES,
    ConfidenceModel,
    ReadingFeatures,
    calibrated,
    raw_score,
)
from edge.plate_confidence_fit import FITTED
from edge.plate_decoding import (
    ALPHABET,
    HEAD_LAYOUT,
    LAST_ONLY,
    PLATE_LAYOUT,
    PLATE_RE,
    TAIL_LAYOUT,
    WJ_PROVINCE_HEAD,
    WJ_PROVINCE_LAYOUT,
    Layout,
    PlateCandidate,
    PlateDecoder,
    decode_plate_scores,
)
from edge.plate_net import BUNDLED_WEIGHTS, PlateNet
from edge.plate_recognisers import (
    REC_HEIGHT,
    CtcRecogniser,
    OnnxRuntimeRecogniser,
    OpenVinoRecogniser,
    build_recogniser,
    rapidocr_recogniser,
)
from edge.plate_regions import (
    TEXT_BOXES,
    Quad,
    TextBoxFinder,
    find_plate_regions,
    rectify,
    row_above,
    row_pairs,
)
from edge.plate_votes import PlateVote


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

    def __init__(
        self,
        settings: PlateSettings,
        confidence: ConfidenceModel | None = None,
        near_tie: float | None = None,
        crowded: float | None = None,
    ) -> None:
        self.settings = settings
        self.confidence = FITTED if confidence is None else confidence
        self.near_tie = NEAR_TIE if near_tie is None else near_tie
        self.crowded = CROWDED if crowded is None else crowded
        self._recogniser = build_recogniser(settings)
        self._decoder = PlateDecoder(self._recogniser.characters)
        self._text_boxes = TextBoxFinder(settings.threads)
        self._lock = threading.Lock()
        self._local = threading.local()
        # The plate-trained recogniser: built here, so missing or corrupt weights stop the
        # reader at startup (PlateNetError), never mid-stream.
        self._net: PlateNet | None = None
        if settings.second_opinion != "off":
            weights = settings.second_opinion_weights
            self._net = PlateNet(
                BUNDLED_WEIGHTS if weights is None else Path(weights), settings.threads
            )

    def recognise(self, crop: Image, read_pass: ReadPass) -> FloatArray:
        """The recogniser's CTC probabilities (time steps x characters) for one crop."""
        resized = cv2.resize(
            crop, (read_pass.text_width, REC_HEIGHT), interpolation=cv2.INTER_CUBIC
        )
        batch = np.zeros((1, 3, REC_HEIGHT, read_pass.input_width), dtype=np.float32)
        # PP-OCR input: CHW scaled to [-1, 1]; padding stays 0 (mid grey), as PP-OCR pads.
        batch[0, :, :, : read_pass.text_width] = resized.transpose(2, 0, 1) / 127.5 - 1.0
        with self._lock:
            probabilities: FloatArray = self._recogniser(batch)[0]
        return probabilities

    def read_plate(self, crop: Image) -> PlateCandidate | None:
        """Read a one-row plate crop; None when no plate reads above min_confidence.

        The reading's confidence is calibrated (edge.plate_confidence): the chance it is right.
        A later read pass runs only when the ones before are unsure, and an unsure reading gets
        a second look (``_second_look``).
        """
        crop = _as_bgr(crop, "plate crop")
        reading = self._accept(*self._decode(crop, PLATE_LAYOUT, self.settings.passes))
        if reading is None:
            return None
        return self.settle(self._second_look(reading, (crop,)), (crop,))

    def _decode(
        self, crop: Image, layout: Layout, passes: Sequence[ReadPass]
    ) -> tuple[PlateCandidate | None, bool]:
        """The best raw reading over the read passes, and whether every pass run read that text.

        A later pass runs only while the best reading's weakest character is under
        PASS_SURE: most crops read surely on the first, and the second costs as much again.
        """
        best: PlateCandidate | None = None
        texts: set[str] = set()
        for index, read_pass in enumerate(passes):
            if best is not None and _weakest(best) >= PASS_SURE:
                break
            probabilities = self.recognise(crop, read_pass)
            if index == 0:
                self._remember(crop, read_pass, probabilities)
            candidate = self._decoder.decode(probabilities, layout)
            if candidate is None:
                continue
            texts.add(candidate.text)
            if best is None or _weakest(candidate) > _weakest(best):
                best = candidate
        return best, len(texts) <= 1

    def _accept(self, raw: PlateCandidate | None, agreed: bool) -> PlateCandidate | None:
        if raw is None or raw.confidence < self.settings.min_confidence:
            return None
        score = raw_score(raw.char_confidences, agreed)
        return replace(raw, confidence=calibrated(score), score=score)

    def _second_look(self, reading: PlateCandidate, rows: tuple[Image, ...]) -> PlateCandidate:
        """An unsure reading read again in VIEWS altered copies of its crop (or rows), voted.

        The text whose views' weakest characters sum highest wins; its score is that sum over
        the number of views, so a text every view reads surely scores high and one that the
        views read otherwise scores low (on dev, confident misreads of a province or of 8 as B
        mostly did not survive the altered views). A reading whose raw score is at the
        confidence model's ``look_below`` or more is kept as it is. Either way its confidence is
        the model's chance that it is right (edge.plate_confidence).
        """
        if reading.score >= self.confidence.look_below:
            features = _features(reading, rows, None)
            return replace(
                reading,
                confidence=self._chance(features, reading.text, rows),
                features=features,
            )
        support: defaultdict[str, list[PlateCandidate]] = defaultdict(list)
        read = 0
        for candidate in self._view_readings(rows):
            support[candidate.text].append(candidate)
            read += 1
        if not support:
            features = _features(reading, rows, _Vote(reading.text, 0.0, 0, 0, 0, (), ()))
            return replace(
                reading,
                confidence=self._chance(features, reading.text, rows),
                score=0.0,
                features=features,
            )

        def weight(text: str) -> float:
            return sum(_view_weakest(text, view.char_confidences) for view in support[text])

        ranked = sorted(support, key=weight, reverse=True)
        text = ranked[0]
        score = weight(text) / VIEWS
        views = support[text]
        chars = tuple(round(float(c), 4) for c in np.mean([v.char_confidences for v in views], 0))
        rivals = tuple(round(float(c), 4) for c in np.mean([v.rivals for v in views], 0))
        rival = len(support[ranked[1]]) if len(ranked) > 1 else 0
        vote = _Vote(text, score, len(views), read, rival, chars, rivals)
        features = _features(reading, rows, vote)
        return PlateCandidate(
            text,
            self._chance(features, text, rows),
            chars,
            round(score, 4),
            features,
            rivals=rivals,
        )

    def _chance(self, features: ReadingFeatures, text: str, rows: tuple[Image, ...]) -> float:
        """The confidence model's chance, at most NEAR_TIE_CHANCE for a near tie or a crowded row.

        Near tie: one of the reading's core positions scores at most ``near_tie`` over the best
        other character the plate's format allows there (U or 1, 0 or D or Q, 8 or B in a
        letter-or-digit slot). Crowded: the recogniser saw, in a row, one character more than
        the reading holds, at ``crowded`` or more (``surplus``): the format had no room for it,
        so the decoding folded two characters into one (a U seen as two strokes, 11, read as
        one 1). Either way the reading is not decided, however sure the rest of it is.
        """
        chance = self.confidence.chance(features, text)
        if weakest_margin(text, features.char_scores, features.char_rivals) < self.near_tie:
            return min(chance, NEAR_TIE_CHANCE)
        if self.crowded <= 1.0 and self._surplus(rows, text) >= self.crowded:
            return min(chance, NEAR_TIE_CHANCE)
        return chance

    def _surplus(self, rows: tuple[Image, ...], text: str) -> float:
        """The strongest character a row held beyond the reading's (``surplus``), any row.

        Each row is read again at its first read pass's width (one recogniser run a row).
        """
        if len(rows) == 1:
            parts = [(rows[0], self.settings.passes[0], len(text))]
        else:
            split = len(text) - TAIL_LAYOUT.shortest
            parts = [
                (rows[0], _row_passes(rows[0])[0], split),
                (rows[1], _row_passes(rows[1])[0], TAIL_LAYOUT.shortest),
            ]
        found = 0.0
        for crop, read_pass, length in parts:
            chars, gap = self._decoder.scores(self._first_pass(crop, read_pass))
            found = max(found, surplus(chars, gap, length))
        return found

    def _remember(self, crop: Image, read_pass: ReadPass, probabilities: FloatArray) -> None:
        """Keep a crop's first-pass scores (this thread's last REMEMBERED): ``_surplus`` reads
        the final reading's rows at that pass again, which they always had."""
        remembered = self._remembered()
        remembered[(id(crop), read_pass.text_width, read_pass.input_width)] = (crop, probabilities)
        while len(remembered) > REMEMBERED:
            remembered.popitem(last=False)

    def _remembered(self) -> _Remembered:
        remembered: _Remembered | None = getattr(self._local, "first", None)
        if remembered is None:
            remembered = OrderedDict()
            self._local.first = remembered
        return remembered

    def _first_pass(self, crop: Image, read_pass: ReadPass) -> FloatArray:
        kept = self._remembered().get((id(crop), read_pass.text_width, read_pass.input_width))
        # The crop itself is held there, so its id cannot have been reused by another.
        if kept is not None and kept[0] is crop:
            return kept[1]
        return self.recognise(crop, read_pass)

    def _view_readings(self, rows: tuple[Image, ...]) -> Iterator[PlateCandidate]:
        if len(rows) == 1:
            width = round(float(np.mean([p.text_width for p in self.settings.passes])))
            for image, read_pass in _views(rows[0], width):
                candidate = self._decoder.decode(self.recognise(image, read_pass), PLATE_LAYOUT)
                if candidate is not None:
                    yield candidate
            return
        upper, lower = rows
        upper_views = _views(upper, _row_passes(upper)[0].text_width)
        lower_views = _views(lower, _row_passes(lower)[0].text_width)
        for (upper_image, upper_pass), (lower_image, lower_pass) in zip(
            upper_views, lower_views, strict=True
        ):
            head = self._decoder.decode(self.recognise(upper_image, upper_pass), HEAD_LAYOUT)
            tail = self._decoder.decode(self.recognise(lower_image, lower_pass), TAIL_LAYOUT)
            if head is not None and tail is not None and PLATE_RE.match(head.text + tail.text):
                scores = head.char_confidences + tail.char_confidences
                rivals = head.rivals + tail.rivals
                yield PlateCandidate(
                    head.text + tail.text, float(np.mean(scores)), scores, rivals=rivals
                )

    def read_rows(self, upper: Image, lower: Image) -> PlateCandidate | None:
        """Read a double-row plate from its two rows: province and letter (or WJ) over 5."""
        found = self._read_rows(upper, lower)
        if found is None:
            return None
        return self.settle(self._second_look(*found), found[1])

    def _read_rows(self, upper: Image, lower: Image) -> _Found | None:
        head, head_agreed = self._decode(upper, HEAD_LAYOUT, _row_passes(upper))
        tail, tail_agreed = self._decode(lower, TAIL_LAYOUT, _row_passes(lower))
        if head is None or tail is None or not PLATE_RE.match(head.text + tail.text):
            return None
        scores = head.char_confidences + tail.char_confidences
        joined = PlateCandidate(
            head.text + tail.text, float(np.mean(scores)), scores, rivals=head.rivals + tail.rivals
        )
        reading = self._accept(joined, head_agreed and tail_agreed)
        return None if reading is None else (reading, (upper, lower))

    def _read_text_box(self, crop: Image) -> _Found | None:
        """A text box: one row, or, when it is squarish, a double-row plate's two rows."""
        reading = self._accept(*self._decode(crop, PLATE_LAYOUT, self.settings.passes))
        best: _Found | None = None if reading is None else (reading, (crop,))
        height, width = crop.shape[:2]
        if width / height < DOUBLE_ROW_ASPECT:
            upper = crop[: round(height * 0.42)]
            lower = crop[round(height * 0.34) :]
            best = _better(best, self._read_rows(upper, lower))
        return best

    def read_vehicle(
        self, frame: Image, vehicle_box: BoundingBox | Sequence[float] | FloatArray
    ) -> PlateCandidate | None:
        """Find the plate on one vehicle of a full frame and read it; None when none reads.

        Text lines the text detector finds are read first (each alone, and pairs that may be
        a double-row plate's rows); plate-coloured regions too when none of them reads at
        ``retry_below`` or better; the most confident reading wins, and gets a second look
        when it is unsure.
        """
        frame = _as_bgr(frame, "frame")
        x1, y1, x2, y2 = _box_pixels(vehicle_box, frame.shape[1], frame.shape[0])
        top = y2 - round((y2 - y1) * self.settings.search_lower_share)
        region = frame[top:y2, x1:x2]
        if region.shape[0] < 8 or region.shape[1] < self.settings.min_plate_width:
            return None
        with self._lock:
            quads: list[Quad] = self._text_boxes(region)[:TEXT_BOXES]
        crops = [rectify(region, quad) for quad in quads]
        best: _Found | None = None
        for crop in crops:
            if crop is not None and crop.shape[1] >= self.settings.min_plate_width // 2:
                best = _better(best, self._read_text_box(crop))
        paired = row_pairs(quads)
        for upper, lower in paired:
            upper_crop, lower_crop = crops[upper], crops[lower]
            if upper_crop is not None and lower_crop is not None:
                best = _better(best, self._read_rows(upper_crop, lower_crop))
        # A double-row plate's small top row is often not found at all: look just above a
        # squarish line that no found line sits over.
        has_upper = {lower for _, lower in paired}
        for index, (quad, crop) in enumerate(zip(quads, crops, strict=True)):
            if crop is None or index in has_upper or crop.shape[1] / crop.shape[0] > 3.6:
                continue
            upper_crop = rectify(region, row_above(quad), pad_y=0.0)
            if upper_crop is not None:
                best = _better(best, self._read_rows(upper_crop, crop))
        if best is None or best[0].score < self.settings.retry_below:
            for rx1, ry1, rx2, ry2 in find_plate_regions(region, self.settings)[
                : self.settings.max_candidates
            ]:
                best = _better(best, self._read_text_box(region[ry1:ry2, rx1:rx2]))
        if best is None:
            return None
        found = self._confirm(best)
        return self.settle(self._second_look(*found), found[1])

    def settle(self, reading: PlateCandidate, rows: tuple[Image, ...]) -> PlateCandidate:
        """A looked-at reading's last steps: the plate net's opinion (vote or observe), then
        ``_doubt`` (every mode; last, so a reading the net's agreement lifted is doubted too).

        ``reading`` is the second look's outcome and ``rows`` what it was read from (its crop,
        or a double-row plate's two rows). bench.plates_calibrate ``read`` saves both for every
        dev vehicle and ``score`` runs this again on them, so a rule here is scored offline on
        the same pixels as the live reader reads.
        """
        reading = self._suffix_colour(reading, rows)
        if self._net is not None:
            reading = self._opinion(reading, rows)
        return self._doubt(reading, rows)

    def _suffix_colour(self, reading: PlateCandidate, rows: tuple[Image, ...]) -> PlateCandidate:
        """An undecided reading whose red suffix the plate's colour confirms is decided on its core.

        PP-OCR scores a red suffix (警, 领, 港, 澳) low even when it reads it right, and the second
        look's views often lose it, so such readings mostly sit under the floor with the rest
        of the plate read surely (round 12's dev: most of off's right readings below the floor
        at the model's 0.7131 level were 警 and 领 plates). The plate's colour is evidence the
        reading does not otherwise use: a 警 plate is white, 领, 港 and 澳 plates are black
        (``SUFFIX_COLOURS``; edge.plate_colour). Where the colour the rows show is the suffix's
        and the core's weakest character (province or WJ, letters, digits: not the suffix or
        使) scores ``SUFFIX_CORE_SURE`` or more, the reading is worth ``SUFFIX_COLOUR_CHANCE``.
        A reading from a crop narrower than the confidence model knows (its ``min_width``)
        is left as it is; so is a decided one. The doubt (``_doubt``) still runs after.
        """
        if reading.confidence >= DEFAULT_PLATE_CONFIDENCE_FLOOR or not reading.text:
            return reading
        colour = SUFFIX_COLOURS.get(reading.text[-1])
        if colour is None:
            return reading
        features = reading.features
        if features is not None:
            narrowest = (
                self.confidence.min_width if features.rows == 1 else self.confidence.min_row_width
            )
            if features.width < narrowest:
                return reading
        scores = (
            reading.char_confidences
            if features is None
            else (features.char_scores or reading.char_confidences)
        )
        core = [
            float(score)
            for char, score in zip(reading.text, scores, strict=False)
            if char not in RED_SUFFIXES and char != "使"
        ]
        if not core or min(core) < SUFFIX_CORE_SURE or plate_colour(rows[-1]) != colour:
            return reading
        return replace(reading, confidence=SUFFIX_COLOUR_CHANCE)

    def _doubt(self, reading: PlateCandidate, rows: tuple[Image, ...]) -> PlateCandidate:
        """A decided reading that one of PP-OCR's known sure misreads could explain is not decided.

        Three causes of round 11's dev false reads (docs/benchmarks.md, plates, round 11), and
        one of round 12's (a province read as its own half, ``HALF_GLYPHS``): a
        look-alike digit (``lookalike_digit``: the generated font's Q read as 0, its J as 1)
        read less surely than right ones are, where the plate allows a letter; an armed-police
        plate read with no province (WJ and digits, as real 武警总部 plates are) where its row
        holds a province glyph (``province_glyph``); PP-OCR's favourite province, 皖
        (``FAVOURITE``), read less surely than PP-OCR reads it on real 皖 plates; and 京 where
        its row scores 琼, whose right half 京 is, beside it (``_whole_glyph``). Each is worth
        at most NEAR_TIE_CHANCE then, whatever the net's vote made of it (round 11's dev, vote:
        its agreement had lifted 皖PDJ1047 for 粤PDJ1047 to AGREE_CHANCE). A reading under the
        floor is left as it is.
        """
        if reading.confidence < DEFAULT_PLATE_CONFIDENCE_FLOOR:
            return reading
        scores = (
            reading.char_confidences
            if reading.features is None
            else (reading.features.char_scores or reading.char_confidences)
        )
        doubted = (
            lookalike_digit(reading.text, scores) < LOOKALIKE_SURE
            or (reading.text[:1] == FAVOURITE and float(scores[0]) < FAVOURITE_SURE)
            or (bare_wj(reading.text) and self._province_glyph(rows) >= PROVINCE_GLYPH)
            or self._whole_glyph(reading.text, rows) >= WHOLE_GLYPH
        )
        return replace(reading, confidence=NEAR_TIE_CHANCE) if doubted else reading

    def _whole_glyph(self, text: str, rows: tuple[Image, ...]) -> float:
        """How strongly a reading's province could be the half of another (``HALF_GLYPHS``: 京
        is 琼's right half): that other province's score around the step where the row's first
        read pass (remembered) scores the read province highest; 0 for any other province."""
        whole = HALF_GLYPHS.get(text[:1])
        if whole is None:
            return 0.0
        read_pass = self.settings.passes[0] if len(rows) == 1 else _row_passes(rows[0])[0]
        chars, _ = self._decoder.scores(self._first_pass(rows[0], read_pass))
        if len(chars) == 0:
            return 0.0
        peak = int(np.argmax(chars[:, ALPHABET.index(text[0])]))
        return float(chars[max(0, peak - 1) : peak + 2, ALPHABET.index(whole)].max())

    def _province_glyph(self, rows: tuple[Image, ...]) -> float:
        """``province_glyph`` of a bare WJ reading's row (the top row of a double-row plate),
        on that row's first read pass (already run: remembered)."""
        if len(rows) == 1:
            chars, gap = self._decoder.scores(self._first_pass(rows[0], self.settings.passes[0]))
            return province_glyph(chars, gap, WJ_PROVINCE_LAYOUT)
        chars, gap = self._decoder.scores(self._first_pass(rows[0], _row_passes(rows[0])[0]))
        return province_glyph(chars, gap, WJ_PROVINCE_HEAD)

    def net_reading(self, rows: tuple[Image, ...]) -> PlateCandidate | None:
        """The plate net's plate-constrained reading of a crop, or of a double-row plate's rows."""
        if self._net is None:
            return None
        if len(rows) == 1:
            return decode_plate_scores(*_net_scores(self._net, rows[0]), PLATE_LAYOUT)
        head = decode_plate_scores(*_net_scores(self._net, rows[0]), HEAD_LAYOUT)
        tail = decode_plate_scores(*_net_scores(self._net, rows[1]), TAIL_LAYOUT)
        if head is None or tail is None or not PLATE_RE.match(head.text + tail.text):
            return None
        scores = head.char_confidences + tail.char_confidences
        return PlateCandidate(head.text + tail.text, float(np.mean(scores)), scores)

    def _opinion(self, reading: PlateCandidate, rows: tuple[Image, ...]) -> PlateCandidate:
        """The plate net's reading recorded on PP-OCR's (observe), or voted with it (vote).

        Vote: where the net reads the same text and is sure of it (its weakest character
        OPINION_SURE or more), the reading's confidence rises to AGREE_CHANCE if it was lower:
        the share of such dev readings that were right (Wilson lower bound); a near tie of
        PP-OCR's too (round 10: the net breaks it; before, a near tie stayed undecided). Where
        PP-OCR's reading is undecided (under the floor) and the net, its weakest character
        SUFFIX_SURE or more, reads the same plate but for the last character, which it reads as
        a red suffix (``red_suffix``: 挂学警港澳领), the net's suffix is taken, worth
        SUFFIX_CHANCE (round 10). Where the sure net reads the same plate but for a letter where
        PP-OCR read a digit (``letter_for_digit``), the reading is not decided (at most
        NEAR_TIE_CHANCE; round 9). No other character of the net's is ever taken: on dev,
        lowering a decided reading the net read otherwise (rounds 5 and 8: a veto on a province
        or a red glyph too) cost more right readings than it saved, and taking the net's text
        (round 5) was right too seldom to be decided on. Round 9b's net took provinces and red
        suffixes 27 of 27 right on dev (at weakest 0.7), but on the held-out seed 15 its
        provinces were 0 of 3 right (3 false reads) and on the 300 real crops it rewrote 11
        right 皖 plates to other provinces (99.0 % to 95.3 %): provinces are never taken
        (docs/benchmarks.md, plates, rounds 5-10).
        """
        net = self.net_reading(rows)
        if net is None:
            return replace(reading, opinion=("", 0.0))
        weakest = round(_weakest(net), 4)
        reading = replace(reading, opinion=(net.text, weakest))
        if self.settings.second_opinion != "vote":
            return reading
        if weakest >= OPINION_SURE and net.text == reading.text:
            return replace(reading, confidence=max(reading.confidence, AGREE_CHANCE))
        if (
            weakest >= SUFFIX_SURE
            and reading.confidence < DEFAULT_PLATE_CONFIDENCE_FLOOR
            and red_suffix(reading.text, net.text)
        ):
            # An undecided reading the sure net reads the same but for a red suffix last: the
            # net's suffix, worth SUFFIX_CHANCE (round 10; round 9b's dev: 浙Y46855 for 浙Y4685领).
            return replace(
                reading,
                text=net.text,
                confidence=max(reading.confidence, SUFFIX_CHANCE),
                char_confidences=(*reading.char_confidences[:-1], net.char_confidences[-1]),
            )
        if weakest >= OPINION_SURE and letter_for_digit(reading.text, net.text):
            # A sure net that reads a letter where PP-OCR read a digit (the rest the same): the
            # reading is not decided (round 9: dev's 青N06Z6J, decided as 青N06Z61).
            return replace(reading, confidence=min(reading.confidence, NEAR_TIE_CHANCE))
        return reading

    def _confirm(self, found: _Found) -> _Found:
        """A sure reading may rest on the first read pass alone: the later passes read it too.

        Run once per vehicle, on its best reading, rather than on every line read; on dev one
        new-energy plate read surely at the first pass's width lost a character, and only the
        second pass saw it.
        """
        reading, rows = found
        if _weakest(reading) < PASS_SURE:
            return found  # the later passes ran already
        if len(rows) == 1:
            checks = [(rows[0], PLATE_LAYOUT, self.settings.passes[1:], reading.text)]
        else:
            split = len(reading.text) - TAIL_LAYOUT.shortest  # the bottom row: 5 characters
            checks = [
                (rows[0], HEAD_LAYOUT, _row_passes(rows[0])[1:], reading.text[:split]),
                (rows[1], TAIL_LAYOUT, _row_passes(rows[1])[1:], reading.text[split:]),
            ]
        for crop, layout, passes, text in checks:
            for read_pass in passes:
                other = self._decoder.decode(self.recognise(crop, read_pass), layout)
                if other is not None and other.text != text:
                    score = raw_score(reading.char_confidences, agreed=False)
                    return replace(reading, confidence=calibrated(score), score=score), rows
        return found


@dataclass(frozen=True, slots=True)
class _Vote:
    """A second look's outcome: the winning text, its score and how many views read what."""

    text: str
    score: float
    agreeing: int
    read: int
    rival: int
    chars: tuple[float, ...]
    rivals: tuple[float, ...]


def _features(
    reading: PlateCandidate, rows: tuple[Image, ...], vote: _Vote | None
) -> ReadingFeatures:
    """The features of a vehicle's reading (``vote`` None: no second look ran)."""
    first = reading.char_confidences
    weakest = min(first, default=0.0)
    chars = first if vote is None or not vote.chars else vote.chars
    rivals = reading.rivals if vote is None or not vote.chars else vote.rivals
    crop = rows[-1]
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    return ReadingFeatures(
        first_weakest=round(float(weakest), 4),
        first_mean=round(float(np.mean(first)) if first else 0.0, 4),
        agreed=reading.score >= weakest - 1e-6,
        looked=vote is not None,
        vote=round(vote.score, 4) if vote is not None else 1.0,
        agree_share=vote.agreeing / VIEWS if vote is not None else 1.0,
        read_share=vote.read / VIEWS if vote is not None else 1.0,
        rival_share=vote.rival / VIEWS if vote is not None else 0.0,
        kept=vote is None or vote.text == reading.text,
        view_weakest=round(float(min(chars, default=0.0)), 4),
        view_mean=round(float(np.mean(chars)) if chars else 0.0, 4),
        first_char=round(float(chars[0]), 4) if chars else 0.0,
        last_char=round(float(chars[-1]), 4) if chars else 0.0,
        rows=len(rows),
        height=int(crop.shape[0]),
        width=int(crop.shape[1]),
        contrast=round(float(grey.std()), 2),
        char_scores=tuple(chars),
        char_rivals=tuple(rivals),
        first_text=reading.text,
    )


def weakest_margin(text: str, scores: Sequence[float], rivals: Sequence[float]) -> float:
    """The plate core's smallest margin: a character's score less its rival's, the weakest.

    The rival is the best other character the plate-constrained decoding allows in that slot
    (edge.plate_decoding), so a 1 beside a U in a letter-or-digit slot counts, a 1 beside a
    province does not. The core is the province (or WJ), letters and digits: a red suffix
    (警, 领...) and 使 are left out, as the confidence model leaves them out (the recogniser
    scores them low even when right). A reading with no rivals recorded has margin 1.
    """
    if not rivals:
        return 1.0
    margins = [
        score - rival
        for char, score, rival in zip(text, scores, rivals, strict=False)
        if char not in RED_SUFFIXES and char != "使"
    ]
    return min(margins, default=1.0)


def surplus(chars: FloatArray, gap: FloatArray, length: int) -> float:
    """The strongest character the recogniser saw in a row beyond ``length`` of them; 0 if none.

    ``chars`` (time steps x plate characters) and ``gap`` are the decoder's merged scores. At a
    threshold, a time step shows its best plate character when that scores the threshold or
    more (even under the blank's), else nothing; consecutive steps showing one character are
    one character, as CTC counts them. The result is the highest threshold of SURPLUS_STEPS at
    which the row shows more than ``length`` characters: a U whose two strokes read 1 at 0.38
    and 1 at 0.78 with a blank between is two characters up to 0.38, where the plate-constrained
    decoding, with room for one, kept one 1.
    """
    if len(chars) == 0:
        return 0.0
    best = chars.max(axis=1)
    which = chars.argmax(axis=1)
    for threshold in SURPLUS_STEPS:
        shown = np.where(best >= threshold, which, -1)
        starts = (shown >= 0) & np.concatenate(([True], shown[1:] != shown[:-1]))
        if int(starts.sum()) > length:
            return threshold
    return 0.0


def bare_wj(text: str) -> bool:
    """An armed-police reading with no province: WJ, then the digits (武警总部's plates)."""
    return text.startswith("WJ") and len(text) > 2 and text[2].isdigit()


def province_glyph(chars: FloatArray, gap: FloatArray, layout: Layout) -> float:
    """How strong a province glyph a bare WJ reading passed over: the province's score on the
    best path of ``layout`` (WJ_PROVINCE_LAYOUT, or WJ_PROVINCE_HEAD for a top row) through the
    row's merged scores (``PlateDecoder.scores``); 0 when no such path fits."""
    forced = decode_plate_scores(chars, gap, layout)
    return 0.0 if forced is None else float(forced.char_confidences[2])


def lookalike_digit(text: str, scores: Sequence[float]) -> float:
    """The lowest score of a look-alike digit (LOOKALIKES) where the plate allows a letter; 1
    if none.

    A letter is allowed after an ordinary plate's province and office letter (a double-row
    plate's bottom row too) and in an armed-police plate's last place; never in 使's digits.
    """
    if text.startswith("使"):
        return 1.0
    first = len(text) - 1 if text.startswith("WJ") else 2
    found = [
        float(score)
        for char, score in zip(text[first:], scores[first:], strict=False)
        if char in LOOKALIKES
    ]
    return min(found, default=1.0)


def letter_for_digit(text: str, net_text: str) -> bool:
    """Whether the net reads PP-OCR's text but for letters where PP-OCR read digits.

    The same length, at least one difference, and at every difference a digit in ``text`` and
    a letter in ``net_text`` (a J read as 1, a Q as 0): the net confirms the rest of the plate.
    """
    if len(text) != len(net_text) or text == net_text:
        return False
    return all(
        mine.isdigit() and theirs.isascii() and theirs.isalpha()
        for mine, theirs in zip(text, net_text, strict=True)
        if mine != theirs
    )


def red_suffix(text: str, net_text: str) -> bool:
    """Whether the net reads PP-OCR's plate but for its last character, a red suffix in the net's.

    The same length, the same characters but the last, the net's last one of 挂学警港澳领 and
    PP-OCR's not (PP-OCR lost the suffix to a digit or letter; one red suffix is not taken for
    another: on round 10's dev the only such case, at the net's weakest 0.41, was wrong). A
    province, a WJ or 使 head, or any other character is never the net's (round 9b: its
    provinces were wrong on held-out scenes and real crops).
    """
    return (
        len(text) == len(net_text)
        and text[:-1] == net_text[:-1]
        and text[-1] not in LAST_ONLY
        and net_text[-1] in LAST_ONLY
    )


def _net_scores(net: PlateNet, crop: Image) -> tuple[FloatArray, FloatArray]:
    """The plate net's character and gap probabilities, as decode_plate_scores takes them."""
    probabilities = net.probabilities(crop)
    return probabilities[:, 1:], probabilities[:, 0]


OPINION_SURE = 0.5
"""The plate net's weakest character at which its agreement counts (round 5's, chosen on dev
seeds 1, 4, 5 and 6 for round 5's net; kept for rounds 8, 9 and 9b: on dev seeds 1, 4, 5, 6, 9,
10 and 11 at 0.3, 0.5, 0.7 and 0.9 every undecided reading round 9's net agreed with was right).
Also the sureness at which a letter it reads where PP-OCR read a digit undecides a reading (round
9b's net: 3 decided dev readings, the false read 青N06Z61 and 2 right; kept, as without it dev
has 2 false reads, not 1)."""
AGREE_CHANCE = 0.9475
"""The confidence a reading the sure net agrees with gets at least: the Wilson lower bound (z
1.645, as bench.plates_calibrate) of 110 right of 112 such undecided dev readings, near ties
included (round 10: net f, models/plate_recogniser.onnx as models.plate_recogniser builds it, on
dev seeds 1, 4-11 and 17-21; the 2 wrong, 皖PDJ1047 for 粤PDJ1047 and 沪NF467W7 for 沪NF467M7, were
no near ties; the 17 near ties were all right). Round 9b had 47 of 47 (0.9456, near ties left
out, seeds 1, 4, 5, 6, 9, 10 and 11), round 9's net 39 of 39, round 8's 38 of 38, round 5's 27 of
27. In sample: fitted on the dev readings it is scored on."""
SUFFIX_SURE = 0.7
"""The net's weakest character at which its red suffix is taken (``red_suffix``). Chosen on dev
(round 10, net f, dev seeds 1, 4-11 and 17-21, 2,520 scenes): at 0.5 37 of 37 such undecided
readings were right (bound 0.9318), at 0.6-0.7 36 of 36 (0.9301), 0.75 35 of 35, 0.8-0.9 34 of
34 (0.9263); at 0.4 39 of 40 (the wrong one PP-OCR's right 粤Z8280港 for 粤Z8280领, at 0.41), at 0.3
39 of 41. 0.7 was taken, clear of the wrong take: seeds 1 and 4-11 alone 19 of 19, 17-21 17 of
17."""
SUFFIX_CHANCE = 0.9301
"""What a red suffix taken from the net is worth: the Wilson lower bound (z 1.645) of 36
right of 36 (SUFFIX_SURE's undecided dev readings). In sample: fitted on the dev readings
it is scored on."""


_Remembered = OrderedDict[tuple[int, int, int], tuple[Image, FloatArray]]
"""A thread's crops' first-pass scores, by the crop's id and the pass's widths."""

_Found = tuple[PlateCandidate, tuple[Image, ...]]
"""A reading and what it was read from: its crop, or a double-row plate's two rows."""

NEAR_TIE = 0.5
"""A core position whose score is less than this over its rival's is a near tie (weakest_margin):
the reading's confidence is then at most NEAR_TIE_CHANCE. Chosen on dev seeds 1, 4, 5, 6 and 10
(949 readings): the decided readings' smallest margin was 0.565 (right); under 0.5, 76 readings
(23 right), none decided by the model, so on dev the rule changes nothing (a net under it)."""
REMEMBERED = 64
"""Crops whose first-pass scores a thread keeps for ``_surplus`` (a vehicle reads fewer)."""
CROWDED = 0.3
"""A row whose ``surplus`` is this or more is crowded (above 1: never). Chosen on dev seeds 1, 4,
5, 6 and 10: the lowest of SURPLUS_STEPS at which no right decided reading was crowded (one
was at 0.25); the one wrong decided reading, 桂V109A8 for 桂VU09A8 (seed 10), was at 0.35."""
SURPLUS_STEPS: tuple[float, ...] = tuple(round(0.95 - 0.05 * i, 2) for i in range(19))
"""The thresholds ``surplus`` tries, highest first (0.95 down to 0.05)."""
LOOKALIKES = "01"
"""Digits the generated plates' font makes of letters: PP-OCR reads its Q as 0 and its J as 1
(round 11's dev, 2,520 scenes: 5 of the 9 sure misreads, 冀M2Q159 as 冀M20159, 琼MJ11W2 as
琼M111W2, WJ辽8540J as WJ辽85401, 青N06Z6J as 青N06Z61, 云AQ6979 as 云A06979)."""
LOOKALIKE_SURE = 0.95
"""A look-alike digit where a letter is allowed, scoring under this (the second look's views'
mean), leaves a reading undecided (``lookalike_digit``). Chosen on round 11's dev (off, 2,520
scenes): of 1,406 such digits in decided readings the right ones scored 0.9536 and up, the
wrong 0.8539, 0.7745 and 0.9443; at 0.95 the three are undecided and no right one (at 0.9 two,
at 0.96 one right one too). The other two misreads scored 0.9924 and 0.9978: beyond it."""
PROVINCE_GLYPH = 0.005
"""A bare WJ reading whose row holds a province glyph this strong (``province_glyph``) is not
decided. Round 11's dev: the three bare WJ readings (the generator draws none: all wrong, 2 of
them decided) passed over 0.0149, 0.0187 and 0.0262; drawn 武警总部 plates (WJ, a blank or a
dot, 5 characters; 52 crops, blurred, noisy, JPEG) 0.00001 at most, each read and decided."""
FAVOURITE = "皖"
"""The province PP-OCR reads for others: on round 11's dev 96 vehicle readings began with 皖, 39
of them another province's plate (桂C96998, 陕KD0S588, 琼YFL3584... read as 皖), where 54 of the
2,520 scenes are 皖 plates; most of rounds 7-10's held-out province misses were read as 皖 too."""
FAVOURITE_SURE = 0.9
"""A 皖 read under this leaves a reading undecided. Round 11's dev: decided 皖 readings scored
0.8177 (right; its scene read right by another vehicle's reading), 0.8953 (wrong: 桂C96998,
twice in one scene), then 0.9496 and up (right). On the 300 real lprnet crops (all 皖) PP-OCR
read 皖 under 0.9 on 5 of 284 (right, all: 0.14-0.90); such a real plate would go undecided."""
SUFFIX_COLOURS: dict[str, PlateColour] = {
    "警": "white",
    "领": "black",
    "港": "black",
    "澳": "black",
}
"""The colour of the plate a red suffix belongs to (GA 36; edge.plate_colour): the evidence
``PlateReader._suffix_colour`` decides an undecided suffix reading on. 挂 and 学 (yellow) are
left out: yellow is also an ordinary plate's colour, so it confirms no suffix."""
SUFFIX_CORE_SURE = 0.8
"""The core's weakest character (the suffix and 使 left out) at which ``_suffix_colour``
decides. Chosen on round 12's dev seeds 1 and 4-11 (off, 1,620 scenes): the undecided suffix
readings the colour confirmed were all right from 0.8 up (27 of 27); the highest wrong one,
蒙E3594警 read 豫E3594警, scored 0.7923 (its province). Checked on dev seeds 17-21 (900 scenes):
16 of 16 right at 0.8 (18 of 18 at 0.7). Its readings' weakest core character was the province
in most: a lower threshold lets PP-OCR's province misreads through."""
SUFFIX_COLOUR_CHANCE = 0.9408
"""What such a reading is worth: the Wilson lower bound (z 1.645) of 43 right of 43, every
undecided dev reading (seeds 1, 4-11, 17-21) ``_suffix_colour`` decides. In sample: fitted on
the dev readings it is scored on."""
HALF_GLYPHS = {"京": "琼"}
"""A province whose glyph is the right half of another's (琼 = 王 + 京): PP-OCR may read the
whole as the half. Round 12's dev: 4 readings of 琼 plates began with 京, one decided (琼KF71F18
as 京KF71F18, 京 at 0.996: a sure false read no score rule reached)."""
WHOLE_GLYPH = 0.001
"""A decided reading that begins with a half glyph (``HALF_GLYPHS``) whose row scores the whole
one this much or more beside it (``_whole_glyph``) is not decided. Round 12's dev (2,520
scenes): the 4 readings of 琼 plates as 京 scored 琼 0.0034 (the decided false read), 0.0298,
0.0387 and 0.4264; the 58 right 京 readings 0.00033 at most (most under 0.0001). 0.001 sits
in that gap, about 3x over the right ones' highest and under the wrong ones' lowest."""
NEAR_TIE_CHANCE = 0.5
"""The most a near-tie or crowded reading is worth: under any floor (a tie is a coin's toss)."""

PASS_SURE = 0.96
"""A reading whose weakest character scores this or more needs no further read pass."""

VIEWS = 10
"""Altered copies of an unsure reading's crop read in its second look (``_views``)."""

_VIEW_INPUT = 320  # the recogniser's input width in a second look: wide padding reads better


def _view_weakest(text: str, chars: Sequence[float]) -> float:
    """A view's weakest character, a red suffix (警, 领...) counted at its square root.

    The recogniser scores those suffixes low even when it reads them right (on dev most right
    readings left undecided were 警 and 领 plates); the views must still agree on them.
    """
    if text[-1] in LAST_ONLY:
        return min(min(chars[:-1]), math.sqrt(chars[-1]))
    return min(chars)


def _views(crop: Image, width: int) -> Iterator[tuple[Image, ReadPass]]:
    """VIEWS altered copies of a crop, each with the read pass to read it at.

    Three other widths, grey, inverted, contrast-equalised (CLAHE), padded, trimmed, blurred
    and sharpened: alterations a misread is unlikely to survive all of.
    """

    def at(scale: float) -> ReadPass:
        text_width = int(np.clip(round(width * scale), 32, 512))
        return ReadPass(text_width=text_width, input_width=max(_VIEW_INPUT, text_width + 96))

    height, across = crop.shape[:2]
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    equalised = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(grey)
    for scale in (0.74, 1.26, 1.47):
        yield crop, at(scale)
    yield np.asarray(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), dtype=np.uint8), at(1.0)
    yield np.asarray(255 - crop, dtype=np.uint8), at(1.0)
    yield np.asarray(cv2.cvtColor(equalised, cv2.COLOR_GRAY2BGR), dtype=np.uint8), at(1.0)
    padded = cv2.copyMakeBorder(
        crop, height // 6, height // 6, across // 12, across // 12, cv2.BORDER_REPLICATE
    )
    yield np.asarray(padded, dtype=np.uint8), at(1.05)
    yield crop[height // 12 : height - height // 12, across // 30 : across - across // 30], at(0.95)
    yield np.asarray(cv2.GaussianBlur(crop, (3, 3), 0), dtype=np.uint8), at(1.0)
    soft = cv2.GaussianBlur(crop, (0, 0), 2)
    yield np.asarray(cv2.addWeighted(crop, 1.6, soft, -0.6, 0), dtype=np.uint8), at(1.0)


DOUBLE_ROW_ASPECT = 2.6
"""A text box narrower than this (width / height) may be both rows of a double-row plate."""


def _row_passes(crop: Image) -> list[ReadPass]:
    """Two read passes at about the row's own shape (rows are not plate-shaped), padded."""
    height, width = crop.shape[:2]
    text_width = int(np.clip(round(REC_HEIGHT * width / max(height, 1)), 48, 192))
    wider = min(224, round(text_width * 1.15))
    return [
        ReadPass(text_width=text_width, input_width=max(192, text_width + 32)),
        ReadPass(text_width=wider, input_width=max(256, wider + 32)),
    ]


def _better(best: _Found | None, other: _Found | None) -> _Found | None:
    if other is None:
        return best
    # The raw score orders readings: the calibration is a step function of it, so raw scores
    # also break the ties between readings of one calibrated level.
    if best is None or other[0].score > best[0].score:
        return other
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


def _weakest(candidate: PlateCandidate) -> float:
    return min(candidate.char_confidences, default=0.0)


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
    "rapidocr_recogniser",
]
