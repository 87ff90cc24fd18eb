"""DwellRule on hand-built tracked detections; time comes from the frames only."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import ultralytics

from contracts.events import EvidenceLabel, Phase, PlateReading
from contracts.sites import ZoneConfig
from edge.capture import ReplaySource
from edge.config import EvidenceSettings, TrackerSettings
from edge.detections import FloatArray, Frame, Image
from edge.rules import DwellRule, RuleEvent
from tests.unit.edge.conftest import T0, frame_at, tracked

PARKED = (150.0, 150.0, 250.0, 200.0)  # anchor (200, 200), inside the zone, 50 px tall


def make_rule(zone: ZoneConfig, **tracker: float) -> DwellRule:
    return DwellRule(
        "cam-1", zone, TrackerSettings(**tracker), EvidenceSettings(update_interval_seconds=20)
    )


def run(
    rule: DwellRule, steps: Sequence[tuple[float, Sequence[tuple[int, str, Sequence[float]]]]]
) -> list[RuleEvent]:
    events: list[RuleEvent] = []
    for i, (t, objects) in enumerate(steps):
        boxes = [(tid, name, (box[0], box[1], box[2], box[3])) for tid, name, box in objects]
        events.extend(rule.update(frame_at(t, i), tracked(*boxes)))
    return events


def seconds(start: float, stop: float, step: float = 1.0) -> list[float]:
    n = round((stop - start) / step)
    return [start + i * step for i in range(n + 1)]


def test_dwell_crossing_opens_exactly_once_with_verifiable_evidence(zone: ZoneConfig) -> None:
    rule = make_rule(zone)
    events = run(rule, [(t, [(7, "car", PARKED)]) for t in seconds(0, 45)])

    opened = [e for e in events if e.phase is Phase.OPENED]
    assert len(opened) == 1
    event = opened[0]
    assert event.dwell_seconds == 30.0
    assert event.started_at == frame_at(0).timestamp
    assert [f.label for f in event.evidence] == [
        EvidenceLabel.ENTRY,
        EvidenceLabel.MIDWAY,
        EvidenceLabel.DWELL_CROSSED,
        EvidenceLabel.CLOSEUP,
    ]
    assert [f.captured_at for f in event.evidence] == [
        frame_at(0).timestamp,
        frame_at(15).timestamp,
        frame_at(30).timestamp,
        frame_at(30).timestamp,
    ]
    closeup = event.evidence[-1]
    assert closeup.width == 320, "a 100 px vehicle (+15 % margins) is enlarged to 320 px"
    for frame in event.evidence:
        assert hashlib.sha256(frame.data).hexdigest() == frame.sha256
    assert event.object is not None
    assert event.object.class_name == "car"
    assert [e.phase for e in events] == [Phase.OPENED], "no update before the 20 s interval"


def test_updates_follow_the_interval_and_carry_the_latest_frame(zone: ZoneConfig) -> None:
    rule = make_rule(zone)
    events = run(rule, [(t, [(7, "car", PARKED)]) for t in seconds(0, 75)])
    updated = [e for e in events if e.phase is Phase.UPDATED]
    assert [e.dwell_seconds for e in updated] == [50.0, 70.0]
    assert all(
        [f.label for f in e.evidence] == [EvidenceLabel.LATEST, EvidenceLabel.CLOSEUP]
        for e in updated
    )
    assert len({e.violation_id for e in events}) == 1


def test_a_car_passing_through_never_opens(zone: ZoneConfig) -> None:
    rule = make_rule(zone)
    # Crawls 6 px/s across the zone for 40 s: slow, but never stationary.
    steps = [
        (t, [(3, "car", (100 + 6 * t - 50, 150, 100 + 6 * t + 50, 200))]) for t in seconds(0, 40)
    ]
    assert run(rule, steps) == []


def test_drift_beyond_the_limit_resets_the_clock(zone: ZoneConfig) -> None:
    rule = make_rule(zone, max_drift=0.5)
    moved = (180.0, 150.0, 280.0, 200.0)  # anchor moves 30 px > 0.5 * 50 px
    steps = [(t, [(1, "car", PARKED)]) for t in seconds(0, 20)]
    steps += [(t, [(1, "car", moved)]) for t in seconds(21, 45)]
    assert run(rule, steps) == [], "clock restarted at 21 s, so 45 s is only 24 s of dwell"
    opened = run(rule, [(t, [(1, "car", moved)]) for t in seconds(46, 52)])
    assert [e.phase for e in opened] == [Phase.OPENED]
    assert opened[0].started_at == frame_at(21).timestamp


def test_small_jitter_keeps_the_clock(zone: ZoneConfig) -> None:
    rule = make_rule(zone)
    steps = [
        (t, [(1, "car", (150 + (t % 3) * 4, 150, 250 + (t % 3) * 4, 200))]) for t in seconds(0, 31)
    ]
    assert [e.phase for e in run(rule, steps)] == [Phase.OPENED]


def test_an_object_unseen_within_grace_keeps_its_clock(zone: ZoneConfig) -> None:
    rule = make_rule(zone, grace_seconds=10)
    steps = [(t, [(1, "car", PARKED)]) for t in seconds(0, 20)]
    steps += [(t, []) for t in seconds(21, 25)]  # occluded for 5 s
    steps += [(t, [(1, "car", PARKED)]) for t in seconds(26, 31)]
    events = run(rule, steps)
    assert [e.phase for e in events] == [Phase.OPENED]
    assert events[0].started_at == frame_at(0).timestamp


def test_a_new_track_over_a_lost_one_inherits_its_clock_and_violation(zone: ZoneConfig) -> None:
    rule = make_rule(zone, grace_seconds=10, rejoin_iou=0.4)
    shifted = (152.0, 151.0, 252.0, 201.0)
    steps = [(t, [(1, "car", PARKED)]) for t in seconds(0, 35)]  # opens at 30 s
    steps += [(t, [(9, "person", (180, 120, 200, 200))]) for t in seconds(36, 39)]  # occluded
    steps += [(t, [(2, "car", shifted)]) for t in seconds(40, 100)]  # tracker gave a new id
    events = run(rule, steps)
    assert [e.phase for e in events if e.phase is Phase.OPENED] == [Phase.OPENED]
    assert len({e.violation_id for e in events}) == 1
    assert all(e.started_at == frame_at(0).timestamp for e in events)
    assert not [e for e in events if e.phase is Phase.CLEARED]


def test_a_new_track_elsewhere_starts_its_own_clock(zone: ZoneConfig) -> None:
    rule = make_rule(zone, grace_seconds=10)
    steps = [(t, [(1, "car", PARKED)]) for t in seconds(0, 20)]
    steps += [(t, [(2, "car", (110, 110, 150, 140))]) for t in seconds(21, 45)]  # no overlap
    assert run(rule, steps) == []


def test_cleared_after_the_grace_runs_out(zone: ZoneConfig) -> None:
    rule = make_rule(zone, grace_seconds=10)
    steps = [(t, [(1, "car", PARKED)]) for t in seconds(0, 40)]
    steps += [(t, []) for t in seconds(41, 60)]
    events = run(rule, steps)
    assert [e.phase for e in events] == [Phase.OPENED, Phase.CLEARED]
    cleared = events[-1]
    assert cleared.observed_at == frame_at(51).timestamp, "first frame past the 10 s grace"
    assert cleared.dwell_seconds == 40.0, "dwell ends when the car was last seen"
    assert [f.label for f in cleared.evidence] == [EvidenceLabel.CLEARED]
    assert rule.open_violations == 0


def test_panoramas_follow_the_configured_interval(zone: ZoneConfig) -> None:
    rule = DwellRule(
        "cam-1",
        zone,
        TrackerSettings(),
        EvidenceSettings(dwell_frame_seconds=5, max_dwell_frames=20),
    )
    events = run(rule, [(t, [(7, "car", PARKED)]) for t in seconds(0, 30)])
    [opened] = events
    midway = [f.captured_at for f in opened.evidence if f.label is EvidenceLabel.MIDWAY]
    assert midway == [frame_at(t).timestamp for t in (5, 10, 15, 20, 25)]


def test_panoramas_are_thinned_to_the_cap_but_keep_their_spread(zone: ZoneConfig) -> None:
    rule = DwellRule(
        "cam-1",
        zone,
        TrackerSettings(),
        EvidenceSettings(dwell_frame_seconds=1, max_dwell_frames=6),
    )
    [opened] = run(rule, [(t, [(7, "car", PARKED)]) for t in seconds(0, 30)])
    midway = [f.captured_at for f in opened.evidence if f.label is EvidenceLabel.MIDWAY]
    # 29 one-second panoramas thinned to at most 6, evenly spaced over the 30 s dwell.
    assert midway == [frame_at(t).timestamp for t in (1, 9, 17, 25)]


def test_a_car_that_returns_to_its_spot_waits_for_the_rearm_interval(zone: ZoneConfig) -> None:
    rule = make_rule(zone, grace_seconds=5, rearm_seconds=120)
    steps = [(t, [(1, "car", PARKED)]) for t in seconds(0, 40)]  # opens at 30 s
    steps += [(t, []) for t in seconds(41, 50)]  # cleared at 46 s
    steps += [(t, [(2, "car", PARKED)]) for t in seconds(51, 170)]  # back at the same spot
    events = run(rule, steps)
    assert [e.phase for e in events] == [Phase.OPENED, Phase.CLEARED, Phase.OPENED]
    second = events[-1]
    assert second.observed_at == frame_at(46 + 120).timestamp, "not before the re-arm interval"
    assert second.started_at == frame_at(51).timestamp, "a fresh clock from its return"
    assert second.violation_id != events[0].violation_id


def test_another_spot_is_not_held_back_by_a_rearm(zone: ZoneConfig) -> None:
    rule = make_rule(zone, grace_seconds=5, rearm_seconds=120)
    elsewhere = (110.0, 110.0, 150.0, 140.0)
    steps = [(t, [(1, "car", PARKED)]) for t in seconds(0, 40)]
    steps += [(t, []) for t in seconds(41, 50)]
    steps += [(t, [(2, "car", elsewhere)]) for t in seconds(51, 81)]
    events = run(rule, steps)
    assert [e.phase for e in events] == [Phase.OPENED, Phase.CLEARED, Phase.OPENED]
    assert events[-1].observed_at == frame_at(81).timestamp


def test_a_partly_hidden_car_with_a_new_id_rejoins_by_position(zone: ZoneConfig) -> None:
    """A pedestrian hides the car's front: the box shrinks (low IoU) but its spot is the same."""
    rule = make_rule(zone, grace_seconds=10, rejoin_iou=0.6)
    half = (200.0, 152.0, 250.0, 200.0)  # right half only; anchor 25 px away, within drift
    steps = [(t, [(1, "car", PARKED)]) for t in seconds(0, 20)]
    steps += [(t, [(5, "car", half)]) for t in seconds(21, 40)]
    events = run(rule, steps)
    assert [e.phase for e in events] == [Phase.OPENED]
    assert events[0].started_at == frame_at(0).timestamp


