"""Dwell rule: an object that stays put inside a zone longer than the zone's dwell is a violation.

A violation belongs to an *incident* in one zone, not to a tracker id: trackers lose parked cars
behind passing pedestrians, under a change of light or when the detector misses a frame, and come
back with a new id. The rule re-associates every sighting with the incidents it already holds.

Leaving and coming back (docs/rules.md has the same table):

- Unseen for up to ``grace_seconds``: the incident keeps its clock and its violation; a sighting
  that overlaps its last box (``rejoin_iou``), stands within ``max_drift`` of its spot, or carries
  the same plate continues it, whatever the tracker's id.
- Unseen for longer: the incident ends; an open violation sends ``cleared``.
- Moves further than ``max_drift`` (box heights) from where its clock started: it is driving,
  not parked; an open violation clears and a fresh clock starts where it is.
- Back at the spot of a cleared violation within ``rearm_seconds``: a new clock starts, but it
  cannot open before the re-arm interval since the clear has passed, so a car that flickers at
  the edge of detection does not raise a storm of alarms.

Time comes from Frame.timestamp only, so a replayed clip runs by its own clock. The evidence
frames a violation carries are drawn by ``edge.violation_evidence``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol
from uuid import UUID

import cv2
import numpy as np

from contracts.events import (
    BoundingBox,
    EvidenceFrame,
    EvidenceLabel,
    ObservedObject,
    Phase,
    PlateReading,
)
from contracts.sites import ZoneConfig
from edge.config import EvidenceSettings, TrackerSettings
from edge.detections import Detections, FloatArray, Frame, Image, box_iou
from edge.evidence_cadence import update_carries_frames
from edge.violation_evidence import ViolationEvidence
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
    object: ObservedObject | None
    evidence: list[EvidenceFrame]
    plate: PlateReading | None = None


class PlateTally(Protocol):
    """Votes on one vehicle's plate across the frames it was read in."""

    def add(self, image: Image, box: FloatArray) -> None: ...

    def best(self) -> PlateReading | None: ...


class PlateTallies(Protocol):
    """Starts a tally per incident; None when plate reading is off."""

    def __call__(self) -> PlateTally: ...


@dataclass(slots=True)
class _Sighting:
    frame: Frame
    box: FloatArray
    confidence: float


def appearance(sighting: _Sighting) -> FloatArray:
    """A colour signature of the object: hue, saturation and value histogram of its box."""
    x1, y1, x2, y2 = (round(float(v)) for v in sighting.box)
    height, width = sighting.frame.image.shape[:2]
    crop = sighting.frame.image[max(0, y1) : min(height, y2), max(0, x1) : min(width, x2)]
    if crop.size == 0:
        return np.zeros(8 * 4 * 8, dtype=np.float32)
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [8, 4, 8], [0, 180, 0, 256, 0, 256])
    # Flat: OpenCV's compareHist answers -1 for two identical 3-D histograms.
    return np.asarray(cv2.normalize(hist, hist), dtype=np.float32).ravel()


def same_look(a: _Sighting, b: _Sighting) -> float:
    """Correlation of two sightings' colour signatures: near 1 for one object."""
    return float(cv2.compareHist(appearance(a), appearance(b), cv2.HISTCMP_CORREL))


def _anchor(box: FloatArray) -> FloatArray:
    return np.array([(box[0] + box[2]) / 2, box[3]], dtype=np.float32)


