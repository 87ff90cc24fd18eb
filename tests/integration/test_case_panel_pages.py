"""The case panel's deadlines and frames, and the error pages, through the real app (TestClient)
over a real database holding ingested cases (the rig of test_web_pages)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI, HTTPException, status
from fastapi.testclient import TestClient

from dispatch.config import Department
from dispatch.workflow import Action, Assignment, Command, Workflow, system_actor
from storage.tables import Case, utcnow
from tests.factories import make_registry
from tests.integration.test_web_pages import Site, auth, serve

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
JSON = {"Accept": "application/json"}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with serve(f"sqlite:///{tmp_path / 'civicwatch.db'}", tmp_path) as served:
        yield served


def _deadline(panel: str, which: str) -> str:
    found = re.search(
        rf'<span class="deadline deadline-{which} [^"]*"[^>]*>.*?</span>', panel, re.S
    )
    assert found is not None, f"no {which} deadline in the panel"
    return found.group(0)


def test_each_deadline_shows_its_own_state(site: Site) -> None:
    """A missed accept deadline says so; the resolve deadline beside it still counts down."""
    now = utcnow()
    with site.rig.session_factory() as session:
        case = session.get(Case, site.parking_id)
        assert case is not None
        case.ack_due_at = now - timedelta(minutes=5)
        case.sla_due_at = now + timedelta(minutes=100)
        session.commit()
    panel = site.client.get(f"/console/cases/{site.parking_id}/panel", headers=auth("law")).text
    accept, resolve = _deadline(panel, "accept"), _deadline(panel, "resolve")
    assert "state-over" in accept
    assert "current" in accept, "the accept deadline is the one running: highlighted"
    assert re.search(r"超时 [56] 分钟", accept)
    assert "state-ok" in resolve
    assert "current" not in resolve
    assert "剩余" in resolve
    assert "超时" not in resolve

    site.client.post(
        f"/api/v1/cases/{site.parking_id}/actions", json={"action": "accept"}, headers=auth("law")
    ).raise_for_status()
    panel = site.client.get(f"/console/cases/{site.parking_id}/panel", headers=auth("law")).text
    accept, resolve = _deadline(panel, "accept"), _deadline(panel, "resolve")
    assert "state-met" in accept
    assert "逾期" in accept, "accepted after its deadline: met, late"
    assert "current" in resolve, "now the resolve deadline runs"


def test_show_all_frames_lists_every_frame_of_a_visible_case_only(site: Site) -> None:
    frames = site.client.get(f"/console/cases/{site.parking_id}/frames", headers=auth("law"))
    assert frames.status_code == 200
    assert frames.text.count('class="frame-open"') == 2  # the factory's event carries two
    other = site.client.get(f"/console/cases/{site.fire_id}/frames", headers=auth("law") | JSON)
    assert other.status_code == 404


def test_a_browser_gets_a_readable_page_for_another_departments_case(site: Site) -> None:
    page = site.client.get(f"/worker/cases/{site.fire_id}", headers=auth("law") | HTML)
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert '<html lang="zh-CN">' in page.text
    assert "找不到该页面" in page.text
    assert 'href="/"' in page.text, "a way back"
    assert "detail" not in page.text
    main = page.text.split("<main>")[1].split("</main>")[0]
    assert "case" not in main, "no English, no detail of the case"
    assert "Content-Security-Policy" in page.headers

    english = site.client.get(f"/console/cases/{site.fire_id}?lang=en", headers=auth("law") | HTML)
    assert english.status_code == 404
    assert "Page not found" in english.text


def test_api_clients_keep_the_json_shape(site: Site) -> None:
    # A script asking for JSON, on a page path, and anyone on an /api/ path, even a browser.
    for path, headers in [
        (f"/console/cases/{site.fire_id}/panel", JSON),
        (f"/api/v1/cases/{site.fire_id}", HTML),
        (f"/api/v1/cases/{site.fire_id}", JSON),
    ]:
        response = site.client.get(path, headers=auth("law") | headers)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("application/json"), path
        assert response.json()["code"] == "not_found" or response.json()["code"].endswith(
            "not_found"
        )


def test_a_missing_page_and_a_refusal_are_pages_too(site: Site) -> None:
    missing = site.client.get("/no/such/page", headers=auth("law") | HTML)
    assert missing.status_code == 404
    assert "找不到该页面" in missing.text
    app = site.client.app
    assert isinstance(app, FastAPI)

    def refuse() -> None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only an admin may look")

    app.add_api_route("/refused", refuse)
    forbidden = site.client.get("/refused?lang=en", headers=HTML)
    assert forbidden.status_code == 403
    assert "Not allowed" in forbidden.text
    assert "only an admin" not in forbidden.text
    assert site.client.get("/refused", headers=JSON).json()["code"] == "forbidden"


def test_an_unexpected_error_is_a_500_page_or_the_json_shape(site: Site) -> None:
    app = site.client.app
    assert isinstance(app, FastAPI)

    def boom() -> None:
        raise RuntimeError("a bug: this text must not reach the page")

    app.add_api_route("/boom", boom)
    app.add_api_route("/api/v1/boom", boom)
    client = TestClient(app, raise_server_exceptions=False)
    page = client.get("/boom", headers=HTML)
    assert page.status_code == 500
    assert "系统出错" in page.text
    assert "a bug" not in page.text
    api = client.get("/api/v1/boom", headers=HTML)
    assert api.status_code == 500
    assert api.json()["code"] == "server_error"
    assert "a bug" not in api.text


def test_a_transfer_that_moves_the_deadline_says_so_beside_it(site: Site) -> None:
    before = site.client.get(f"/console/cases/{site.parking_id}/panel", headers=auth("law")).text
    assert "deadline-moved" not in before

    def fire_route(case: Case, department: Department, now: datetime) -> Assignment:
        """The fire department's route: 5 minutes to accept, 30 to clear (as the Router gives)."""
        return Assignment(
            "department", "urgent", now + timedelta(minutes=5), now + timedelta(minutes=30), None
        )

    # The workflow with a route, as the server builds it (this app's own has none).
    with site.rig.session_factory() as session:
        case = session.get(Case, site.parking_id)
        assert case is not None
        command = Command(Action.TRANSFER, reason="a fire lane", department=Department.FIRE_RESCUE)
        Workflow(reroute=fire_route).apply(session, case, command, system_actor("test"))
        session.commit()
    panel = site.client.get(
        f"/console/cases/{site.parking_id}/panel", headers=auth("dispatcher")
    ).text
    moved = re.search(r'<small class="deadline-moved">(.*?)</small>', panel, re.S)
    assert moved is not None
    assert moved.group(1).startswith("转派后办结时限由 ")


def test_the_worker_sees_where_to_go_above_the_actions(tmp_path: Path) -> None:
    registry = make_registry()
    site = registry.sites[0].model_copy(
        update={"name": "幸福里小区", "address": "幸福路 8 号", "lat": 31.2304, "long": 121.4737}
    )
    registry = registry.model_copy(update={"sites": [site, *registry.sites[1:]]})
    with serve(f"sqlite:///{tmp_path / 'civicwatch.db'}", tmp_path, registry) as served:
        page = served.client.get(f"/worker/cases/{served.parking_id}", headers=auth("law")).text
    brief = re.search(r'<dd class="place-brief">(.*?)</dd>', page, re.S)
    assert brief is not None
    assert "幸福里小区 · 幸福路 8 号" in brief.group(1)
    assert 'class="place-brief-nav" href="https://uri.amap.com/marker?' in brief.group(1)
    assert page.index("place-brief") < page.index('class="actions"'), "before the actions"
