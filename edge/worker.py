"""The gateway worker's live loop: every camera captured, gated, detected in batches, published."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from contracts.sites import CameraConfig
from contracts.status import CameraHealth, CameraProblem, CameraStatus, DetectionPath
from edge.capture import LatestFrameSource, StillImageCapture
from edge.config import EdgeSettings
from edge.detections import Detections, Frame
from edge.detector import Detector
from edge.health import CameraHealthMonitor
from edge.motion import MotionGate
from edge.outbox import Outbox
from edge.pipeline import CameraPipeline
from edge.publisher import EdgePublisher
from edge.structures import BaselineStore
from edge.verification import VerificationChannel, ZoneVerifier, pump, send

log = logging.getLogger(__name__)

FLUSH_INTERVAL_SECONDS = 0.5


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


@dataclass(frozen=True)
class WatchedCamera:
    """One camera of the gateway: its live source and what analyses its frames."""

    source: LatestFrameSource
    analysis: CameraAnalysis


class EdgeWorker:
    """Runs every camera of one gateway: a capture thread each, one shared detector.

    Built by the composition root (``civicwatch.gateway.build_gateway``) with everything it
    runs; ``run`` starts it, loops and stops it. ``detector`` None means no model could load:
    cameras keep working on the class-agnostic paths (fire lanes' stationary foreground,
    structures) and their status says so.
    """

    def __init__(
        self,
        site_id: str,
        gateway_id: str,
        settings: EdgeSettings,
        detector: Detector | None,
        cameras: Sequence[WatchedCamera],
        outbox: Outbox,
        publisher: EdgePublisher,
        verifier: ZoneVerifier,
        verification: VerificationChannel,
    ) -> None:
        self.site_id = site_id
        self.gateway_id = gateway_id
        self.settings = settings
        self.detector = detector
        self.cameras = list(cameras)
        self._outbox = outbox
        self._publisher = publisher
        self._verifier = verifier
        self._verification = verification

    @property
    def outbox(self) -> Outbox:
        """The gateway's outbox, which holds every event until ingest confirms it."""
        return self._outbox

    def run(self, stop: threading.Event) -> None:
        """Until stop is set: capture, gate, detect in batches, apply rules, publish."""
        cameras = [(camera.source, camera.analysis) for camera in self.cameras]
        publisher, verifier, verification = self._publisher, self._verifier, self._verification
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
            self._outbox.close()

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
            site_id=self.site_id,
            gateway_id=self.gateway_id,
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
