"""The gateway worker: live cameras, or one clip replayed through the same pipeline."""

from __future__ import annotations

import logging
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import numpy as np
from pydantic import BaseModel, Field, computed_field

from contracts.events import BoundingBox, Phase, ViolationEvent, ViolationKind
from contracts.mqtt import BrokerSettings
from contracts.sites import CameraConfig, GatewayConfig, SiteConfig
from contracts.status import CameraStatus
from edge.capture import LatestFrameSource, ReplaySource, open_source
from edge.config import EdgeSettings
from edge.detections import Frame, box_iou
from edge.detector import Detector
from edge.outbox import Outbox
from edge.pipeline import CameraPipeline
from edge.publisher import EdgePublisher

log = logging.getLogger(__name__)

FLUSH_INTERVAL_SECONDS = 0.5


def outbox_path(settings: EdgeSettings, gateway_id: str) -> Path:
    return settings.data_dir / f"outbox-{gateway_id}.sqlite"


class EdgeWorker:
    """Runs every camera of one gateway: a capture thread each, one shared detector."""

    def __init__(
        self,
        site: SiteConfig,
        gateway: GatewayConfig,
        settings: EdgeSettings,
        broker: BrokerSettings,
        detector: Detector,
    ) -> None:
        self.site = site
        self.gateway = gateway
        self.settings = settings
        self.broker = broker
        self.detector = detector

    def run(self, stop: threading.Event) -> None:
        """Until stop is set: capture, detect in batches, apply rules, publish."""
        outbox = Outbox(outbox_path(self.settings, self.gateway.id))
        publisher = EdgePublisher(
            self.broker, self.site.id, self.gateway.id, outbox, self.settings.resend_after_seconds
        )
        sources = {camera.id: open_source(camera) for camera in self.gateway.cameras}
        pipelines = {
            camera.id: CameraPipeline(
                self.site.id,
                self.gateway.id,
                camera,
                self.settings,
                self.detector.model_info,
                outbox,
                sources[camera.id].fps,
            )
            for camera in self.gateway.cameras
        }
        processed = dict.fromkeys(sources, 0)
        last_processed_at = dict.fromkeys(sources, 0.0)
        publisher.start()
        for source in sources.values():
            source.start()
        last_flush = last_status = status_window_start = time.monotonic()
        try:
            while not stop.is_set():
                now = time.monotonic()
                frames: list[tuple[str, Frame]] = []
                for camera_id, source in sources.items():
                    # Process no faster than the camera's fps; in between, capture keeps the newest.
                    if now - last_processed_at[camera_id] < 1.0 / source.fps:
                        continue
                    frame = source.latest()
                    if frame is not None:
                        frames.append((camera_id, frame))
                        last_processed_at[camera_id] = now
                if not frames:
                    stop.wait(0.01)
                else:
                    results = self.detector.detect([frame.image for _, frame in frames])
                    new_events = 0
                    for (camera_id, frame), detections in zip(frames, results, strict=True):
                        new_events += len(pipelines[camera_id].process(frame, detections))
                        processed[camera_id] += 1
                    if new_events:
                        publisher.flush_due()
                        last_flush = time.monotonic()
                now = time.monotonic()
                if now - last_flush >= FLUSH_INTERVAL_SECONDS:
                    publisher.flush_due()
                    last_flush = now
                if now - last_status >= self.settings.status_interval_seconds:
                    elapsed = max(now - status_window_start, 1e-6)
                    for camera_id, source in sources.items():
                        publisher.publish_camera_status(
                            self._camera_status(source, processed[camera_id] / elapsed)
                        )
                    processed = dict.fromkeys(sources, 0)
                    last_status = status_window_start = now
        finally:
            for source in sources.values():
                source.stop()
            publisher.stop()
            outbox.close()

    def _camera_status(self, source: LatestFrameSource, detection_fps: float) -> CameraStatus:
        return CameraStatus(
            site_id=self.site.id,
            gateway_id=self.gateway.id,
            camera_id=source.camera_id,
            health=source.health,
            at=datetime.now(UTC),
            detail=source.detail[:500],
            frames_read=source.frames_read,
            detection_fps=round(detection_fps, 2),
            detector=self.detector.name[:128],
        )


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


def replay(
    site: SiteConfig,
    gateway: GatewayConfig,
    camera: CameraConfig,
    settings: EdgeSettings,
    broker: BrokerSettings,
    detector: Detector,
    source_path: Path,
    loop: int = 0,
    hold_last_seconds: float = 0.0,
    confirm_timeout_seconds: float = 60.0,
    start: datetime | None = None,
) -> ReplaySummary:
    """Run a clip as fast as the CPU allows through the live pipeline, by the clip's own clock.

    Publishes like a live camera and returns once the clip ended and ingest confirmed every
    event, or confirm_timeout_seconds later with all_confirmed=False.
    """
    source = ReplaySource(source_path, loop=loop, hold_last_seconds=hold_last_seconds, start=start)
    outbox = Outbox(outbox_path(settings, gateway.id))
    publisher = EdgePublisher(
        broker,
        site.id,
        gateway.id,
        outbox,
        settings.resend_after_seconds,
        "-replay",
        announces_gateway=False,
    )
    pipeline = CameraPipeline(
        site.id, gateway.id, camera, settings, detector.model_info, outbox, source.fps
    )
    progress = _Progress(source.frames_total)
    events: list[ViolationEvent] = []
    frames = 0
    publisher.start()
    began = time.monotonic()
    try:
        last_flush = began
        for frame in source:
            detections = detector.detect([frame.image])[0]
            new = pipeline.process(frame, detections)
            events.extend(new)
            frames += 1
            now = time.monotonic()
            if new or now - last_flush >= FLUSH_INTERVAL_SECONDS:
                publisher.flush_due()
                last_flush = now
            progress.show(frames, len(events))
        analysed = time.monotonic() - began
        progress.finish(f"replay: {frames} frames, {len(events)} events; waiting for ingest")
        settled = publisher.wait_until_settled(confirm_timeout_seconds)
        if not settled:
            log.error(
                "replay: %d events still unconfirmed after %.0fs",
                outbox.pending_count(),
                confirm_timeout_seconds,
            )
        confirmed = publisher.confirmed
    finally:
        publisher.stop()
        outbox.close()
    return ReplaySummary(
        camera_id=camera.id,
        frames=frames,
        clip_seconds=round(source.clip_seconds, 3),
        wall_seconds=round(analysed, 3),
        fps=round(frames / analysed, 2) if analysed > 0 else 0.0,
        events_published=len(events),
        events_confirmed=min(confirmed, len(events)),
        all_confirmed=settled,
        violations=_summarise(events),
    )