class _CountingTally:
    """A plate tally test double: the real one reads plates (tests/unit/edge/test_plates.py)."""

    reads: ClassVar[list[datetime]] = []

    def add(self, image: Image, box: FloatArray) -> None:
        self.reads.append(datetime.now(UTC))

    def best(self) -> PlateReading | None:
        return PlateReading(text="皖A12345", confidence=0.9, votes=len(self.reads))


def test_the_plate_is_read_at_an_interval_and_rides_on_every_phase(zone: ZoneConfig) -> None:
    _CountingTally.reads = []
    rule = DwellRule(
        "cam-1",
        zone,
        TrackerSettings(grace_seconds=5),
        EvidenceSettings(plate_read_seconds=4),
        plate_tallies=_CountingTally,
    )
    steps = [(t, [(1, "car", PARKED)]) for t in seconds(0, 40)]
    steps += [(t, []) for t in seconds(41, 50)]
    events = run(rule, steps)
    assert [e.phase for e in events] == [Phase.OPENED, Phase.CLEARED]
    assert all(e.plate is not None and e.plate.text == "皖A12345" for e in events)
    assert len(_CountingTally.reads) == 10, "seconds 1, 5, ..., 37: every 4 s while it stays"


def painted(seconds: float, colour: tuple[int, int, int], index: int = 0) -> Frame:
    """A generated frame with an object of one colour (with a darker stripe) in PARKED's box."""
    frame = frame_at(seconds, index)
    image = frame.image.copy()
    x1, y1, x2, y2 = (int(v) for v in PARKED)
    image[y1:y2, x1:x2] = colour
    image[y1 + 20 : y1 + 30, x1:x2] = tuple(c // 3 for c in colour)
    return Frame(image, index, frame.timestamp)


def test_another_object_taking_the_spot_restarts_the_clock(zone: ZoneConfig) -> None:
    """A red car leaves and a blue one pulls in under the same track id: not one dwell."""
    rule = make_rule(zone)
    events: list[RuleEvent] = []
    for i, t in enumerate(seconds(0, 60)):
        colour = (0, 0, 200) if t < 20 else (200, 0, 0)
        events += rule.update(painted(t, colour, i), tracked((1, "car", PARKED)))
    [opened] = events
    assert opened.started_at == frame_at(30).timestamp, "the blue car's clock started at 30 s"
    assert opened.observed_at == frame_at(60).timestamp


def test_the_same_object_opens_on_time_whatever_its_colour(zone: ZoneConfig) -> None:
    rule = make_rule(zone)
    events: list[RuleEvent] = []
    for i, t in enumerate(seconds(0, 31)):
        events += rule.update(painted(t, (40, 160, 220), i), tracked((1, "car", PARKED)))
    assert [e.observed_at for e in events] == [frame_at(30).timestamp]


def test_a_real_parked_van_keeps_its_clock_to_the_crossing(
    zone: ZoneConfig, shared_data: Path
) -> None:
    """The first frame of vtest.avi with the white van's box, held for the whole dwell."""
    image = next(iter(ReplaySource(shared_data / "clips" / "vtest.avi", start=T0))).image
    van = (652.8, 43.3, 722.7, 100.8)
    kerb = zone.model_copy(update={"polygon": [[600, 30], [768, 30], [768, 118], [600, 118]]})
    rule = make_rule(kerb)
    events: list[RuleEvent] = []
    for i, t in enumerate(seconds(0, 31)):
        frame = Frame(image, i, frame_at(t).timestamp)
        events += rule.update(frame, tracked((1, "truck", van)))
    assert [(e.phase, e.observed_at) for e in events] == [(Phase.OPENED, frame_at(30).timestamp)]


def test_a_vehicle_that_moved_while_hidden_is_found_again_by_its_plate(zone: ZoneConfig) -> None:
    """Lost behind a bus, it pulls forward: no overlap with its old spot, but the same plate."""
    _CountingTally.reads = []
    rule = DwellRule(
        "cam-1",
        zone,
        TrackerSettings(grace_seconds=10),
        EvidenceSettings(plate_read_seconds=1, update_interval_seconds=20),
        plate_tallies=_CountingTally,
    )
    elsewhere = (110.0, 110.0, 150.0, 140.0)
    steps = [(t, [(1, "car", PARKED)]) for t in seconds(0, 35)]  # opens at 30 s
    steps += [(t, []) for t in seconds(36, 40)]  # hidden
    steps += [(t, [(2, "car", elsewhere)]) for t in seconds(41, 80)]
    events = run(rule, steps)
    assert [e.phase for e in events] == [Phase.OPENED, Phase.UPDATED, Phase.UPDATED]
    assert len({e.violation_id for e in events}) == 1
    assert events[-1].started_at == frame_at(0).timestamp, "it keeps its clock"


def test_a_bus_in_a_real_photo_keeps_its_clock_to_the_crossing(zone: ZoneConfig) -> None:
    """Ultralytics' bus.jpg held still: two identical colour signatures must read as one look."""
    image = cv2.imread(str(Path(ultralytics.__file__).parent / "assets" / "bus.jpg"))
    assert image is not None
    bus = (3.4, 229.5, 793.1, 732.4)
    whole = zone.model_copy(update={"polygon": [[0, 0], [810, 0], [810, 1080], [0, 1080]]})
    rule = make_rule(whole)
    events: list[RuleEvent] = []
    for i, t in enumerate(seconds(0, 31)):
        frame = Frame(np.asarray(image, dtype=np.uint8), i, frame_at(t).timestamp)
        events += rule.update(frame, tracked((1, "car", bus)))
    assert [(e.phase, e.observed_at) for e in events] == [(Phase.OPENED, frame_at(30).timestamp)]
