"""Voting on one vehicle's plate across the frames of one violation."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from contracts.events import PlateReading
from edge.plate_decoding import PLATE_RE, PlateCandidate


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
    return text if PLATE_RE.match(text) else leader
