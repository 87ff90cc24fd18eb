"""One camera: detections -> tracks -> zone rules -> sealed violation events in the outbox.

Each zone kind's rule (contracts.kinds, registered in edge.kinds) picks the paths it takes:
- dwell (no-parking zones): the detector's vehicles through the dwell rule;
- blocked lane (fire lanes): the same, plus the class-agnostic stationary-foreground path for
  whatever has no detector class, and the share of the lane blocked;
- structure (no-build zones): the structure watch against a registered baseline, by the learned
  comparison when the gateway has its detector's backbone (``GatewayServices.structure_parts``),
  else by the class-agnostic gradient comparison.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, tzinfo

import numpy as np

from contracts.events import ModelInfo, PlateReading, ViolationEvent
from contracts.sites import STATIONARY_OBJECT, CameraConfig, ZoneConfig
from contracts.topics import violation_topic
from edge.capture import DEFAULT_FPS
from edge.config import EdgeSettings
from edge.detections import Detections, FloatArray, Frame, Image, box_iou
from edge.exemption_gate import ExemptionGate
from edge.foreground import StationaryForeground, blocked_share_with_boxes
from edge.kinds import rule_parts
from edge.outbox import Outbox
from edge.plates import PlateReader, PlateVote
from edge.redaction import EvidenceSealer, PeopleLog
from edge.rule_store import RuleStore
from edge.rules import DwellRule, RuleEvent
from edge.structure_features import LearnedParts
from edge.structures import BaselineStore, StructureWatch
from edge.tracker import ObjectTracker
from edge.violation_evidence import ViolationEvidence
from edge.warning import Announcements, WarningStage

log = logging.getLogger(__name__)

# Foreground blobs get ids far above any tracker's, so the two never collide in one rule.
FOREGROUND_ID_OFFSET = 1_000_000
# A foreground blob overlapping a detected object this much is that object.
COVERED_BY_DETECTION = 0.3


@dataclass
class ReaderTally:
    """Reads a vehicle's plate with the shared reader and votes across frames."""

    reader: PlateReader
    vote: PlateVote = field(default_factory=PlateVote)

    def add(self, image: Image, box: FloatArray) -> None:
        try:
            self.vote.add(self.reader.read_vehicle(image, box))
        except ValueError as exc:  # a box at the frame's edge: no reading this time
            log.debug("plate not read: %s", exc)

    def best(self) -> PlateReading | None:
        return self.vote.best()


@dataclass(frozen=True, slots=True)
class GatewayServices:
    """What every camera of a gateway shares: built once by the worker."""

    model_info: ModelInfo | None  # None: no detector could load; foreground path only
    outbox: Outbox
    sealer: EvidenceSealer
    plate_reader: PlateReader | None = None
    baselines: BaselineStore | None = None
    # The detector and its backbone for the structure watch; None: the gradient comparison.
    structure_parts: LearnedParts | None = None
    timezone: tzinfo = UTC  # the site's: evidence captions show its local time
    # The signed rule document in use: exempt stops never leave the gateway; None: no rules.
    rules: RuleStore | None = None
    # The warning stage's announcements, for the publisher's announce topic; None: none sent.
    announcements: Announcements | None = None


class _FireLane:
    """A fire lane's class-agnostic path and the share of it blocked."""

    def __init__(self, zone: ZoneConfig, frame_size: tuple[int, int], settings: EdgeSettings):
        self.zone = zone
        self.frame_size = frame_size
        self.foreground = StationaryForeground(zone.polygon, frame_size, settings.foreground)
        self.blocked_share = 0.0

    def sightings(self, frame: Frame, known: list[FloatArray], vehicles: Detections) -> Detections:
        """Stationary blobs that no known object covers, as tracked detections.

        ``known`` are the boxes the detector saw, now or within the grace: a blob under a
        vehicle is that vehicle, already counted; one under a person is someone standing.
        """
        result = self.foreground.update(frame)
        blobs = result.objects
        keep = np.array(
            [
                all(box_iou(blob, box) < COVERED_BY_DETECTION for box in known)
                for blob in blobs.xyxy
            ],
            dtype=np.bool_,
        )
        blobs = blobs[keep] if len(blobs) else blobs
        self.blocked_share = blocked_share_with_boxes(
            self.zone.polygon, self.frame_size, result.stationary_mask, vehicles.xyxy
        )
        return blobs.with_tracker_ids(blobs.tracker_id + FOREGROUND_ID_OFFSET)


