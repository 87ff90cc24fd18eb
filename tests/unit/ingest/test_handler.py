"""Refused messages: counted, answered when they name a message_id, and never half stored."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from contracts.acks import AckOutcome
from contracts.topics import violation_topic
from dispatch.config import RoutingSettings
from dispatch.routing import Router
from ingest.handler import is_transient
from ingest.validation import RefusalReason
from storage.database import SessionFactory
from storage.routing import OpenedCase, RouteDecision
from storage.tables import Base
from tests.factories import (
    CAMERA,
    GATEWAY,
    OTHER_SITE,
    SITE,
    EventFactory,
    jpeg_bytes,
    make_ingest,
    migrated_database,
)


def _row_counts(sessions: SessionFactory) -> dict[str, int]:
    with sessions() as session:
        return {
            table.name: session.scalar(select(func.count()).select_from(table)) or 0
            for table in Base.metadata.sorted_tables
        }


def test_each_refusal_stores_nothing_and_counts_its_reason(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    rig = make_ingest(session_factory, tmp_path / "evidence", max_payload_bytes=64 * 1024)
    # Bookkeeping rows the schema itself holds (the case lists' version) are no stored item.
    empty = _row_counts(session_factory)
    edge = EventFactory()
    good = json.loads(edge.event().to_wire())
    bad_hash = json.loads(edge.event().to_wire())
    bad_hash["evidence"][1]["data"] = base64.b64encode(jpeg_bytes(4242)).decode()
    cases: list[tuple[RefusalReason, str, bytes]] = [
        (RefusalReason.MALFORMED_JSON, edge.topic, b"{nope"),
        (
            RefusalReason.SCHEMA_VERSION,
            edge.topic,
            json.dumps({**good, "schema_version": "2.0"}).encode(),
        ),
        (RefusalReason.OVERSIZE, edge.topic, json.dumps({**good, "pad": "x" * 70_000}).encode()),
        (RefusalReason.INVALID, edge.topic, json.dumps({**good, "phase": "parked"}).encode()),
        (
            RefusalReason.UNKNOWN_CAMERA,
            violation_topic(SITE, GATEWAY, "cam-x"),
            json.dumps({**good, "camera_id": "cam-x"}).encode(),
        ),
        (
            RefusalReason.TOPIC_MISMATCH,
            violation_topic(OTHER_SITE, GATEWAY, CAMERA),
            json.dumps(good).encode(),
        ),
        (RefusalReason.UNKNOWN_ZONE, edge.topic, json.dumps({**good, "zone_id": "roof"}).encode()),
        (
            RefusalReason.ZONE_KIND,
            edge.topic,
            json.dumps({**good, "kind": "fire_lane_blocking"}).encode(),
        ),
        (RefusalReason.EVIDENCE_HASH, edge.topic, json.dumps(bad_hash).encode()),
        (
            RefusalReason.EVIDENCE_TYPE,
            edge.topic,
            json.dumps(
                {**good, "evidence": [{**good["evidence"][0], "content_type": "text/html"}]}
            ).encode(),
        ),
        (
            RefusalReason.NESTING,
            edge.topic,
            json.dumps({**good, "extra": json.loads("[" * 40 + "]" * 40)}).encode(),
        ),
    ]
    for reason, topic, payload in cases:
        ack = rig.handler.handle(topic, payload)
        assert rig.metrics.refusal_count(reason) == 1, reason
        if reason is RefusalReason.MALFORMED_JSON:
            assert ack is None  # nothing to name: the edge cannot be told
        else:
            assert ack is not None
            assert ack.outcome is AckOutcome.REJECTED
            assert ack.reason.startswith(reason.value)
    assert _row_counts(session_factory) == empty
    assert empty["events"] == empty["evidence"] == empty["cases"] == 0
    assert not list((tmp_path / "evidence").rglob("*.jpg"))

    # The service is unharmed: a valid message is still stored.
    ack = rig.handler.handle(edge.topic, json.dumps(good).encode())
    assert ack is not None
    assert ack.outcome is AckOutcome.STORED
    assert _row_counts(session_factory)["events"] == 1


def test_a_poison_message_is_refused_alone_and_its_batch_is_stored(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    """Valid by the contract, refused for good by the store: routing its case raises.

    (The contract now refuses the numbers no database holds, so the refusal comes from the
    case-opened hook; any non-transient error there is handled the same way.)
    """
    edge = EventFactory()
    good_before, poison, good_after = edge.event(), edge.event(), edge.event()
    router = Router(RoutingSettings())

    def route_but_not_the_poison(cases: Sequence[OpenedCase]) -> list[RouteDecision]:
        for case in cases:
            if case.violation_id == poison.violation_id:
                raise ValueError(f"no route for violation {case.violation_id}")
        return router.dispatch_new_cases(cases)

    rig = make_ingest(session_factory, tmp_path / "evidence", route_cases=route_but_not_the_poison)
    batch = [(edge.topic, event.to_wire()) for event in (good_before, poison, good_after)]

    acks = rig.handler.handle_batch(batch)

    assert [ack.outcome if ack else None for ack in acks] == [
        AckOutcome.STORED,
        AckOutcome.REJECTED,
        AckOutcome.STORED,
    ]
    assert acks[1] is not None
    assert acks[1].message_id == poison.message_id
    assert acks[1].reason.startswith(RefusalReason.STORE_FAILED.value)
    assert rig.metrics.refusal_count(RefusalReason.STORE_FAILED) == 1
    assert _row_counts(session_factory)["events"] == 2


def test_a_full_disk_stores_and_confirms_nothing_until_space_returns(tmp_path: Path) -> None:
    """SQLite's max_page_count makes the database 'full' for real: SQLITE_FULL on write."""
    url = f"sqlite:///{tmp_path / 'small.db'}"
    with migrated_database(url) as (engine, sessions):
        limit = {"pages": 0}

        @event.listens_for(engine, "checkout")
        def _cap_size(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA max_page_count = {limit['pages']}")
            cursor.close()

        with engine.connect() as connection:
            pages = int(connection.exec_driver_sql("PRAGMA page_count").scalar() or 0)
        limit["pages"] = pages + 1  # one page more: the first batch cannot fit
        rig = make_ingest(sessions, tmp_path / "evidence")
        edge = EventFactory()
        batch = [(edge.topic, edge.event().to_wire()) for _ in range(20)]

        with pytest.raises(OperationalError, match="full"):
            rig.handler.handle_batch(batch)
        assert is_transient(OperationalError("INSERT", {}, Exception("database or disk is full")))
        assert _row_counts(sessions)["events"] == 0
        assert rig.metrics.value("civicwatch_ingest_events_stored_total") == 0

        limit["pages"] = 1_000_000  # space is back
        acks = rig.handler.handle_batch(batch)
        assert {ack.outcome for ack in acks if ack} == {AckOutcome.STORED}
        assert _row_counts(sessions)["events"] == 20
