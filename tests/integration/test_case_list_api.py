"""The case list's query engine through the API: filters, search, cursor pages, the error shape,
the frames of a case, bulk actions and the CSV/XLSX export, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook  # type: ignore[import-untyped]
from sqlalchemy import select, text

from contracts.events import Phase, ViolationKind
from dispatch.case_query import CaseQuery, find_cases, parse_case_query
from dispatch.config import ApiSettings, Department, Role
from dispatch.errors import ApiError
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.workflow import Actor, Workflow
from storage.tables import Case
from tests.factories import (
    API_TOKENS,
    FIRE_LANE_ZONE,
    EventFactory,
    IngestRig,
    make_ingest,
    migrated_database,
)

PARKING_CASES = 5


@dataclass
class World:
    client: TestClient
    rig: IngestRig
    edge: EventFactory
    law_ids: list[int]  # parking: law enforcement's
    fire_ids: list[int]

    def get(self, path: str, who: str = "dispatcher", **params: Any) -> Any:
        return self.client.get(path, headers=auth(who), params=params)

    def store(self, **kwargs: Any) -> int:
        event = self.edge.event(Phase.OPENED, **kwargs)
        self.rig.service.store(event)
        with self.rig.session_factory() as session:
            case_id = session.scalar(select(Case.id).where(Case.violation_id == event.violation_id))
        assert case_id is not None
        return case_id

    def update(self, case_id: int, **columns: Any) -> None:
        with self.rig.session_factory() as session:
            case = session.get(Case, case_id)
            assert case is not None
            for name, value in columns.items():
                setattr(case, name, value)
            session.commit()


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKENS[who].token.get_secret_value()}"}


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[World]:
    with migrated_database(database_url) as (_engine, sessions):
        rig = make_ingest(sessions, tmp_path / "evidence")
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=rig.evidence_store,
                settings=ApiSettings(tokens=list(API_TOKENS.values())),
                registry=rig.registry,
                metrics_registry=rig.metrics.registry,
                workflow=Workflow(),
            )
        )
        with TestClient(app) as client:
            world = World(client, rig, EventFactory(), [], [])
            world.law_ids = [world.store() for _ in range(PARKING_CASES)]
            world.fire_ids = [
                world.store(zone_id=FIRE_LANE_ZONE, kind=ViolationKind.FIRE_LANE_BLOCKING)
            ]
            yield world


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.text
    return [case["id"] for case in response.json()]


def next_link(response: Any) -> str | None:
    found = re.search(r'<([^>]+)>; rel="next"', response.headers["Link"])
    return found.group(1) if found else None


def test_every_page_once_in_order_and_stable_while_cases_arrive(world: World) -> None:
    everything = ids(world.get("/api/v1/cases"))
    # Deadline order: fire's 30 min first, then the equal parking deadlines by case number.
    assert everything == [*world.fire_ids, *world.law_ids]
    first = world.get("/api/v1/cases", limit=2)
    assert first.headers["X-Total-Count"] == str(PARKING_CASES + 1)
    assert "<" + '/api/v1/cases?limit=2>; rel="first"' in first.headers["Link"]
    seen = ids(first)
    url = next_link(first)
    late = world.store()  # arrives while the dispatcher pages: it is last, nothing shifts
    while url is not None:
        page = world.client.get(url, headers=auth("dispatcher"))
        seen += ids(page)
        url = next_link(page)
    assert seen == [*everything, late]


@pytest.mark.parametrize("sort", ["newest", "oldest", "updated"])
def test_other_orders_page_through_every_case(world: World, sort: str) -> None:
    whole = ids(world.get("/api/v1/cases", sort=sort, limit=500))
    paged: list[int] = []
    response = world.get("/api/v1/cases", sort=sort, limit=4)
    paged += ids(response)
    while (url := next_link(response)) is not None:
        response = world.client.get(url, headers=auth("dispatcher"))
        paged += ids(response)
    assert paged == whole
    assert sorted(whole) == sorted([*world.law_ids, *world.fire_ids])
    if sort == "newest":
        assert whole == sorted(whole, reverse=True)


def test_repeated_filters_and_ranges(world: World) -> None:
    url = (
        "/api/v1/cases?state=new&state=dispatched&department=fire_rescue&department=law_enforcement"
    )
    assert len(ids(world.client.get(url, headers=auth("dispatcher")))) == PARKING_CASES + 1
    assert ids(world.get("/api/v1/cases", state="new")) == []
    assert ids(world.get("/api/v1/cases", kind="fire_lane_blocking")) == world.fire_ids
    world.update(world.law_ids[0], assignee="li.wei")
    assert ids(world.get("/api/v1/cases", assignee="li.wei")) == [world.law_ids[0]]
    unassigned = ids(world.get("/api/v1/cases", assignee="none"))
    assert world.law_ids[0] not in unassigned
    assert len(unassigned) == PARKING_CASES
    assert ids(world.get("/api/v1/cases", opened_from="2099-01-01")) == []
    assert len(ids(world.get("/api/v1/cases", opened_to="2099-01-01T00:00:00Z"))) == 6
    assert ids(world.get("/api/v1/cases", site="site-b")) == []
    # A department sees its own even when it asks for more.
    assert ids(world.get("/api/v1/cases", "law", department="fire_rescue")) == []


def test_search_by_number_plate_place_and_text(world: World) -> None:
    target = world.law_ids[2]
    world.update(target, plate_text="沪A12345")
    assert ids(world.get("/api/v1/cases", q=f"#{target}")) == [target]
    assert ids(world.get("/api/v1/cases", q="a1234")) == [target]  # substring, any case
    assert target in ids(world.get("/api/v1/cases", q=str(target)))
    # The camera's name in the registry (the cases hold only its id).
    assert len(ids(world.get("/api/v1/cases", q="North Gate"))) == PARKING_CASES + 1
    assert ids(world.get("/api/v1/cases", q="fire-lane-north")) == world.fire_ids
    note = world.client.post(
        f"/api/v1/cases/{world.law_ids[4]}/actions",
        headers=auth("dispatcher"),
        json={"action": "note", "reason": "Blue van 50%_off behind the gate"},
    )
    assert note.status_code == 200, note.text
    assert ids(world.get("/api/v1/cases", q="blue VAN")) == [world.law_ids[4]]
    assert ids(world.get("/api/v1/cases", q="50%_")) == [world.law_ids[4]]  # no wildcards
    assert ids(world.get("/api/v1/cases", q="%")) == [world.law_ids[4]]  # a literal %
    assert ids(world.get("/api/v1/cases", "fire", q=f"#{target}")) == []  # not theirs


def test_refusals_have_one_shape_with_a_code(world: World) -> None:
    unknown = world.get("/api/v1/cases", stat="new")
    assert unknown.status_code == 400
    assert unknown.json()["code"] == "unknown_parameter"
    assert unknown.json()["params"] == {"name": "stat"}
    assert unknown.json()["detail"] == "Unknown parameter: stat."
    invalid = world.get("/api/v1/cases", state="sleeping")
    assert invalid.status_code == 422
    body = invalid.json()
    assert body["code"] == "invalid_request"
    assert body["errors"][0]["loc"] == ["query", "state", 0]
    assert "sleeping" not in invalid.text  # the refused input is not echoed back
    garbled = world.get("/api/v1/cases", cursor="not-a-cursor")
    assert (garbled.status_code, garbled.json()["code"]) == (400, "invalid_cursor")
    cursor = world.get("/api/v1/cases", limit=1).headers["Link"].split("cursor=")[1].split(">")[0]
    other = world.get("/api/v1/cases", limit=1, cursor=cursor, kind="illegal_parking")
    assert (other.status_code, other.json()["code"]) == (400, "cursor_mismatch")
    forged = world.get("/api/v1/cases", limit=1, cursor=cursor[:-2] + "AA")
    assert forged.status_code == 400
    missing = world.get(f"/api/v1/cases/{world.fire_ids[0]}", "law")
    assert missing.status_code == 404
    assert missing.json() == {
        "detail": missing.json()["detail"],
        "code": "case_not_found",
        "params": {"case_id": world.fire_ids[0]},
    }
    refused = world.client.post(
        f"/api/v1/cases/{world.law_ids[0]}/actions", headers=auth("law"), json={"action": "verify"}
    )
    assert refused.status_code == 403
    assert refused.json()["code"] not in ("", None)
    assert isinstance(refused.json()["detail"], str)
    nobody = world.client.get("/api/v1/cases")
    assert (nobody.status_code, nobody.json()["code"]) == (401, "unauthorized")
    assert nobody.headers["www-authenticate"] == "Bearer"


def test_a_list_links_frames_and_the_case_lists_them_in_pages(world: World) -> None:
    [item] = [c for c in world.get("/api/v1/cases").json() if c["id"] == world.law_ids[0]]
    assert "evidence" not in item
    assert item["evidence_count"] == 2
    assert item["evidence_url"] == f"/api/v1/cases/{world.law_ids[0]}/evidence"
    first = world.get(item["evidence_url"], limit=1)
    assert first.status_code == 200
    assert first.headers["X-Total-Count"] == "2"
    second_url = next_link(first)
    assert second_url is not None
    second = world.client.get(second_url, headers=auth("dispatcher"))
    assert next_link(second) is None
    frames = [*first.json(), *second.json()]
    detail = world.get(f"/api/v1/cases/{world.law_ids[0]}").json()
    assert [f["sha256"] for f in frames] == [f["sha256"] for f in detail["evidence"]]
    assert world.get(item["evidence_url"], "fire").status_code == 404
    assert world.get(item["evidence_url"], cursor="@@").status_code == 400


def test_bulk_acts_per_case_and_never_on_a_case_the_caller_cannot_see(world: World) -> None:
    asked = [world.law_ids[0], world.fire_ids[0], world.law_ids[1], 2_000_000]
    answer = world.client.post(
        "/api/v1/cases/bulk", headers=auth("law"), json={"case_ids": asked, "action": "accept"}
    )
    assert answer.status_code == 200, answer.text
    results = {r["case_id"]: r for r in answer.json()}
    assert [r["case_id"] for r in answer.json()] == asked
    assert results[world.law_ids[0]]["ok"]
    assert results[world.law_ids[1]]["ok"]
    for hidden in (world.fire_ids[0], 2_000_000):
        assert results[hidden]["ok"] is False
        assert results[hidden]["code"] == "case_not_found"
    with world.rig.session_factory() as session:
        fire = session.get(Case, world.fire_ids[0])
        assert fire is not None
        assert fire.state == "dispatched"
    again = world.client.post(
        "/api/v1/cases/bulk",
        headers=auth("law"),
        json={"case_ids": [world.law_ids[0], world.law_ids[2]], "action": "accept"},
    )
    first, second = again.json()
    assert first["ok"] is False
    assert first["code"]
    assert first["detail"]
    assert second["ok"] is True  # one refusal stops no other
    too_many = world.client.post(
        "/api/v1/cases/bulk",
        headers=auth("dispatcher"),
        json={"case_ids": list(range(1, 202)), "action": "close", "reason": "x"},
    )
    assert (too_many.status_code, too_many.json()["code"]) == (422, "invalid_request")


def test_export_csv_and_xlsx_in_the_asked_language_and_safe_from_formulas(world: World) -> None:
    world.update(world.law_ids[0], plate_text="=HYPERL")
    world.update(world.law_ids[1], assignee="@sum")
    zh = world.get("/api/v1/cases/export.csv", department="law_enforcement")
    assert zh.status_code == 200, zh.text
    assert zh.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(zh.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["案件编号", "类型", "状态"]
    assert [int(row[0]) for row in rows[1:]] == world.law_ids
    cells = {cell for row in rows[1:] for cell in row}
    assert "'=HYPERL" in cells
    assert "'@sum" in cells
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in cells)
    en = world.get("/api/v1/cases/export.xlsx", lang="en", q="#" + str(world.law_ids[0]))
    assert en.status_code == 200, en.text
    sheet = load_workbook(io.BytesIO(en.content)).active
    values = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert values[0][:3] == ["Case", "Kind", "State"]
    assert [row[0] for row in values[1:]] == [world.law_ids[0]]
    assert "'=HYPERL" in values[1]
    # A department exports only its own.
    fire = world.get("/api/v1/cases/export.csv", "fire")
    fire_rows = list(csv.reader(io.StringIO(fire.content.decode("utf-8-sig"))))
    assert [int(row[0]) for row in fire_rows[1:]] == world.fire_ids
    assert world.get("/api/v1/cases/export.csv", bogus="1").status_code == 400


def test_the_console_calls_the_engine_directly(world: World) -> None:
    registry = world.rig.registry
    law = Actor("officer", Role.WORKER, Department.LAW_ENFORCEMENT)
    with world.rig.session_factory() as session:
        page = find_cases(session, law, CaseQuery(limit=3), registry)
        assert [case.id for case in page.cases] == world.law_ids[:3]
        assert page.total == PARKING_CASES
        assert page.next_cursor is not None
        query = parse_case_query([("limit", "3"), ("cursor", page.next_cursor), ("lang", "en")])
        rest = find_cases(session, law, query, registry)
        assert [case.id for case in rest.cases] == world.law_ids[3:]
        assert rest.next_cursor is None
    with pytest.raises(ApiError) as refused:
        parse_case_query([("sort", "deadline"), ("sort", "newest")])
    assert refused.value.code == "repeated_parameter"
    with pytest.raises(ApiError) as unknown:
        parse_case_query([("nope", "1")])
    assert (unknown.value.status_code, unknown.value.params) == (400, {"name": "nope"})


def test_the_default_order_is_an_index_walk_on_postgresql(world: World, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the plan checked is PostgreSQL's")
    registry = world.rig.registry
    dispatcher = Actor("desk", Role.DISPATCHER)
    with world.rig.session_factory() as session:
        page = find_cases(session, dispatcher, CaseQuery(limit=2), registry)
        from dispatch.case_query import _after, _order, conditions  # the statement find_cases runs

        query = CaseQuery(limit=2, cursor=page.next_cursor)
        from dispatch.case_query import decode_cursor

        assert query.cursor is not None
        statement = (
            select(Case.id)
            .where(*conditions(dispatcher, query, registry))
            .where(_after(query, decode_cursor(query, query.cursor)))
            .order_by(*_order(query.sort))
            .limit(3)
        )
        compiled = statement.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
        session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(row[0] for row in session.execute(text(f"EXPLAIN {compiled}")))
    assert "ix_cases_due_order" in plan, plan
    assert "Sort" not in plan, plan


@pytest.mark.parametrize("sort", ["deadline", "newest", "updated"])
def test_offset_pages_of_a_filtered_list_are_the_whole_list_in_slices(
    world: World, sort: str
) -> None:
    # A page's rows are read by id after the page is chosen (find_case_rows): the slices, their
    # order and their frame counts must be those of the one long page.
    for case_id in world.law_ids[1::2]:
        world.update(case_id, state="accepted")
    wanted = {"state": "dispatched", "department": "law_enforcement", "sort": sort}
    whole = world.get("/api/v1/cases", limit=500, **wanted).json()
    assert 0 < len(whole) < PARKING_CASES  # a real filter: some cases in, some out
    sliced = []
    for offset in range(0, len(whole) + 1, 2):
        page = world.get("/api/v1/cases", limit=2, offset=offset, **wanted)
        assert page.headers["X-Total-Count"] == str(len(whole))
        sliced += page.json()
    assert sliced == whole
    assert all(case["evidence_count"] >= 1 for case in whole)


def test_the_filtered_list_and_the_sla_board_walk_their_own_indexes_on_postgresql(
    world: World, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("the plans checked are PostgreSQL's")
    from dispatch.case_query import _page, conditions
    from dispatch.web.queries import open_cases_query

    registry = world.rig.registry
    dispatcher = Actor("desk", Role.DISPATCHER)
    query = parse_case_query([("state", "dispatched"), ("department", "law_enforcement")])
    filtered = _page(query, select(Case.id).where(*conditions(dispatcher, query, registry)))
    board = open_cases_query(dispatcher)  # the board's own query, as /console/fragments/sla runs it
    with world.rig.session_factory() as session:
        session.execute(text("SET LOCAL enable_seqscan = off"))
        session.execute(text("SET LOCAL enable_bitmapscan = off"))
        plans = {}
        for name, statement in (("filtered", filtered), ("board", board)):
            compiled = statement.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
            plans[name] = "\n".join(row[0] for row in session.execute(text(f"EXPLAIN {compiled}")))
    assert "ix_cases_department_state_due" in plans["filtered"], plans["filtered"]
    assert "ix_cases_open_due" in plans["board"], plans["board"]
    assert "Sort" not in plans["filtered"] + plans["board"], plans
