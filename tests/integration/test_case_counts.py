"""The case lists' kept totals (dispatch/case_counts.py): X-Total-Count stays exact when cases
change, whoever changes them and however, on SQLite and PostgreSQL; only the lists it can keep
exact are kept."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update

from contracts.events import Phase, ViolationKind
from dispatch.case_counts import COUNTED_COLUMNS, KEPT_FILTERS, PAGE_FIELDS, CaseCounts
from dispatch.case_query import CaseQuery
from dispatch.config import ApiSettings
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.workflow import Workflow
from storage.database import SessionFactory
from storage.tables import Case, CaseEvidence, CaseListVersion, CaseTransition, CaseViolation
from tests.factories import (
    API_TOKENS,
    FIRE_LANE_ZONE,
    EventFactory,
    IngestRig,
    make_ingest,
    migrated_database,
)

PARKING_CASES = 4


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKENS[who].token.get_secret_value()}"}


@dataclass
class World:
    client: TestClient
    other: TestClient  # a second API process on the same database, with its own kept totals
    counts: CaseCounts  # the first one's
    rig: IngestRig
    edge: EventFactory
    sessions: SessionFactory
    law_ids: list[int]

    def total(
        self, who: str = "dispatcher", client: TestClient | None = None, **params: str
    ) -> int:
        response = (client or self.client).get("/api/v1/cases", headers=auth(who), params=params)
        assert response.status_code == 200, response.text
        return int(response.headers["X-Total-Count"])

    def console_total(self) -> int:
        """The console list fragment's own total (its "N cases")."""
        response = self.client.get("/console/fragments/cases", headers=auth("dispatcher"))
        assert response.status_code == 200, response.text
        found = re.search(r'data-total="(\d+)"', response.text)
        assert found is not None
        return int(found.group(1))

    def store(self, **kwargs: Any) -> int:
        event = self.edge.event(Phase.OPENED, **kwargs)
        self.rig.service.store(event)
        with self.sessions() as session:
            case_id = session.scalar(select(Case.id).where(Case.violation_id == event.violation_id))
        assert case_id is not None
        return case_id

    def version(self) -> int:
        with self.sessions() as session:
            found = session.scalar(select(CaseListVersion.version))
        assert found is not None
        return int(found)


def app_for(sessions: SessionFactory, rig: IngestRig, counts: CaseCounts) -> Any:
    return create_app(
        ApiContext(
            session_factory=sessions,
            evidence_store=rig.evidence_store,
            settings=ApiSettings(tokens=list(API_TOKENS.values())),
            registry=rig.registry,
            metrics_registry=rig.metrics.registry,
            workflow=Workflow(),
            case_counts=counts,
        )
    )


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[World]:
    with migrated_database(database_url) as (_engine, sessions):
        rig = make_ingest(sessions, tmp_path / "evidence")
        counts = CaseCounts()
        first = app_for(sessions, rig, counts)
        second = app_for(sessions, rig, CaseCounts())
        with TestClient(first) as client, TestClient(second) as other:
            world = World(client, other, counts, rig, EventFactory(), sessions, [])
            world.law_ids = [world.store() for _ in range(PARKING_CASES)]
            yield world


def test_a_kept_total_is_served_until_a_case_changes(world: World) -> None:
    assert world.total() == PARKING_CASES
    counted = world.counts.counted
    assert world.total() == PARKING_CASES
    assert world.total(limit="2") == PARKING_CASES  # the page's size and place are not the list's
    assert world.counts.counted == counted  # kept: no count
    world.store(zone_id=FIRE_LANE_ZONE, kind=ViolationKind.FIRE_LANE_BLOCKING)  # ingest writes
    assert world.total() == PARKING_CASES + 1
    assert world.counts.counted == counted + 1


