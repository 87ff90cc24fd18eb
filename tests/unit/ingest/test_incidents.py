"""Incidents, not messages: batches, merging across cameras, plates, chains, gaps and status.

Runs on SQLite and PostgreSQL (the ``session_factory`` fixture). Evidence images are small
generated JPEGs: ingest hashes and files them, it never decodes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

from sqlalchemy import func, select

from contracts.acks import AckOutcome
from contracts.events import Phase
from contracts.status import CameraHealth, CameraProblem, CameraStatus, DetectionPath
from dispatch.config import RoutingSettings
from dispatch.routing import Router
from ingest.config import IngestSettings
from storage.database import SessionFactory
from storage.routing import OpenedCase, RouteDecision
from storage.tables import (
    CameraStatusRow,
    Case,
    CaseEvidence,
    CaseState,
    CaseViolation,
    Event,
    Evidence,
    SequenceGap,
)
from tests.factories import T0
from tests.unit.ingest.helpers import (
    GATEWAY,
    NORTH_CAMERA,
    OTHER_PLATE,
    PLATE,
    SITE,
    SOUTH_CAMERA,
    YARD_CAMERA,
    YARD_ZONE,
    ZONE,
    camera_factory,
    chained,
    make_rig,
    with_plate,
    with_redacted_copies,
)


def _count(sessions: SessionFactory, table: type[object]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


def _cases(sessions: SessionFactory) -> list[Case]:
    with sessions() as session:
        cases = list(session.scalars(select(Case).order_by(Case.id)))
        for case in cases:  # load what the assertions read before the session closes
            _ = (case.violation_ids, case.related_case_ids, case.transitions, case.evidence)
        return cases


def test_one_batch_is_idempotent_inside_and_across_batches(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    rig = make_rig(session_factory, tmp_path / "evidence")
    north = camera_factory(NORTH_CAMERA, 1)
    a, b, c = (north.event(zone_id=ZONE) for _ in range(3))
    outcomes = rig.service.store_batch([a, b, a])
    assert outcomes == [AckOutcome.STORED, AckOutcome.STORED, AckOutcome.DUPLICATE]
    assert rig.service.store_batch([b, c]) == [AckOutcome.DUPLICATE, AckOutcome.STORED]
    assert _count(session_factory, Event) == 3
    assert _count(session_factory, Case) == 3
    assert rig.metrics.value("civicwatch_ingest_duplicates_total") == 2
    assert rig.metrics.value("civicwatch_ingest_events_stored_total") == 3


def test_two_cameras_reading_the_same_plate_make_one_case(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    rig = make_rig(session_factory, tmp_path / "evidence")
    north, yard = camera_factory(NORTH_CAMERA, 1), camera_factory(YARD_CAMERA, 100)
    first = with_plate(north.event(zone_id=ZONE, at=T0), PLATE)
    # A different place (no shared location): only the plate says it is the same incident.
    second = with_plate(yard.event(zone_id=YARD_ZONE, at=T0 + timedelta(minutes=2)), PLATE)
    rig.service.store(first)
    rig.service.store(second)

    [case] = _cases(session_factory)
    assert case.violation_ids == [first.violation_id, second.violation_id]
    assert {item.sha256 for item in case.evidence} == {
        frame.sha256 for event in (first, second) for frame in event.evidence
    }
    assert case.last_observed_at == second.observed_at
    assert any("merged violation" in t.reason and "plate" in t.reason for t in case.transitions)
    assert rig.metrics.value("civicwatch_ingest_violations_merged_total") == 1
    assert rig.metrics.value("civicwatch_ingest_cases_opened_total") == 1


def test_two_cameras_on_one_location_make_one_case_even_in_one_batch(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    rig = make_rig(session_factory, tmp_path / "evidence")
    north, south = camera_factory(NORTH_CAMERA, 1), camera_factory(SOUTH_CAMERA, 100)
    seen_north = north.event(zone_id=ZONE, at=T0)
    seen_south = south.event(zone_id=ZONE, at=T0 + timedelta(seconds=30))
    rig.service.store_batch([seen_north, seen_south])
    [case] = _cases(session_factory)
    assert case.violation_ids == [seen_north.violation_id, seen_south.violation_id]
    assert case.location is not None

    # Updates of either violation keep landing on that one case.
    rig.service.store(south.event(Phase.UPDATED, seen_south.violation_id, zone_id=ZONE))
    assert _count(session_factory, Case) == 1


def test_location_does_not_merge_other_plates_late_sightings_or_one_camera(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    settings = IngestSettings(merge_window_seconds=600)
    rig = make_rig(session_factory, tmp_path / "evidence", settings=settings)
    north, south = camera_factory(NORTH_CAMERA, 1), camera_factory(SOUTH_CAMERA, 100)
    rig.service.store(with_plate(north.event(zone_id=ZONE, at=T0), PLATE))
    # Same place, another car: plates differ.
    rig.service.store(with_plate(south.event(zone_id=ZONE, at=T0), OTHER_PLATE))
    # An hour later (past the window): same camera, same place twice. The edge already said
    # these are two objects.
    rig.service.store(north.event(zone_id=ZONE, at=T0 + timedelta(hours=1)))
    rig.service.store(north.event(zone_id=ZONE, at=T0 + timedelta(hours=1, minutes=1)))
    # Same place, other camera, but long after the window.
    rig.service.store(south.event(zone_id=ZONE, at=T0 + timedelta(hours=5)))
    assert _count(session_factory, Case) == 5
    assert rig.metrics.value("civicwatch_ingest_violations_merged_total") == 0


def test_a_repeat_offender_is_linked_to_earlier_cases_closed_or_not(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    rig = make_rig(session_factory, tmp_path / "evidence")
    north = camera_factory(NORTH_CAMERA, 1)
    rig.service.store(with_plate(north.event(zone_id=ZONE, at=T0), PLATE))
    with session_factory.begin() as session:
        session.scalars(select(Case)).one().state = CaseState.CLOSED
    tomorrow = T0 + timedelta(days=1)
    rig.service.store(with_plate(north.event(zone_id=ZONE, at=tomorrow), PLATE))
    rig.service.store(with_plate(north.event(zone_id=ZONE, at=tomorrow), OTHER_PLATE))

    earlier, repeat, stranger = _cases(session_factory)
    assert repeat.related_case_ids == [earlier.id]
    assert earlier.related_case_ids == [repeat.id]
    assert stranger.related_case_ids == []
    assert repeat.plate_text == PLATE


def test_the_case_keeps_the_best_plate_reading(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    rig = make_rig(session_factory, tmp_path / "evidence")
    north = camera_factory(NORTH_CAMERA, 1)
    violation = uuid4()
    readings = [("浙A1234S", 0.6), (PLATE, 0.95), ("浙A12346", 0.7)]
    for number, (text, confidence) in enumerate(readings):
        phase = Phase.OPENED if number == 0 else Phase.UPDATED
        event = north.event(phase, violation, zone_id=ZONE, at=T0 + timedelta(minutes=number))
        event = event.model_copy(update={"blocked_share": 0.1 * (number + 1)})
        rig.service.store(with_plate(event, text, confidence))
    [case] = _cases(session_factory)
    assert (case.plate_text, case.plate_confidence) == (PLATE, 0.95)
    assert case.blocked_share is not None
    assert abs(case.blocked_share - 0.3) < 1e-9
    with session_factory() as session:
        stored = session.scalars(select(Event.plate_text).order_by(Event.sequence)).all()
    assert stored == [text for text, _ in readings]


def test_the_evidence_chain_is_verified_and_a_break_is_flagged_not_refused(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    rig = make_rig(session_factory, tmp_path / "evidence")
    north = camera_factory(NORTH_CAMERA, 1)
    good = uuid4()
    opened, updated = chained(
        [north.event(Phase.OPENED, good, zone_id=ZONE), north.event(Phase.UPDATED, good, ZONE)]
    )
    rig.service.store(updated)  # out of order: the chain cannot verify yet
    assert _cases(session_factory)[0].chain_broken
    rig.service.store(opened)  # the hole is filled: whole again
    assert not _cases(session_factory)[0].chain_broken

    bad = uuid4()
    first, second = chained(
        [north.event(Phase.OPENED, bad, zone_id=ZONE), north.event(Phase.UPDATED, bad, ZONE)]
    )
    swapped = second.evidence[::-1]  # reordered frames: each link now points at the wrong one
    tampered = second.model_copy(update={"evidence": swapped})
    assert rig.service.store_batch([first, tampered]) == [AckOutcome.STORED] * 2
    tampered_case = _cases(session_factory)[1]
    assert tampered_case.chain_broken
    with session_factory() as session:
        flags = dict(
            session.execute(select(CaseViolation.violation_id, CaseViolation.chain_broken)).all()
        )
    assert flags == {good: False, bad: True}
    assert rig.metrics.value("civicwatch_ingest_chain_breaks_total") == 2  # transient + real


def test_redacted_copies_are_filed_and_linked_to_their_frames(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    rig = make_rig(session_factory, tmp_path / "evidence")
    event = with_redacted_copies(camera_factory(NORTH_CAMERA, 1).event(zone_id=ZONE))
    rig.service.store(event)
    with session_factory() as session:
        links = {row.sha256: row for row in session.scalars(select(CaseEvidence))}
    for frame in event.evidence:
        assert frame.redacted is not None
        assert links[frame.sha256].redacted_sha256 == frame.redacted.sha256
        assert links[frame.sha256].faces_blurred == 1
        assert rig.evidence_store.read(frame.redacted.sha256) == frame.redacted.data
    assert _count(session_factory, Evidence) == 2 * len(event.evidence)
    with session_factory() as session:  # the stored message keeps no image bytes
        payload = session.scalars(select(Event.payload)).one()
    assert all("data" not in frame["redacted"] for frame in payload["evidence"])


def test_a_gap_closes_as_late_messages_arrive_and_survives_a_restart(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    rig = make_rig(session_factory, tmp_path / "evidence")
    north = camera_factory(NORTH_CAMERA, 1)
    events = [north.event(zone_id=ZONE) for _ in range(6)]  # sequences 0..5
    rig.service.store_batch([events[0], events[5]])
    assert rig.metrics.value("civicwatch_ingest_sequence_gaps_total") == 4
    assert rig.metrics.value("civicwatch_ingest_sequence_missing") == 4

    restarted = make_rig(session_factory, tmp_path / "evidence")  # a new process, same database
    restarted.service.refresh_missing_gauge()
    assert restarted.metrics.value("civicwatch_ingest_sequence_missing") == 4
    restarted.service.store(events[2])  # splits 1..4 into 1 and 3..4
    restarted.service.store_batch([events[1], events[4]])
    assert restarted.metrics.value("civicwatch_ingest_sequence_missing") == 1
    assert restarted.metrics.value("civicwatch_ingest_sequence_gaps_filled_total") == 3
    restarted.service.store(events[2])  # a duplicate fills nothing
    with session_factory() as session:
        [gap] = session.scalars(select(SequenceGap)).all()
    assert (gap.camera_id, gap.first, gap.last) == (NORTH_CAMERA, 3, 3)
    restarted.service.store(events[3])
    assert _count(session_factory, SequenceGap) == 0
    assert restarted.metrics.value("civicwatch_ingest_sequence_missing") == 0


def test_camera_status_keeps_problems_and_detection_path(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    rig = make_rig(session_factory, tmp_path / "evidence")
    status = CameraStatus(
        site_id=SITE,
        gateway_id=GATEWAY,
        camera_id=NORTH_CAMERA,
        health=CameraHealth.DEGRADED,
        at=T0,
        problems=[CameraProblem.NO_DETECTOR, CameraProblem.BLURRED],
        detection_path=DetectionPath.FOREGROUND_ONLY,
    )
    rig.service.record_camera_status(status)
    rig.service.record_camera_status(status.model_copy(update={"health": CameraHealth.OK}))
    with session_factory() as session:
        row = session.get(CameraStatusRow, NORTH_CAMERA)
        assert row is not None
        assert (row.health, row.problems, row.detection_path) == (
            "ok",
            ["no_detector", "blurred"],
            "foreground_only",
        )


def test_a_batch_routes_every_case_it_opens_in_one_call(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    router = Router(RoutingSettings())
    batches: list[int] = []

    def route_all(cases: Sequence[OpenedCase]) -> list[RouteDecision]:
        batches.append(len(cases))
        return router.dispatch_new_cases(cases)

    rig = make_rig(session_factory, tmp_path / "evidence", route_cases=route_all)
    north, yard = camera_factory(NORTH_CAMERA, 1), camera_factory(YARD_CAMERA, 2)
    opened = [
        north.event(zone_id=ZONE),
        yard.event(zone_id=YARD_ZONE),
        yard.event(zone_id=YARD_ZONE),
    ]
    update = north.event(Phase.UPDATED, violation_id=opened[0].violation_id, zone_id=ZONE)
    rig.service.store_batch([*opened, update])
    assert batches == [3]
    rig.service.store_batch(
        [north.event(Phase.CLEARED, violation_id=opened[0].violation_id, zone_id=ZONE)]
    )
    assert batches == [3]  # no case opened: routing not called
    cases = _cases(session_factory)
    assert len(cases) == 3
    for case in cases:
        assert (case.state, case.department) == ("dispatched", "law_enforcement")
        assert case.sla_due_at is not None
        trail = [(t.from_state, t.to_state, t.actor) for t in case.transitions]
        assert trail == [(None, "new", "ingest"), ("new", "dispatched", "dispatch")]
    assert cases[0].cleared_at is not None  # folded into the stored case by the second batch
    assert [c.cleared_at for c in cases[1:]] == [None, None]
