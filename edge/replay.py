"""One clip replayed through a camera's live pipeline, as fast as the CPU allows: the events it
raised, what ingest confirmed, and the violations summarised (split incidents named)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

import numpy as np
from pydantic import BaseModel, Field, computed_field

from contracts.events import BoundingBox, Phase, ViolationEvent, ViolationKind
from edge.capture import ReplaySource
from edge.detections import box_iou
from edge.detector import Detector
from edge.outbox import Outbox
from edge.publisher import EdgePublisher
from edge.worker import FLUSH_INTERVAL_SECONDS, CameraAnalysis

log = logging.getLogger(__name__)


class ReplayedViolation(BaseModel):
    violation_id: UUID
    kind: ViolationKind
    zone_id: str
    class_name: str
    box: BoundingBox | None
    plate: str | None
    opened_at: datetime
    dwell_seconds: float
    evidence_frames: int
    cleared: bool = False
    split_of: UUID | None = Field(
        default=None, description="an earlier violation of the same object at the same spot"
    )


class ReplaySummary(BaseModel):
    camera_id: str
    frames: int
    frames_detected: int = Field(description="frames the detector ran on; motion gating skips")
    clip_seconds: float
    wall_seconds: float
    fps: float
    events_published: int
    events_confirmed: int
    all_confirmed: bool
    violations: list[ReplayedViolation]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def opened(self) -> int:
        return len(self.violations)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cleared(self) -> int:
        return sum(v.cleared for v in self.violations)

    @computed_field(description="violations that repeat an earlier one: split incidents")  # type: ignore[prop-decorator]
    @property
    def split(self) -> int:
        return sum(v.split_of is not None for v in self.violations)


SPLIT_IOU = 0.3
"""Two violations in one zone whose boxes overlap this much are taken for the same object."""


def _box_iou(a: BoundingBox, b: BoundingBox) -> float:
    arrays = (np.array([box.x1, box.y1, box.x2, box.y2], np.float32) for box in (a, b))
    return box_iou(*arrays)


def _split_of(new: ReplayedViolation, earlier: list[ReplayedViolation]) -> UUID | None:
    """One parked object that raised twice: same zone, same spot (or the same plate)."""
    for old in earlier:
        if old.zone_id != new.zone_id:
            continue
        same_plate = new.plate is not None and new.plate == old.plate
        same_spot = (
            new.box is not None and old.box is not None and _box_iou(new.box, old.box) >= SPLIT_IOU
        )
        if same_plate or same_spot:
            return old.violation_id
    return None


def _summarise(events: list[ViolationEvent]) -> list[ReplayedViolation]:
    found: dict[UUID, ReplayedViolation] = {}
    for event in events:
        seen = found.get(event.violation_id)
        if seen is None:
            if event.phase is not Phase.OPENED:
                continue
            opened = ReplayedViolation(
                violation_id=event.violation_id,
                kind=event.kind,
                zone_id=event.zone_id,
                class_name=event.object.class_name if event.object else "",
                box=event.object.box if event.object else None,
                plate=event.plate.text if event.plate else None,
                opened_at=event.observed_at,
                dwell_seconds=event.dwell_seconds,
                evidence_frames=len(event.evidence),
            )
            split_of = _split_of(opened, list(found.values()))
            found[event.violation_id] = opened.model_copy(update={"split_of": split_of})
            continue
        found[event.violation_id] = seen.model_copy(
            update={
                "dwell_seconds": max(seen.dwell_seconds, event.dwell_seconds),
                "evidence_frames": seen.evidence_frames + len(event.evidence),
                "cleared": seen.cleared or event.phase is Phase.CLEARED,
            }
        )
    return list(found.values())


class _Progress:
    """One self-rewriting stderr line, only when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.enabled = sys.stderr.isatty()
        self._last = 0.0

    def show(self, done: int, events: int, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < 0.25):
            return
        self._last = now
        sys.stderr.write(f"\rreplay: frame {done}/{self.total}, {events} events")
        sys.stderr.flush()

    def finish(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write(f"\r{text}\n")
            sys.stderr.flush()


def analyse_clip(
    source: ReplaySource,
    analysis: CameraAnalysis,
    detector: Detector | None,
    on_events: Callable[[list[ViolationEvent]], None],
) -> tuple[int, int]:
    """Every frame of the clip through the camera's analysis; returns (frames, detected)."""
    progress = _Progress(source.frames_total)
    frames = events = 0
    for frame in source:
        detections = None
        if detector is not None and analysis.needs_detector(frame):
            detections = detector.detect_batch([frame.image])[0]
        new = analysis.pipeline.process(frame, detections)
        frames += 1
        events += len(new)
        on_events(new)
        progress.show(frames, events)
    progress.finish(f"replay: {frames} frames, {events} events")
    return frames, analysis.detected


def replay_clip(
    camera_id: str,
    source: ReplaySource,
    analysis: CameraAnalysis,
    detector: Detector | None,
    outbox: Outbox,
    publisher: EdgePublisher | None,
    confirm_timeout_seconds: float = 60.0,
) -> ReplaySummary:
    """Run the clip through ``analysis``, by the clip's own clock, publishing like a live camera.

    Returns once the clip ended and ingest confirmed every event, or confirm_timeout_seconds
    later with all_confirmed=False. Without a publisher it only analyses (benchmarks): events
    stay in the outbox. Stops the publisher and closes the outbox.
    """
    events: list[ViolationEvent] = []
    last_flush = time.monotonic()

    def publish(new: list[ViolationEvent]) -> None:
        nonlocal last_flush
        events.extend(new)
        now = time.monotonic()
        if publisher is not None and (new or now - last_flush >= FLUSH_INTERVAL_SECONDS):
            publisher.flush_due()
            last_flush = now

    if publisher is not None:
        publisher.start()
    began = time.monotonic()
    settled, confirmed = publisher is None, 0
    try:
        frames, detected = analyse_clip(source, analysis, detector, publish)
        analysed = time.monotonic() - began
        if publisher is not None:
            settled = publisher.wait_until_settled(confirm_timeout_seconds)
            if not settled:
                log.error(
                    "replay: %d events still unconfirmed after %.0fs",
                    outbox.pending_count(),
                    confirm_timeout_seconds,
                )
            confirmed = publisher.confirmed
    finally:
        if publisher is not None:
            publisher.stop()
        outbox.close()
    return ReplaySummary(
        camera_id=camera_id,
        frames=frames,
        frames_detected=detected,
        clip_seconds=round(source.clip_seconds, 3),
        wall_seconds=round(analysed, 3),
        fps=round(frames / analysed, 2) if analysed > 0 else 0.0,
        events_published=len(events),
        events_confirmed=min(confirmed, len(events)),
        all_confirmed=settled,
        violations=_summarise(events),
    )
