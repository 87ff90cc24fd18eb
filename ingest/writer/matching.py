"""Which open case a new violation belongs to: same plate, same spot or same site location.

A plate counts only when it is decidable: both the new reading and the case's are at or above
``IngestSettings.plate_confidence_floor`` (contracts.exemptions.decidable_plate). A weaker
reading neither joins by plate nor keeps a violation out of a spot or location match.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import timedelta

from contracts.events import BoundingBox, ViolationEvent
from contracts.exemptions import decidable_plate
from ingest.config import IngestSettings
from ingest.writer.batch import Placed
from ingest.writer.case_rows import CaseRow
from storage.tables import OPEN_STATES


class LinkReason:
    ORIGIN = "origin"  # the violation that opened the case
    PLATE = "plate"  # another camera's violation of the same plate
    LOCATION = "location"  # another camera's violation at the same site location
    SPOT = "spot"  # the same camera's violation on the same spot: its gateway lost its state
    SAME_PLATE = "same_plate"  # case link: a repeat offender


SAME_SPOT_IOU = 0.4
"""Box overlap that puts two sightings on one spot (the edge's default rejoin_iou)."""
SAME_SPOT_DRIFT = 0.5
"""Or bottom-centres this close, in box heights (the edge's default max_drift)."""


class Candidates:
    """Cases a new violation might join, indexed by site and plate, by site and location, and
    by camera and zone."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str, str], dict[int, CaseRow]] = defaultdict(dict)

    def add(self, case: CaseRow) -> None:
        if case.plate_text is not None:
            self._by_key[("plate", case.site_id, case.plate_text)][id(case)] = case
        if case.location is not None:
            self._by_key[("location", case.site_id, case.location)][id(case)] = case
        self._by_key[("spot", case.camera_id, case.zone_id)][id(case)] = case

    def near(self, item: Placed) -> list[CaseRow]:
        found: dict[int, CaseRow] = {}
        if item.event.plate is not None:
            found.update(self._by_key.get(("plate", item.event.site_id, item.event.plate.text), {}))
        if item.zone.location is not None:
            found.update(self._by_key.get(("location", item.event.site_id, item.zone.location), {}))
        found.update(self._by_key.get(("spot", item.event.camera_id, item.event.zone_id), {}))
        return list(found.values())


def find_incident(
    item: Placed, candidates: list[CaseRow], settings: IngestSettings
) -> tuple[CaseRow, str] | None:
    """The open case of the same incident, and why it matches.

    Same plate wins over same spot, same spot over same location; the most recently seen case
    wins within a rule. A location match needs another camera, a spot match the same camera
    (see continues_on_spot); neither may have a disagreeing plate.
    """
    event, zone = item.event, item.zone
    floor = settings.plate_confidence_floor
    plate = decidable_plate(event.plate, floor)
    location = zone.location
    since = event.started_at - timedelta(seconds=settings.merge_window_seconds)

    def reason_to_join(case: CaseRow) -> str | None:
        if (
            case.site_id != event.site_id
            or case.kind != event.kind
            or case.state not in OPEN_STATES
            or case.last_observed_at < since
        ):
            return None
        case_plate = case.plate_text if _sure(case.plate_confidence, floor) else None
        if plate is not None and case_plate == plate:
            return LinkReason.PLATE
        plates_differ = plate is not None and case_plate not in (None, plate)
        if (
            location is not None
            and case.location == location
            and case.camera_id != event.camera_id
            and not plates_differ
        ):
            return LinkReason.LOCATION
        if not plates_differ and continues_on_spot(case, event):
            return LinkReason.SPOT
        return None

    matches = [(reason, case) for case in candidates if (reason := reason_to_join(case))]
    for wanted in (LinkReason.PLATE, LinkReason.SPOT, LinkReason.LOCATION):
        same = [case for reason, case in matches if reason == wanted]
        if same:
            return max(same, key=lambda case: case.last_observed_at), wanted
    return None


def _sure(confidence: float | None, floor: float) -> bool:
    return confidence is not None and confidence >= floor


def continues_on_spot(case: CaseRow, event: ViolationEvent) -> bool:
    """A new violation of the case's camera and zone that continues its open one.

    A running gateway opens a second violation on a spot only after the first cleared, so a
    new violation id on the spot of one still standing means the gateway lost its state
    (restarted, or lost its disk) and started the clock again. A new clock that started
    before the case was last seen ran alongside it: two objects.
    """
    if (
        case.camera_id != event.camera_id
        or case.zone_id != event.zone_id
        or case.cleared_at is not None
        or event.started_at < case.last_observed_at
        or event.object is None
        or case.box_x1 is None
        or case.box_y1 is None
        or case.box_x2 is None
        or case.box_y2 is None
    ):
        return False
    box = event.object.box
    x1, y1, x2, y2 = case.box_x1, case.box_y1, case.box_x2, case.box_y2
    if BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2).iou(box) >= SAME_SPOT_IOU:
        return True
    drift = math.hypot((x1 + x2 - box.x1 - box.x2) / 2, y2 - box.y2)
    return drift <= SAME_SPOT_DRIFT * max(y2 - y1, 1.0)