class CameraPipeline:
    def __init__(
        self,
        site_id: str,
        gateway_id: str,
        camera: CameraConfig,
        settings: EdgeSettings,
        services: GatewayServices,
        fps: float | None = None,
    ) -> None:
        self.site_id = site_id
        self.timezone = services.timezone
        self.gateway_id = gateway_id
        self.camera = camera
        self._settings = settings
        self._services = services
        self._topic = violation_topic(site_id, gateway_id, camera.id)
        self._tracker = ObjectTracker(
            settings.tracker, fps or camera.fps or DEFAULT_FPS, settings.detector.confidence
        )
        self._kinds = {zone.id: zone.kind.violation_kind for zone in camera.zones}
        reader = services.plate_reader
        tallies = (lambda: ReaderTally(reader)) if reader is not None else None
        self.rules = [
            DwellRule(
                camera.id, zone, settings.tracker, settings.evidence, tallies, services.timezone
            )
            for zone in camera.zones
            if rule_parts(zone.kind).dwell
        ]
        parts = services.structure_parts
        self._structures = [
            StructureWatch(
                camera.id,
                zone,
                settings.structures,
                settings.evidence,
                services.baselines,
                features=None if parts is None else parts.features,
                finder=None if parts is None else parts.finder,
                timezone=services.timezone,
                net=None if parts is None else parts.net,
            )
            for zone in camera.zones
            if rule_parts(zone.kind).structures and services.baselines is not None
        ]
        if self._structures and parts is None:
            log.warning(
                "camera %s: no-build zones use the class-agnostic gradient comparison (no "
                "detector backbone for the learned one)",
                camera.id,
            )
        self._fire_lanes: dict[str, _FireLane] = {}
        self._last_tracked = Detections.empty()
        # Whose heads to hide in the evidence: as far back as a rule may reach for a panorama.
        longest_dwell = max((zone.dwell_seconds for zone in camera.zones), default=0.0)
        tracker = settings.tracker
        self._people = PeopleLog(longest_dwell + tracker.rearm_seconds + tracker.grace_seconds)
        # What each zone's rule saw in it on the latest frame: camera verification reads it.
        self.occupants: dict[str, Detections] = {}
        self.blocked_shares: dict[str, float] = {}
        self.exemptions: ExemptionGate | None = None
        if services.rules is not None:
            pictures = {  # the warning stage's "after" frames, drawn as the dwell rule draws
                rule.zone.config.id: ViolationEvidence(
                    camera.id, rule.zone, settings.evidence, services.timezone
                )
                for rule in self.rules
            }
            warnings = WarningStage(
                site_id, gateway_id, camera, services.rules, pictures, services.announcements
            )
            self.exemptions = ExemptionGate(camera, services.rules, warnings)

    @property
    def uses_detector(self) -> bool:
        return self._services.model_info is not None and bool(self.rules)

    def process(self, frame: Frame, detections: Detections | None) -> list[ViolationEvent]:
        """Track, apply every zone's rule, and put each resulting event in the outbox.

        ``detections`` is None on a frame the detector skipped (motion gating, or no model):
        the class-agnostic paths still run on it.
        """
        tracked = self._tracker.update(detections) if detections is not None else None
        if detections is not None:
            self._people.note(frame.timestamp, frame.image, detections)
        if tracked is not None:
            self._last_tracked = tracked
        outcomes: list[tuple[RuleEvent, float | None]] = []
        for rule in self.rules:
            zone = rule.zone.config
            if rule_parts(zone.kind).stationary:
                lane = self._fire_lane(zone, frame)
                # Between detections nothing moved: what was seen last is still there.
                seen = self._last_tracked
                known = [*seen.xyxy]
                known += [box for name, box in rule.incident_boxes() if name != STATIONARY_OBJECT]
                blobs = lane.sightings(frame, known, seen[rule.zone.trigger(seen)])
                sightings = tracked + blobs if tracked is not None else blobs
                outcomes += [(o, lane.blocked_share) for o in rule.update(frame, sightings)]
                self._note_occupants(rule, seen + blobs)
                self.blocked_shares[zone.id] = lane.blocked_share
            elif tracked is not None:
                outcomes += [(o, None) for o in rule.update(frame, tracked)]
                self._note_occupants(rule, tracked)
            else:
                self._note_occupants(rule, self._last_tracked)  # nothing moved since
        if self.exemptions is not None:
            gate = self.exemptions
            admitted = [(gate.admit(outcome), share) for outcome, share in outcomes]
            outcomes = [(outcome, share) for outcome, share in admitted if outcome is not None]
            outcomes += [(outcome, None) for outcome in gate.expire(frame)]  # grace ended
            for violation_id in gate.frames_wanted():
                for rule in self.rules:
                    rule.want_frames(violation_id)
        for watch in self._structures:
            # This frame's detections when the detector ran on it; else the watch finds its own.
            outcomes += [(o, None) for o in watch.update(frame, detections)]
        events = [self._event(outcome, share) for outcome, share in outcomes]
        for event in events:
            self._services.outbox.add(self._topic, event)
        return events

    def _note_occupants(self, rule: DwellRule, sightings: Detections) -> None:
        """The tracked objects the rule's own zone test puts inside its zone on this frame."""
        inside = rule.zone.trigger(sightings) & (sightings.tracker_id >= 0)
        self.occupants[rule.zone.config.id] = sightings[inside]

    def zone_ids(self) -> set[str]:
        """The zones whose occupancy this pipeline watches (no-parking zones and fire lanes)."""
        return {rule.zone.config.id for rule in self.rules}

    def _fire_lane(self, zone: ZoneConfig, frame: Frame) -> _FireLane:
        lane = self._fire_lanes.get(zone.id)
        if lane is None:
            height, width = frame.image.shape[:2]
            lane = self._fire_lanes[zone.id] = _FireLane(zone, (width, height), self._settings)
        return lane

    def _event(self, outcome: RuleEvent, blocked_share: float | None) -> ViolationEvent:
        subject = outcome.object.box if outcome.object is not None else None
        evidence = self._services.sealer.seal(
            outcome.violation_id,
            outcome.phase,
            outcome.evidence,
            self._people,
            np.array([subject.x1, subject.y1, subject.x2, subject.y2], np.float32)
            if subject is not None
            else None,
        )
        return ViolationEvent(
            message_id=uuid.uuid4(),
            violation_id=outcome.violation_id,
            sequence=self._services.outbox.next_sequence(self.camera.id),
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
            evidence=evidence,
            model=self._services.model_info,
            plate=outcome.plate,
            blocked_share=None if blocked_share is None else round(min(1.0, blocked_share), 4),
            warning=self.exemptions.notice(outcome) if self.exemptions is not None else None,
        )