@dataclass(slots=True)
class _Incident:
    track_id: int
    class_name: str
    entered_at: datetime
    clock_anchor: FloatArray
    clock_box_height: float
    entry: _Sighting
    latest: _Sighting
    panoramas: list[_Sighting] = field(default_factory=list)  # over the dwell, after the entry
    panorama_seconds: float = 0.0  # grows as the list is thinned, so the spread stays even
    violation_id: UUID | None = None
    last_update_at: datetime | None = None
    updates: int = 0  # sent since it opened: only some carry frames (edge.evidence_cadence)
    frames_wanted: bool = False  # the next update carries frames whatever the cadence says
    not_before: datetime | None = None  # re-arm: may not open earlier than this
    plate: PlateTally | None = None
    last_plate_read_at: datetime | None = None

    @property
    def last_seen(self) -> datetime:
        return self.latest.frame.timestamp

    def dwell_at(self, at: datetime) -> float:
        return max(0.0, (at - self.entered_at).total_seconds())

    def best_plate(self) -> PlateReading | None:
        return self.plate.best() if self.plate is not None else None

    def observed(self) -> ObservedObject:
        x1, y1, x2, y2 = (float(v) for v in self.latest.box)
        return ObservedObject(
            class_name=self.class_name,
            confidence=min(1.0, max(0.0, self.latest.confidence)),
            box=BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2),
        )


@dataclass(frozen=True, slots=True)
class _ClearedSpot:
    box: FloatArray
    cleared_at: datetime


