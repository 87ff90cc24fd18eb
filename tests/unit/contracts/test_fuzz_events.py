"""Fuzzing the event parser through ingest's real handler on a real (migrated) SQLite database.

Arbitrary bytes, arbitrary JSON, and valid events with one part made wrong go into
ViolationHandler.handle. It must never raise: a bad message ends as a refusal (an ack with
outcome "rejected", or no ack when it names no message id). And it never leaves a partial record:
either the whole event is stored (event row, its evidence, its case, the case's evidence), or no
row changes at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from contracts.acks import AckOutcome, IngestAck
from contracts.events import Phase, ViolationEvent
from contracts.topics import violation_topic
from storage.tables import Case, CaseEvidence, CaseTransition, Event, Evidence
from tests.factories import (
    GATEWAY,
    OTHER_CAMERA,
    OTHER_GATEWAY,
    OTHER_SITE,
    SITE,
    EventFactory,
    IngestRig,
    make_ingest,
    migrated_database,
)

FUZZ_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    # One database for all examples on purpose: each example checks row counts around itself.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
COUNTED = (Event, Evidence, Case, CaseEvidence, CaseTransition)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)

topics = st.sampled_from(
    [
        EventFactory().topic,
        violation_topic(OTHER_SITE, OTHER_GATEWAY, OTHER_CAMERA),  # another gateway's camera
        violation_topic(SITE, OTHER_GATEWAY, "cam-a1"),  # right camera, wrong gateway
        f"civicwatch/v1/{SITE}/{GATEWAY}/status",
        "civicwatch/v1",
        "",
    ]
)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[IngestRig]:
    with migrated_database(f"sqlite:///{tmp_path / 'fuzz.db'}") as (_engine, sessions):
        yield make_ingest(sessions, tmp_path / "evidence")


def _counts(rig: IngestRig) -> dict[str, int]:
    with rig.session_factory() as session:
        return {
            table.__tablename__: int(session.scalar(select(func.count()).select_from(table)) or 0)
            for table in COUNTED
        }


def _handle_and_check(rig: IngestRig, topic: str, payload: bytes) -> IngestAck | None:
    """Hand one message to the handler; assert all-or-nothing on the database."""
    before = _counts(rig)
    ack = rig.handler.handle(topic, payload)  # any exception fails the test
    after = _counts(rig)
    if ack is None or ack.outcome is not AckOutcome.STORED:
        assert after == before, f"a {ack and ack.outcome} message changed rows: {ack}"
        return ack
    assert after["events"] == before["events"] + 1
    event = ViolationEvent.model_validate_json(payload)
    _assert_complete_record(rig, event)
    return ack


def _assert_complete_record(rig: IngestRig, event: ViolationEvent) -> None:
    with rig.session_factory() as session:
        assert session.get(Event, event.message_id) is not None
        case = session.scalar(select(Case).where(Case.violation_id == event.violation_id))
        assert case is not None, "an event stored without its case"
        case_frames = set(
            session.scalars(select(CaseEvidence.sha256).where(CaseEvidence.case_id == case.id))
        )
        for frame in event.evidence:
            assert session.get(Evidence, frame.sha256) is not None, "evidence row missing"
            assert frame.sha256 in case_frames, "case evidence missing"
            assert rig.evidence_store.exists(frame.sha256), "evidence file missing"


def _valid_document(factory: EventFactory, phase: Phase) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(factory.event(phase=phase, frames=1).to_wire())
    return document


@FUZZ_SETTINGS
@given(topic=topics, payload=st.binary(max_size=512))
def test_arbitrary_bytes_are_refused_cleanly(rig: IngestRig, topic: str, payload: bytes) -> None:
    ack = _handle_and_check(rig, topic, payload)
    assert ack is None or ack.outcome is AckOutcome.REJECTED


@FUZZ_SETTINGS
@given(topic=topics, document=json_values)
def test_arbitrary_json_is_refused_cleanly(rig: IngestRig, topic: str, document: Any) -> None:
    ack = _handle_and_check(rig, topic, json.dumps(document).encode())
    assert ack is None or ack.outcome is AckOutcome.REJECTED


def _set_path(document: dict[str, Any], path: list[str | int], value: Any) -> None:
    target: Any = document
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


def _paths(value: Any, prefix: list[str | int]) -> Iterator[list[str | int]]:
    """Every key path inside a JSON document."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield [*prefix, key]
            yield from _paths(child, [*prefix, key])
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield [*prefix, index]
            yield from _paths(child, [*prefix, index])


@FUZZ_SETTINGS
@given(data=st.data(), phase=st.sampled_from(list(Phase)), topic=topics)
def test_valid_events_with_one_part_wrong(
    rig: IngestRig, data: st.DataObject, phase: Phase, topic: str
) -> None:
    """Structured but wrong: a real event with one field replaced, removed, or bytes damaged."""
    factory = EventFactory()
    document = _valid_document(factory, phase)
    how = data.draw(st.sampled_from(["replace", "remove", "truncate", "flip"]), label="how")
    payload = json.dumps(document).encode()
    if how in ("replace", "remove"):
        path = data.draw(st.sampled_from(list(_paths(document, []))), label="path")
        if how == "replace":
            _set_path(document, path, data.draw(json_values, label="value"))
        else:
            parent: Any = document
            for part in path[:-1]:
                parent = parent[part]
            del parent[path[-1]]
        payload = json.dumps(document).encode()
    elif how == "truncate":
        payload = payload[: data.draw(st.integers(0, len(payload) - 1), label="cut")]
    else:
        position = data.draw(st.integers(0, len(payload) - 1), label="position")
        payload = payload[:position] + bytes([payload[position] ^ 0xFF]) + payload[position + 1 :]
    ack = _handle_and_check(rig, topic, payload)
    if ack is not None and ack.outcome is AckOutcome.REJECTED:
        assert ack.reason, "a refusal must say why"


NUMERIC_PATHS: list[tuple[str | int, ...]] = [
    ("sequence",),
    ("dwell_seconds",),
    ("blocked_share",),
    ("object", "confidence"),
    ("object", "box", "x2"),
    ("evidence", 0, "width"),
    ("evidence", 0, "height"),
]


@FUZZ_SETTINGS
@example(path=("sequence",), value=2**63)
@given(
    path=st.sampled_from(NUMERIC_PATHS),
    value=st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True),
)
def test_numbers_out_of_any_range_are_refused_cleanly(
    rig: IngestRig, path: tuple[str | int, ...], value: int | float
) -> None:
    """Numbers past what a database column holds (sequence 2**63: OverflowError in the driver)
    are refused, not raised: raised, such a message would never be acked and come back forever.
    """
    factory = EventFactory()
    document = _valid_document(factory, Phase.OPENED)
    _set_path(document, list(path), value)
    _handle_and_check(rig, factory.topic, json.dumps(document).encode())


def test_the_unmodified_event_is_stored_whole(rig: IngestRig) -> None:
    """The control for the fuzzers: the same path stores a correct event completely."""
    factory = EventFactory()
    payload = json.dumps(_valid_document(factory, Phase.OPENED)).encode()
    ack = _handle_and_check(rig, factory.topic, payload)
    assert ack is not None
    assert ack.outcome is AckOutcome.STORED
    assert isinstance(ack.message_id, UUID)
