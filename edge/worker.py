"""The gateway worker: live cameras, or one clip replayed through the same pipeline."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import numpy as np
from pydantic import BaseModel, Field, computed_field

from contracts.events import BoundingBox, Phase, ViolationEvent, ViolationKind
from contracts.mqtt import BrokerSettings
from contracts.sites import CameraConfig, GatewayConfig, SiteConfig
from contracts.status import CameraHealth, CameraProblem, CameraStatus, DetectionPath
from edge.capture import LatestFrameSource, ReplaySource, StillImageCapture, open_source
from edge.config import EdgeSettings
from edge.detections import Detections, Frame, box_iou
from edge.detector import Detector
from edge.health import CameraHealthMonitor
from edge.motion import MotionGate
from edge.outbox import Outbox
from edge.pipeline import CameraPipeline, GatewayServices
from edge.plates import PlateReader
from edge.publisher import EdgePublisher
from edge.redaction import EvidenceSealer, FaceRedactor
from edge.structures import BaselineStore
from edge.verification import VerificationChannel, ZoneVerifier, pump, send

log = logging.getLogger(__name__)

FLUSH_INTERVAL_SECONDS = 0.5


def outbox_path(settings: EdgeSettings, gateway_id: str) -> Path:
    return settings.data_dir / f"outbox-{gateway_id}.sqlite"


def gateway_services(
    settings: EdgeSettings, gateway_id: str, detector: Detector | None, outbox: Outbox
) -> GatewayServices:
    """What every camera of a gateway shares, built once: the readers are costly to load."""
    redactor = FaceRedactor(settings.redaction) if settings.redaction.blur_faces else None
    return GatewayServices(
        model_info=detector.model_info if detector is not None else None,
        outbox=outbox,
        sealer=EvidenceSealer(redactor),
        plate_reader=PlateReader(settings.plates) if settings.plates.enabled else None,
        baselines=BaselineStore(settings.baselines_dir),
    )


class CameraAnalysis:
    """One camera's pipeline, motion gate and health: what the worker does with each frame."""

    def __init__(
        self,
        camera: CameraConfig,
        pipeline: CameraPipeline,
        settings: EdgeSettings,
        baselines: BaselineStore | None,
        detector: Detector | None,
    ) -> None:
        self.camera = camera
        self.pipeline = pipeline
        self._detector = detector
        self._settings = settings
        self._baselines = baselines
        self.health = CameraHealthMonitor(settings.health)
        self._gate: MotionGate | None = None
        self.frames = 0
        self.detected = 0
        self.failures = 0
        self.failure = ""  # the latest error, for the camera's status
        self._logged: set[str] = set()

    def needs_detector(self, frame: Frame) -> bool:
        """Note the frame; True when the detector should look at it (motion, or a re-check)."""
        self.frames += 1
        try:
            if self._gate is None:
                self._gate = self._first_frame(frame)
            self.health.observe(frame)
            wanted = self.pipeline.uses_detector and self._gate.should_detect(frame)
        except Exception as exc:  # one camera's bad frame or zone must not stop the others
            self.failed(frame, exc)
            return False
        self.detected += wanted
        return wanted

    def process(self, frame: Frame, detections: Detections | None) -> int:
        """The frame through the pipeline; returns how many events it raised."""
        try:
            raised = len(self.pipeline.process(frame, detections))
        except Exception as exc:  # e.g. a zone outside the frame, a full outbox disk
            self.failed(frame, exc)
            return 0
        self.failure = ""
        return raised

    def failed(self, frame: Frame, exc: Exception) -> None:
        """Count and show one frame's failure; log a new kind at once, a repeat now and then."""
        self.failures += 1
        failure = f"{type(exc).__name__}: {exc}"
        if failure not in self._logged or self.failures % 100 == 1:
            self._logged.add(failure)
            log.error(
                "camera %s, frame %d: %s (%d failures)",
                self.camera.id,
                frame.index,
                failure,
                self.failures,
            )
        self.failure = failure

    def _first_frame(self, frame: Frame) -> MotionGate:
        height, width = frame.image.shape[:2]
        if self._detector is not None and self.pipeline.uses_detector:
            self._detector.prepare([(width, height)])  # compile for this size now, not mid-batch
        if self._baselines is not None:
            # The registered view: the health check tells when the camera was turned away.
            try:
                baseline = self._baselines.get(self.camera.id)
                if baseline is None:
                    self._baselines.register(self.camera.id, frame.image)
                    baseline = frame.image
                self.health.set_baseline(baseline)
            except (OSError, ValueError) as exc:
                log.error("camera %s: no baseline view for health checks: %s", self.camera.id, exc)
        polygons = [zone.polygon for zone in self.camera.zones]
        return MotionGate(polygons, (width, height), self._settings.motion)


