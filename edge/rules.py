"""Dwell rule: an object that stays put inside a zone longer than the zone's dwell is a violation.

Time comes from Frame.timestamp only, so a replayed clip runs by its own clock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from uuid import UUID

import numpy as np

from contracts.events import BoundingBox, EvidenceFrame, EvidenceLabel, ObservedObject, Phase
from contracts.sites import ZoneConfig
from edge.config import EvidenceSettings, TrackerSettings
from edge.detections import Detections, FloatArray, Frame, box_iou
from edge.evidence import annotate, encode_evidence
from edge.zones import PolygonZone


@dataclass(frozen=True, slots=True)
class RuleEvent:
    """One phase of one violation as the rule saw it; the pipeline adds ids and sequence."""

    phase: Phase
    violation_id: UUID
    zone_id: str
    started_at: datetime
    observed_at: datetime
    dwell_seconds: float
    object: ObservedObject
    evidence: list[EvidenceFrame]


@dataclass(slots=True)
class _Sighting:
    frame: Frame
    box: FloatArray
    confidence: float


@dataclass(slots=True)
class _TrackedObject:
    track_id: int
    class_name: str
    entered_at: datetime
    clock_anchor: FloatArray
    clock_box_height: float
    entry: _Sighting
    latest: _Sighting
    midway: _Sighting | None = None
    violation_id: UUID | None = None
    last_update_at: datetime | None = None

    @property
    def last_seen(self) -> datetime:
        return self.latest.frame.timestamp

    def dwell_at(self, at: datetime) -> float:
        return max(0.0, (at - self.entered_at).total_seconds())

    def observed(self) -> ObservedObject:
        x1, y1, x2, y2 = (float(v) for v in self.latest.box)
        return ObservedObject(
            class_name=self.class_name,
            confidence=min(1.0, max(0.0, self.latest.confidence)),
            box=BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2),
        )


class DwellRule:
    """Tracks the objects inside one zone and raises, updates and clears violations."""

    def __init__(
        self,
        camera_id: str,
        zone: ZoneConfig,
        tracker: TrackerSettings,
        evidence: EvidenceSettings,
    ) -> None:
        self.camera_id = camera_id
        self.zone = PolygonZone(zone)
        self._tracker = tracker
        self._evidence = evidence
        self._objects: dict[int, _TrackedObject] = {}

    @property
    def open_violations(self) -> int:
        return sum(1 for o in self._objects.values() if o.violation_id is not None)

    def update(self, frame: Frame, tracked: Detections) -> list[RuleEvent]:
        """Feed one frame's tracked detections; returns the violation phases this frame produced."""
        now = frame.timestamp
        inside = tracked[self.zone.trigger(tracked) & (tracked.tracker_id >= 0)]
        current_ids = {int(t) for t in inside.tracker_id}
        events: list[RuleEvent] = []
        for i in range(len(inside)):
            track_id = int(inside.tracker_id[i])
            sighting = _Sighting(frame, inside.xyxy[i].copy(), float(inside.confidence[i]))
            obj = self._objects.get(track_id) or self._rejoin(track_id, sighting.box, current_ids)
            if obj is None:
                self._objects[track_id] = self._start_clock(
                    track_id, inside.class_name(i), sighting
                )
                continue
            events.extend(self._observe(obj, sighting))
        for track_id in [t for t, o in self._objects.items() if t not in current_ids]:
            obj = self._objects[track_id]
            if (now - obj.last_seen).total_seconds() > self._tracker.grace_seconds:
                del self._objects[track_id]
                if obj.violation_id is not None:
                    events.append(self._cleared(obj, frame))
        return events

    def _start_clock(self, track_id: int, class_name: str, sighting: _Sighting) -> _TrackedObject:
        box = sighting.box
        return _TrackedObject(
            track_id=track_id,
            class_name=class_name,
            entered_at=sighting.frame.timestamp,
            clock_anchor=np.array([(box[0] + box[2]) / 2, box[3]], dtype=np.float32),
            clock_box_height=float(box[3] - box[1]),
            entry=sighting,
            latest=sighting,
        )

    def _rejoin(
        self, track_id: int, box: FloatArray, current_ids: set[int]
    ) -> _TrackedObject | None:
        """A new track id over a recently lost object's box is that object: it keeps its clock."""
        best: tuple[float, int] | None = None
        for old_id, obj in self._objects.items():
            if old_id in current_ids:
                continue
            iou = box_iou(box, obj.latest.box)
            if iou >= self._tracker.rejoin_iou and (best is None or iou > best[0]):
                best = (iou, old_id)
        if best is None:
            return None
        obj = self._objects.pop(best[1])
        obj.track_id = track_id
        self._objects[track_id] = obj
        return obj

    def _observe(self, obj: _TrackedObject, sighting: _Sighting) -> list[RuleEvent]:
        now = sighting.frame.timestamp
        box = sighting.box
        anchor = np.array([(box[0] + box[2]) / 2, box[3]], dtype=np.float32)
        drift = float(np.linalg.norm(anchor - obj.clock_anchor))
        events: list[RuleEvent] = []
        if drift > self._tracker.max_drift * max(obj.clock_box_height, 1.0):
            # It moved: whatever stood still has left; a fresh clock starts where it is now.
            if obj.violation_id is not None:
                events.append(self._cleared(obj, sighting.frame))
            fresh = self._start_clock(obj.track_id, obj.class_name, sighting)
            self._objects[obj.track_id] = fresh
            return events
        obj.latest = sighting
        if obj.violation_id is None:
            if obj.midway is None and obj.dwell_at(now) >= self.zone.config.dwell_seconds / 2:
                obj.midway = sighting
            if obj.dwell_at(now) >= self.zone.config.dwell_seconds:
                events.append(self._opened(obj))
        elif obj.last_update_at is not None and (
            (now - obj.last_update_at).total_seconds() >= self._evidence.update_interval_seconds
        ):
            events.append(self._updated(obj))
        return events

    def _frame_evidence(
        self, obj: _TrackedObject, sighting: _Sighting, label: EvidenceLabel
    ) -> EvidenceFrame:
        at = sighting.frame.timestamp
        box_label = f"{obj.class_name} #{obj.track_id} {obj.dwell_at(at):.0f}s"
        image = annotate(
            sighting.frame.image,
            self.zone.polygon,
            sighting.box,
            box_label,
            self._caption(at, label),
        )
        return encode_evidence(image, label, at, self._evidence)

    def _caption(self, at: datetime, label: EvidenceLabel) -> str:
        stamp = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-4]
        return f"{stamp} UTC  {self.camera_id}  {self.zone.config.id}  {label.value}"

    def _event(
        self, phase: Phase, obj: _TrackedObject, at: datetime, evidence: list[EvidenceFrame]
    ) -> RuleEvent:
        assert obj.violation_id is not None
        return RuleEvent(
            phase=phase,
            violation_id=obj.violation_id,
            zone_id=self.zone.config.id,
            started_at=obj.entered_at,
            observed_at=at,
            dwell_seconds=obj.dwell_at(at),
            object=obj.observed(),
            evidence=evidence,
        )

    def _opened(self, obj: _TrackedObject) -> RuleEvent:
        now = obj.latest.frame.timestamp
        obj.violation_id = uuid.uuid4()
        obj.last_update_at = now
        # Three distinct moments over the dwell; updates add the latest frame as time goes on.
        sightings = [
            (obj.entry, EvidenceLabel.ENTRY),
            (obj.midway, EvidenceLabel.MIDWAY),
            (obj.latest, EvidenceLabel.DWELL_CROSSED),
        ]
        evidence = [
            self._frame_evidence(obj, sighting, label)
            for sighting, label in sightings
            if sighting is not None
        ]
        return self._event(Phase.OPENED, obj, now, evidence)

    def _updated(self, obj: _TrackedObject) -> RuleEvent:
        now = obj.latest.frame.timestamp
        obj.last_update_at = now
        latest = self._frame_evidence(obj, obj.latest, EvidenceLabel.LATEST)
        return self._event(Phase.UPDATED, obj, now, [latest])

    def _cleared(self, obj: _TrackedObject, frame: Frame) -> RuleEvent:
        caption = self._caption(frame.timestamp, EvidenceLabel.CLEARED)
        image = annotate(frame.image, self.zone.polygon, None, "", caption)
        evidence = [encode_evidence(image, EvidenceLabel.CLEARED, frame.timestamp, self._evidence)]
        event = self._event(Phase.CLEARED, obj, frame.timestamp, evidence)
        # Dwell ends when the object was last seen, not when the grace ran out.
        return replace(event, dwell_seconds=obj.dwell_at(obj.last_seen))