class DwellRule:
    """Tracks the incidents inside one zone and raises, updates and clears violations."""

    def __init__(
        self,
        camera_id: str,
        zone: ZoneConfig,
        tracker: TrackerSettings,
        evidence: EvidenceSettings,
        plate_tallies: PlateTallies | None = None,
        timezone: tzinfo = UTC,  # the site's: captions show its local time
    ) -> None:
        self.camera_id = camera_id
        self.zone = PolygonZone(zone)
        self._tracker = tracker
        self._evidence = evidence
        self._pictures = ViolationEvidence(camera_id, self.zone, evidence, timezone)
        self._plate_tallies = plate_tallies
        self._incidents: dict[int, _Incident] = {}
        self._cleared_spots: list[_ClearedSpot] = []

    @property
    def open_violations(self) -> int:
        return sum(1 for o in self._incidents.values() if o.violation_id is not None)

    def incident_boxes(self) -> Iterator[tuple[str, FloatArray]]:
        """Class and last box of every incident the rule holds, seen now or within its grace."""
        return ((i.class_name, i.latest.box) for i in self._incidents.values())

    def want_frames(self, violation_id: UUID) -> None:
        """The violation's next update carries frames, even past the cadence's cap: the gate
        opens a stop held at the gateway only with pictures (edge.exemption_gate)."""
        for incident in self._incidents.values():
            if incident.violation_id == violation_id:
                incident.frames_wanted = True

    def update(self, frame: Frame, tracked: Detections) -> list[RuleEvent]:
        """Feed one frame's tracked detections; returns the violation phases this frame produced."""
        now = frame.timestamp
        inside = tracked[self.zone.trigger(tracked) & (tracked.tracker_id >= 0)]
        current_ids = {int(t) for t in inside.tracker_id}
        events: list[RuleEvent] = []
        for i in range(len(inside)):
            track_id = int(inside.tracker_id[i])
            sighting = _Sighting(frame, inside.xyxy[i].copy(), float(inside.confidence[i]))
            incident = self._incidents.get(track_id) or self._rejoin(
                track_id, sighting.box, current_ids
            )
            if incident is None:
                self._incidents[track_id] = self._start_clock(
                    track_id, inside.class_name(i), sighting
                )
                continue
            events.extend(self._observe(incident, sighting))
            self._rejoin_by_plate(track_id, current_ids)
        for track_id in [t for t in self._incidents if t not in current_ids]:
            incident = self._incidents[track_id]
            if (now - incident.last_seen).total_seconds() > self._tracker.grace_seconds:
                del self._incidents[track_id]
                if incident.violation_id is not None:
                    events.append(self._cleared(incident, frame))
        return events

    def _start_clock(self, track_id: int, class_name: str, sighting: _Sighting) -> _Incident:
        box = sighting.box
        at = sighting.frame.timestamp
        return _Incident(
            track_id=track_id,
            class_name=class_name,
            entered_at=at,
            clock_anchor=_anchor(box),
            clock_box_height=float(box[3] - box[1]),
            entry=sighting,
            latest=sighting,
            not_before=self._rearmed_at(box, at),
            plate=self._plate_tallies() if self._plate_tallies is not None else None,
        )

    def _rearmed_at(self, box: FloatArray, at: datetime) -> datetime | None:
        """When a clock starting on this box may open: later than now only near a recent clear."""
        horizon = self._tracker.rearm_seconds
        self._cleared_spots = [
            s for s in self._cleared_spots if (at - s.cleared_at).total_seconds() < horizon
        ]
        recent = [s.cleared_at for s in self._cleared_spots if self._same_spot(box, s.box)]
        if not recent:
            return None
        return max(recent) + timedelta(seconds=horizon)

    def _same_spot(self, box: FloatArray, other: FloatArray) -> bool:
        if box_iou(box, other) >= self._tracker.rejoin_iou:
            return True
        distance = float(np.linalg.norm(_anchor(box) - _anchor(other)))
        return distance <= self._tracker.max_drift * max(float(other[3] - other[1]), 1.0)

    def _rejoin(self, track_id: int, box: FloatArray, current_ids: set[int]) -> _Incident | None:
        """A new track id on a lost incident's spot is that incident: it keeps its clock."""
        best: tuple[float, int] | None = None
        for old_id, incident in self._incidents.items():
            if old_id in current_ids or not self._same_spot(box, incident.latest.box):
                continue
            overlap = box_iou(box, incident.latest.box)
            if best is None or overlap > best[0]:
                best = (overlap, old_id)
        if best is None:
            return None
        incident = self._incidents.pop(best[1])
        incident.track_id = track_id
        self._incidents[track_id] = incident
        return incident

    def _rejoin_by_plate(self, track_id: int, current_ids: set[int]) -> None:
        """A fresh clock whose plate matches a lost incident's is that incident, wherever it is.

        Position cannot tie them when the vehicle was hidden while it moved (a van pulling
        forward behind a bus); its plate can.
        """
        fresh = self._incidents.get(track_id)
        plate = fresh.best_plate() if fresh is not None else None
        if fresh is None or plate is None or fresh.violation_id is not None:
            return
        for old_id, lost in self._incidents.items():
            if old_id in current_ids or lost is fresh:
                continue
            lost_plate = lost.best_plate()
            if lost_plate is not None and lost_plate.text == plate.text:
                del self._incidents[old_id]
                lost.track_id, lost.latest = track_id, fresh.latest
                lost.clock_anchor, lost.clock_box_height = (
                    fresh.clock_anchor,
                    fresh.clock_box_height,
                )
                self._incidents[track_id] = lost
                return

    def _observe(self, incident: _Incident, sighting: _Sighting) -> list[RuleEvent]:
        now = sighting.frame.timestamp
        drift = float(np.linalg.norm(_anchor(sighting.box) - incident.clock_anchor))
        events: list[RuleEvent] = []
        if drift > self._tracker.max_drift * max(incident.clock_box_height, 1.0):
            # It moved: whatever stood still has left; a fresh clock starts where it is now.
            if incident.violation_id is not None:
                events.append(self._cleared(incident, sighting.frame))
            self._incidents[incident.track_id] = self._start_clock(
                incident.track_id, incident.class_name, sighting
            )
            return events
        incident.latest = sighting
        self._read_plate(incident, sighting)
        if incident.violation_id is None:
            self._keep_panorama(incident, sighting)
            due = incident.dwell_at(now) >= self.zone.config.dwell_seconds
            if due and (incident.not_before is None or now >= incident.not_before):
                earlier = [incident.entry, *incident.panoramas]
                similarity = max(same_look(seen, sighting) for seen in earlier)
                if similarity < self._tracker.min_same_look:
                    # Another object took the spot (a swap at a kerb, a queue moving up): the
                    # clock restarts for whatever stands there now. Any earlier sighting that
                    # looks alike will do, so a passer-by in front at the crossing costs nothing.
                    self._incidents[incident.track_id] = self._start_clock(
                        incident.track_id, incident.class_name, sighting
                    )
                    return events
                events.append(self._opened(incident))
        elif incident.last_update_at is not None and (
            (now - incident.last_update_at).total_seconds()
            >= self._evidence.update_interval_seconds
        ):
            events.append(self._updated(incident))
        return events

    def _read_plate(self, incident: _Incident, sighting: _Sighting) -> None:
        if incident.plate is None:
            return
        now = sighting.frame.timestamp
        last = incident.last_plate_read_at
        if last is not None and (now - last).total_seconds() < self._evidence.plate_read_seconds:
            return
        incident.last_plate_read_at = now
        incident.plate.add(sighting.frame.image, sighting.box)

    def _keep_panorama(self, incident: _Incident, sighting: _Sighting) -> None:
        """A panorama every interval over the dwell: they show the object stayed put."""
        if not incident.panorama_seconds:
            dwell = self.zone.config.dwell_seconds
            incident.panorama_seconds = self._evidence.dwell_frame_seconds or dwell / 2
        previous = incident.panoramas[-1] if incident.panoramas else incident.entry
        elapsed = (sighting.frame.timestamp - previous.frame.timestamp).total_seconds()
        if elapsed >= incident.panorama_seconds and incident.dwell_at(sighting.frame.timestamp) < (
            self.zone.config.dwell_seconds
        ):
            incident.panoramas.append(sighting)
            if len(incident.panoramas) > self._evidence.max_dwell_frames:
                # Thin evenly and space the next ones twice as far: the spread stays even.
                del incident.panoramas[1::2]
                incident.panorama_seconds *= 2

    def _panorama(
        self, incident: _Incident, sighting: _Sighting, label: EvidenceLabel
    ) -> EvidenceFrame:
        at = sighting.frame.timestamp
        # Numbers only: the burnt-in picture carries no words in any one language.
        box_label = f"#{incident.track_id} {incident.dwell_at(at):.0f}s"
        return self._pictures.panorama(sighting.frame, sighting.box, box_label, label)

    def _closeup(self, incident: _Incident, sighting: _Sighting) -> EvidenceFrame:
        return self._pictures.closeup(sighting.frame, sighting.box, incident.best_plate())

    def _event(
        self, phase: Phase, incident: _Incident, at: datetime, evidence: list[EvidenceFrame]
    ) -> RuleEvent:
        assert incident.violation_id is not None
        return RuleEvent(
            phase=phase,
            violation_id=incident.violation_id,
            zone_id=self.zone.config.id,
            started_at=incident.entered_at,
            observed_at=at,
            dwell_seconds=incident.dwell_at(at),
            object=incident.observed(),
            evidence=evidence,
            plate=incident.best_plate(),
        )

    def _opened(self, incident: _Incident) -> RuleEvent:
        now = incident.latest.frame.timestamp
        incident.violation_id = uuid.uuid4()
        incident.last_update_at = now
        sightings = [
            (incident.entry, EvidenceLabel.ENTRY),
            *((s, EvidenceLabel.MIDWAY) for s in incident.panoramas),
            (incident.latest, EvidenceLabel.DWELL_CROSSED),
        ]
        evidence = [self._panorama(incident, s, label) for s, label in sightings]
        evidence.append(self._closeup(incident, incident.latest))
        incident.panoramas.clear()  # the frames are on the wire now; free the memory
        return self._event(Phase.OPENED, incident, now, evidence)

    def _updated(self, incident: _Incident) -> RuleEvent:
        now = incident.latest.frame.timestamp
        incident.last_update_at = now
        incident.updates += 1
        evidence = []
        if incident.frames_wanted or update_carries_frames(incident.updates):
            incident.frames_wanted = False
            evidence = [
                self._panorama(incident, incident.latest, EvidenceLabel.LATEST),
                self._closeup(incident, incident.latest),
            ]
        return self._event(Phase.UPDATED, incident, now, evidence)

    def _cleared(self, incident: _Incident, frame: Frame) -> RuleEvent:
        evidence = [self._pictures.cleared(frame)]
        event = self._event(Phase.CLEARED, incident, frame.timestamp, evidence)
        self._cleared_spots.append(_ClearedSpot(incident.latest.box, frame.timestamp))
        # Dwell ends when the object was last seen, not when the grace ran out.
        return replace(event, dwell_seconds=incident.dwell_at(incident.last_seen))