class EdgeWorker:
    """Runs every camera of one gateway: a capture thread each, one shared detector.

    ``detector`` None means no model could load: cameras keep working on the class-agnostic
    paths (fire lanes' stationary foreground, structures) and their status says so.
    """

    def __init__(
        self,
        site: SiteConfig,
        gateway: GatewayConfig,
        settings: EdgeSettings,
        broker: BrokerSettings,
        detector: Detector | None,
    ) -> None:
        self.site = site
        self.gateway = gateway
        self.settings = settings
        self.broker = broker
        self.detector = detector

    def run(self, stop: threading.Event) -> None:
        """Until stop is set: capture, gate, detect in batches, apply rules, publish."""
        outbox = Outbox(outbox_path(self.settings, self.gateway.id))
        publisher = EdgePublisher(
            self.broker,
            self.site.id,
            self.gateway.id,
            outbox,
            self.settings.resend_after_seconds,
            max_unconfirmed=self.settings.max_unconfirmed,
        )
        services = gateway_services(self.settings, self.gateway.id, self.detector, outbox)
        cameras: list[tuple[LatestFrameSource, CameraAnalysis]] = []
        for config in self.gateway.cameras:
            source = open_source(config)
            pipeline = CameraPipeline(
                self.site.id, self.gateway.id, config, self.settings, services, source.fps
            )
            analysis = CameraAnalysis(
                config, pipeline, self.settings, services.baselines, self.detector
            )
            cameras.append((source, analysis))
        sources = {source.camera_id: source for source, _ in cameras}
        verifier = ZoneVerifier(
            self.site.id,
            self.gateway.id,
            {analysis.camera.id: analysis.pipeline for _, analysis in cameras},
            self.settings.evidence,
            services.sealer,
            available=lambda camera_id: sources[camera_id].health is not CameraHealth.OFFLINE,
            frames=self.settings.verification_frames,
        )
        verification = VerificationChannel(self.broker, self.site.id, self.gateway.id, sources)
        verification.start()
        publisher.start()
        for source, _ in cameras:
            source.start()
        last_taken = dict.fromkeys((source.camera_id for source, _ in cameras), 0.0)
        last_flush = last_status = status_window_start = time.monotonic()
        try:
            while not stop.is_set():
                now = time.monotonic()
                to_detect: list[tuple[CameraAnalysis, Frame]] = []
                skipped: list[tuple[CameraAnalysis, Frame]] = []
                for source, analysis in cameras:
                    # No faster than the camera's detection rate; capture keeps only the newest.
                    if now - last_taken[source.camera_id] < 1.0 / source.fps:
                        continue
                    frame = source.latest()
                    if frame is None:
                        continue
                    last_taken[source.camera_id] = now
                    wanted = analysis.needs_detector(frame)
                    (to_detect if wanted else skipped).append((analysis, frame))
                if not to_detect and not skipped:
                    stop.wait(0.01)
                new_events = sum(analysis.process(frame, None) for analysis, frame in skipped)
                for (analysis, frame), detections in self._detect(to_detect):
                    new_events += analysis.process(frame, detections)
                for analysis, frame in (*skipped, *to_detect):
                    send(verification, verifier.observe(analysis.camera.id, frame))
                pump(verification, verifier)
                now = time.monotonic()
                if new_events or now - last_flush >= FLUSH_INTERVAL_SECONDS:
                    publisher.flush_due()
                    last_flush = now
                if now - last_status >= self.settings.status_interval_seconds:
                    elapsed = max(now - status_window_start, 1e-6)
                    for source, analysis in cameras:
                        publisher.publish_camera_status(self._status(source, analysis, elapsed))
                        analysis.frames = analysis.detected = 0
                    last_status = status_window_start = now
        finally:
            for source, _ in cameras:
                source.stop()
            verification.stop()
            publisher.stop()
            outbox.close()

    def _detect(
        self, frames: list[tuple[CameraAnalysis, Frame]]
    ) -> list[tuple[tuple[CameraAnalysis, Frame], Detections | None]]:
        """One batch for every camera; if it fails, frame by frame, so one bad frame costs one."""
        if not frames or self.detector is None:
            return []
        try:
            batch = self.detector.detect_batch([frame.image for _, frame in frames])
            return list(zip(frames, batch, strict=True))
        except Exception:
            results: list[tuple[tuple[CameraAnalysis, Frame], Detections | None]] = []
            for analysis, frame in frames:
                try:
                    results.append(((analysis, frame), self.detector.detect(frame.image)))
                except Exception as exc:
                    analysis.failed(frame, exc)
            return results

    def _status(
        self, source: LatestFrameSource, analysis: CameraAnalysis, elapsed: float
    ) -> CameraStatus:
        problems = (
            analysis.health.no_frame(datetime.now(UTC))
            if source.health is not CameraHealth.OK
            else analysis.health.problems
        )
        if isinstance(source, StillImageCapture):
            problems = [p for p in problems if p is not CameraProblem.FROZEN]  # still by design
        if self.detector is None:
            problems = [*problems, CameraProblem.NO_DETECTOR]
        health = source.health
        if health is CameraHealth.OK and (problems or analysis.failure):
            health = CameraHealth.DEGRADED
        detail = source.detail or analysis.failure or ", ".join(p.value for p in problems)
        return CameraStatus(
            site_id=self.site.id,
            gateway_id=self.gateway.id,
            camera_id=source.camera_id,
            health=health,
            at=datetime.now(UTC),
            detail=detail[:500],
            frames_read=source.frames_read,
            detection_fps=round(analysis.detected / elapsed, 2),
            detector=self.detector.name[:128] if self.detector is not None else "",
            problems=problems,
            detection_path=(
                DetectionPath.DETECTOR
                if self.detector is not None
                else DetectionPath.FOREGROUND_ONLY
            ),
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


def replay(
    site: SiteConfig,
    gateway: GatewayConfig,
    camera: CameraConfig,
    settings: EdgeSettings,
    broker: BrokerSettings | None,
    detector: Detector | None,
    source_path: Path,
    loop: int = 0,
    hold_last_seconds: float = 0.0,
    confirm_timeout_seconds: float = 60.0,
    start: datetime | None = None,
) -> ReplaySummary:
    """Run a clip as fast as the CPU allows through the live pipeline, by the clip's own clock.

    Publishes like a live camera and returns once the clip ended and ingest confirmed every
    event, or confirm_timeout_seconds later with all_confirmed=False. Without a broker it only
    analyses (benchmarks): events stay in the outbox.
    """
    source = ReplaySource(source_path, loop=loop, hold_last_seconds=hold_last_seconds, start=start)
    outbox = Outbox(outbox_path(settings, gateway.id))
    publisher = (
        EdgePublisher(
            broker,
            site.id,
            gateway.id,
            outbox,
            settings.resend_after_seconds,
            "-replay",
            announces_gateway=False,
            max_unconfirmed=settings.max_unconfirmed,
        )
        if broker is not None
        else None
    )
    services = gateway_services(settings, gateway.id, detector, outbox)
    pipeline = CameraPipeline(site.id, gateway.id, camera, settings, services, source.fps)
    analysis = CameraAnalysis(camera, pipeline, settings, services.baselines, detector)
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
        camera_id=camera.id,
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
