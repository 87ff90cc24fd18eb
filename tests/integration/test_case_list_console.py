"""The console's case list (filters, search, pages), saved views and alert opt-ins through the
real app (TestClient) over a real database, with cases ingested from generated events."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from contracts.events import ViolationKind
from dispatch.accounts import AccountService
from dispatch.config import AccountSettings, ApiSettings, Role
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.saved_views import MAX_VIEWS_PER_USER
from dispatch.web.case_list import PAGE_SIZE
from dispatch.workflow import Workflow
from storage.tables import Case
from tests.factories import (
    API_TOKENS,
    FIRE_LANE_ZONE,
    EventFactory,
    make_ingest,
    migrated_database,
)

PASSWORD = "a-long-password-1"
CSRF = {"X-Requested-With": "civicwatch"}
PARKING = 60  # illegal parking cases seeded, law enforcement's
FIRE = 3  # fire-lane cases seeded, fire and rescue's


@dataclass
class Console:
    client: TestClient
    accounts: AccountService
    fire_ids: list[int]

    def sign_in(self, username: str, role: Role = Role.DISPATCHER) -> None:
        self.accounts.create_user(username, PASSWORD, role)
        answer = self.client.post(
            "/api/v1/auth/login", json={"username": username, "password": PASSWORD}
        )
        assert answer.status_code == 200, answer.text


@contextmanager
def serve(database_url: str, tmp_path: Path) -> Iterator[Console]:
    with migrated_database(database_url) as (_engine, sessions):
        rig = make_ingest(sessions, tmp_path / "evidence")
        edge = EventFactory()
        for _ in range(PARKING):
            rig.service.store(edge.event(frames=1))
        for _ in range(FIRE):
            rig.service.store(
                edge.event(zone_id=FIRE_LANE_ZONE, kind=ViolationKind.FIRE_LANE_BLOCKING, frames=1)
            )
        with sessions() as session:
            fire_ids = list(
                session.scalars(select(Case.id).where(Case.kind == "fire_lane_blocking"))
            )
        accounts = AccountService(sessions, AccountSettings())
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=rig.evidence_store,
                settings=ApiSettings(tokens=[API_TOKENS["dispatcher"]]),
                registry=rig.registry,
                metrics_registry=rig.metrics.registry,
                workflow=Workflow(),
                accounts=accounts,
            )
        )
        with TestClient(app) as client:
            yield Console(client, accounts, fire_ids)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    with serve(f"sqlite:///{tmp_path / 'civicwatch.db'}", tmp_path) as served:
        yield served


@pytest.fixture
def any_console(database_url: str, tmp_path: Path) -> Iterator[Console]:
    """On SQLite and PostgreSQL."""
    with serve(database_url, tmp_path) as served:
        yield served


def row_ids(html: str) -> list[int]:
    return [
        int(found) for found in re.findall(r'<tr class="case-row[^"]*" data-case-id="(\d+)"', html)
    ]


def next_link(html: str) -> str | None:
    found = re.search(r'id="page-next" href="([^"]+)"', html)
    return found.group(1).replace("&amp;", "&") if found else None


# --- the list -----------------------------------------------------------------------------------


def test_the_list_pages_through_every_case_with_its_total(any_console: Console) -> None:
    any_console.sign_in("desk01")
    seen: list[int] = []
    url: str | None = "/console"
    pages = 0
    while url is not None:
        page = any_console.client.get(url)
        assert page.status_code == 200
        assert f"共 {PARKING + FIRE} 件" in page.text
        ids = row_ids(page.text)
        assert 0 < len(ids) <= PAGE_SIZE
        seen.extend(ids)
        url = next_link(page.text)
        pages += 1
    assert pages == 2  # 63 cases, 50 a page: no cap at 50
    assert len(seen) == len(set(seen)) == PARKING + FIRE
    # The second page offers the way back to the first.
    assert (
        'id="page-first"'
        in any_console.client.get(next_link(any_console.client.get("/console").text) or "").text
    )


def test_the_filter_lives_in_the_url_and_narrows_the_list(console: Console) -> None:
    console.sign_in("desk01")
    page = console.client.get("/console?kind=fire_lane_blocking&state=new&state=dispatched")
    assert sorted(row_ids(page.text)) == sorted(console.fire_ids)
    assert f"共 {FIRE} 件" in page.text
    # The filter bar shows what was asked, so a reloaded link reads the same.
    assert '<option value="fire_lane_blocking" selected>' in page.text
    assert '<option value="dispatched" selected>' in page.text
    # Search by case number; the fire-lane rows carry the urgent mark.
    first = console.fire_ids[0]
    found = console.client.get(f"/console?q=%23{first}")
    assert row_ids(found.text) == [first]
    assert re.search(rf'class="case-row[^"]*urgent[^"]*" data-case-id="{first}"', found.text)
    # The fragment the page refreshes takes the same query (and ignores the page's lang).
    fragment = console.client.get(f"/console/fragments/cases?q=%23{first}&lang=en")
    assert row_ids(fragment.text) == [first]
    # The export links carry the filter.
    assert "/api/v1/cases/export.csv?kind=fire_lane_blocking&amp;state=new" in page.text


def test_a_refused_filter_says_why_and_shows_the_whole_list(console: Console) -> None:
    console.sign_in("desk01")
    page = console.client.get("/console?colour=red")
    assert page.status_code == 200
    assert 'class="list-error"' in page.text
    assert "colour" in page.text
    assert len(row_ids(page.text)) == PAGE_SIZE
    garbled = console.client.get("/console?cursor=not-a-cursor")
    assert 'class="list-error"' in garbled.text


# --- saved views --------------------------------------------------------------------------------


def test_saved_views_round_trip_for_their_owner_only(any_console: Console) -> None:
    client = any_console.client
    any_console.sign_in("desk01")
    saved = client.post(
        "/api/v1/views",
        json={"name": "消防", "query": "kind=fire_lane_blocking&q=&cursor=abc&lang=en"},
        headers=CSRF,
    )
    assert saved.status_code == 201, saved.text
    view = saved.json()
    # Checked and kept as a filter: no blank field, no page position, no language.
    assert parse_qsl(view["query"]) == [("kind", "fire_lane_blocking")]
    again = client.post(
        "/api/v1/views",
        json={"name": "消防", "query": "kind=fire_lane_blocking&overdue=true"},
        headers=CSRF,
    )
    assert again.json()["id"] == view["id"]  # the same name replaces the view
    listed = client.get("/api/v1/views").json()
    assert [(v["name"], v["query"]) for v in listed] == [
        ("消防", "kind=fire_lane_blocking&overdue=true")
    ]
    page = client.get("/console").text
    assert 'href="/console?kind=fire_lane_blocking&amp;overdue=true">消防</a>' in page

    # A query the list would refuse is refused here, naming the parameter.
    refused = client.post(
        "/api/v1/views", json={"name": "bad", "query": "colour=red"}, headers=CSRF
    )
    assert refused.status_code == 400
    assert refused.json()["code"] == "unknown_parameter"
    assert (
        client.post(
            "/api/v1/views", json={"name": "bad", "query": "state=lost"}, headers=CSRF
        ).status_code
        == 422
    )
    assert (
        client.post("/api/v1/views", json={"name": "   ", "query": ""}, headers=CSRF).json()["code"]
        == "saved_view_name_blank"
    )

    # Another person neither sees nor deletes it.
    client.post("/api/v1/auth/logout", headers=CSRF)
    any_console.sign_in("desk02")
    assert client.get("/api/v1/views").json() == []
    gone = client.delete(f"/api/v1/views/{view['id']}", headers=CSRF)
    assert gone.status_code == 404
    assert gone.json()["code"] == "saved_view_not_found"
    client.post("/api/v1/auth/logout", headers=CSRF)
    client.post("/api/v1/auth/login", json={"username": "desk01", "password": PASSWORD})
    assert client.delete(f"/api/v1/views/{view['id']}", headers=CSRF).status_code == 204
    assert client.get("/api/v1/views").json() == []


def test_a_token_has_no_views_or_alerts(console: Console) -> None:
    bearer = {"Authorization": f"Bearer {API_TOKENS['dispatcher'].token.get_secret_value()}"}
    assert console.client.get("/api/v1/views", headers=bearer).status_code == 403
    assert console.client.get("/api/v1/account/alerts", headers=bearer).status_code == 403
    page = console.client.get("/console", headers=bearer)
    assert page.status_code == 200
    assert 'id="alert-prefs"' not in page.text


# --- alert opt-ins ------------------------------------------------------------------------------


def test_alert_opt_ins_are_off_until_set_and_stay_on_the_account(console: Console) -> None:
    client = console.client
    console.sign_in("desk01")
    assert client.get("/api/v1/account/alerts").json() == {"sound": False, "desktop": False}
    changed = client.put("/api/v1/account/alerts", json={"sound": True}, headers=CSRF)
    assert changed.json() == {"sound": True, "desktop": False}
    assert (
        client.put("/api/v1/account/alerts", json={"volume": 11}, headers=CSRF).status_code == 422
    )
    # Without the CSRF header a cookie-authenticated change is refused.
    assert client.put("/api/v1/account/alerts", json={"desktop": True}).status_code == 403
    page = client.get("/console").text
    assert 'id="alert-sound" checked' in page
    assert 'id="alert-desktop">' in page


def test_saved_views_refuse_hostile_input_with_a_reason(console: Console) -> None:
    client = console.client
    console.sign_in("desk01")

    def save(name: str, query: str = "") -> tuple[int, dict[str, object]]:
        answer = client.post("/api/v1/views", json={"name": name, "query": query}, headers=CSRF)
        return answer.status_code, answer.json()

    assert save("x" * 81)[0] == 422
    assert save("long", "q=" + "a" * 2000)[0] == 422
    status, body = save("garbled", "state")
    assert (status, body["code"]) == (422, "saved_view_bad_query")
    status, body = save("repeated", "sort=newest&sort=oldest")
    assert (status, body["code"]) == (400, "repeated_parameter")
    assert (
        client.post(
            "/api/v1/views", json={"name": "a", "query": "", "owner": 2}, headers=CSRF
        ).status_code
        == 422
    )
    # At most 50 views a person; replacing one at the limit still works.
    for number in range(MAX_VIEWS_PER_USER):
        assert save(f"view {number:02d}", "state=new")[0] == 201
    status, body = save("one too many")
    assert (status, body["code"]) == (409, "saved_view_limit")
    assert body["params"] == {"limit": MAX_VIEWS_PER_USER}
    assert save("view 00", "state=closed")[0] == 201
    page = client.get("/console").text
    assert page.count('class="view-chip"') == MAX_VIEWS_PER_USER


def test_the_list_speaks_english_when_asked(console: Console) -> None:
    console.sign_in("desk01")
    page = console.client.get("/console?lang=en&overdue=true").text
    for words in ("0 cases", "Saved views", "Keyboard shortcuts", "Overdue only", "Bulk actions"):
        assert words in page
    assert '"select_all": "Select all on this page"' in page  # the script's words too
    # The page's language is no filter: it stays out of the list's and the export's query.
    assert 'data-query="overdue=true"' in page
    assert "/api/v1/cases/export.xlsx?overdue=true&amp;lang=en" in page
