"""One camera's analysis: detections -> tracks -> zone rules -> violation events in the outbox."""

from __future__ import annotations

import uuid

from contracts.events import ModelInfo, ViolationEvent
from contracts.sites import CameraConfig
from contracts.topics import violation_topic
from edge.capture import DEFAULT_FPS
from edge.config import EdgeSettings
from edge.detections import Detections, Frame
from edge.outbox import Outbox
from edge.rules import DwellRule, RuleEvent
from edge.tracker import ObjectTracker


class CameraPipeline:
    def __init__(
        self,
        site_id: str,
        gateway_id: str,
        camera: CameraConfig,
        settings: EdgeSettings,
        model_info: ModelInfo,
        outbox: Outbox,
        fps: float | None = None,
    ) -> None:
        self.site_id = site_id
        self.gateway_id = gateway_id
        self.camera = camera
        self._model_info = model_info
        self._outbox = outbox
        self._topic = violation_topic(site_id, gateway_id, camera.id)
        self._tracker = ObjectTracker(
            settings.tracker, fps or camera.fps or DEFAULT_FPS, settings.detector.confidence
        )
        self._kinds = {zone.id: zone.kind.violation_kind for zone in camera.zones}
        self.rules = [
            DwellRule(camera.id, zone, settings.tracker, settings.evidence) for zone in camera.zones
        ]

    def process(self, frame: Frame, detections: Detections) -> list[ViolationEvent]:
        """Track, apply every zone's rule, and put each resulting event in the outbox."""
        tracked = self._tracker.update(detections)
        events = [self._event(o) for rule in self.rules for o in rule.update(frame, tracked)]
        for event in events:
            self._outbox.add(self._topic, event)
        return events

    def _event(self, outcome: RuleEvent) -> ViolationEvent:
        return ViolationEvent(
            message_id=uuid.uuid4(),
            violation_id=outcome.violation_id,
            sequence=self._outbox.next_sequence(self.camera.id),
            phase=outcome.phase,
            kind=self._kinds[outcome.zone_id],
            site_id=self.site_id,
            gateway_id=self.gateway_id,
            camera_id=self.camera.id,
            zone_id=outcome.zone_id,
            started_at=outcome.started_at,
            observed_at=outcome.observed_at,
            dwell_seconds=outcome.dwell_seconds,
            object=outcome.object,
            evidence=outcome.evidence,
            model=self._model_info,
        )