def test_an_action_through_either_process_moves_both_totals(world: World) -> None:
    asked: dict[str, Any] = {"state": "dispatched", "department": "law_enforcement"}
    assert world.total(**asked) == PARKING_CASES
    assert world.total(client=world.other, **asked) == PARKING_CASES
    assert world.total("law", state="accepted") == 0
    response = world.other.post(
        f"/api/v1/cases/{world.law_ids[0]}/actions", headers=auth("law"), json={"action": "accept"}
    )
    assert response.status_code == 200, response.text
    assert world.total(**asked) == PARKING_CASES - 1  # the first process saw no request
    assert world.total(client=world.other, **asked) == PARKING_CASES - 1
    assert world.total("law", state="accepted") == 1


def test_writes_outside_the_orm_move_the_total_and_other_columns_do_not(world: World) -> None:
    assert world.total(department="fire_rescue") == 0
    before = world.version()
    with world.sessions.begin() as session:  # a bulk update, as the SLA sweep writes
        session.execute(update(Case).values(plate_text="粤B12345", updated_at=Case.updated_at))
    assert world.version() == before  # no counted column: every kept total still stands
    with world.sessions.begin() as session:
        session.execute(
            update(Case).where(Case.id == world.law_ids[1]).values(department="fire_rescue")
        )
    assert world.version() == before + 1
    assert world.total(department="fire_rescue") == 1
    assert world.total("fire") == 1  # who sees it moved too
    with world.sessions.begin() as session:
        for table in (CaseEvidence, CaseViolation, CaseTransition):
            session.execute(delete(table).where(table.case_id == world.law_ids[1]))
        session.execute(delete(Case).where(Case.id == world.law_ids[1]))
    assert world.total(department="fire_rescue") == 0
    assert world.total() == PARKING_CASES - 1


def test_a_transaction_counts_as_one_change_and_only_once_committed(world: World) -> None:
    assert world.total(state="closed") == 0
    before = world.version()
    with world.sessions() as session:
        for case_id in world.law_ids:
            session.execute(update(Case).where(Case.id == case_id).values(state="closed"))
            session.execute(update(Case).where(Case.id == case_id).values(overdue=True))
        # Not committed yet: another connection's list neither sees it nor keeps a stale total.
        # (SQLite's one writer: its readers see the last commit, as here.)
        assert world.total(state="closed") == 0
        session.commit()
    if world.sessions.kw["bind"].dialect.name == "postgresql":
        assert world.version() == before + 1  # once for the transaction, at its commit
    else:
        assert world.version() > before
    assert world.total(state="closed") == PARKING_CASES
    assert world.total(state="closed", client=world.other) == PARKING_CASES


def test_a_search_or_a_time_range_is_counted_every_time(world: World) -> None:
    searches: list[dict[str, Any]] = [{"q": "parking"}, {"updated_from": "2020-01-01"}]
    for params in searches:
        counted = world.counts.counted
        world.total(**params)
        world.total(**params)
        assert world.counts.counted == counted + 2


def test_the_console_list_keeps_its_total_too(world: World) -> None:
    assert world.console_total() == PARKING_CASES
    counted = world.counts.counted
    assert world.console_total() == PARKING_CASES
    assert world.counts.counted == counted  # kept
    world.store()
    assert world.console_total() == PARKING_CASES + 1


def test_every_list_filter_is_kept_by_its_counted_column_or_not_kept() -> None:
    """A filter added to CaseQuery is counted each time until it is listed here and its
    column is one the triggers watch (migration 0011)."""
    migration = importlib.import_module("storage.migrations.versions.0011_case_list_version")
    assert set(COUNTED_COLUMNS) == set(migration.COUNTED)
    assert set(KEPT_FILTERS.values()) <= set(COUNTED_COLUMNS)
    not_kept = {"q", "opened_from", "opened_to", "updated_from", "updated_to"}
    assert set(CaseQuery.model_fields) == set(KEPT_FILTERS) | PAGE_FIELDS | not_kept
    assert {"department", "site_id", "tier"} <= set(COUNTED_COLUMNS)  # who sees a case
