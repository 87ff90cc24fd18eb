"""The wall (大屏) through the real app on a real database: counts, urgency, who may see it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from contracts.events import ViolationKind
from dispatch.accounts import AccountService
from dispatch.config import AccountSettings, ApiSettings
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.workflow import Workflow
from storage.database import SessionFactory
from storage.tables import Case, utcnow
from tests.factories import API_TOKENS, FIRE_LANE_ZONE, EventFactory, make_ingest, migrated_database

TOKENS = {who: API_TOKENS[who] for who in ("dispatcher", "law", "fire")}


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who].token.get_secret_value()}"}


@dataclass
class Wall:
    client: TestClient
    sessions: SessionFactory
    parking: list[int]
    fire: int


@pytest.fixture
def wall(database_url: str, tmp_path: Path) -> Iterator[Wall]:
    with migrated_database(database_url) as (_engine, sessions):
        rig = make_ingest(sessions, tmp_path / "evidence")
        edge = EventFactory()
        for _ in range(3):
            rig.service.store(edge.event())
            edge = EventFactory()
        rig.service.store(edge.event(zone_id=FIRE_LANE_ZONE, kind=ViolationKind.FIRE_LANE_BLOCKING))
        with sessions() as session:
            cases = list(session.scalars(select(Case).order_by(Case.id)))
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=rig.evidence_store,
                settings=ApiSettings(tokens=list(TOKENS.values())),
                registry=rig.registry,
                metrics_registry=rig.metrics.registry,
                workflow=Workflow(),
                accounts=AccountService(sessions, AccountSettings()),
            )
        )
        with TestClient(app) as client:
            yield Wall(
                client,
                sessions,
                [c.id for c in cases if c.kind == "illegal_parking"],
                next(c.id for c in cases if c.kind == "fire_lane_blocking"),
            )


def _order(html: str, list_id: str) -> list[int]:
    part = html.split(f'id="{list_id}"', 1)[1].split("</ol>", 1)[0]
    return [int(n) for n in re.findall(r'data-case-id="(\d+)"', part)]


def _count(html: str, name: str) -> int:
    found = re.search(rf'data-count="{name}"><span class="n">(\d+)</span>', html)
    assert found, name
    return int(found.group(1))


def test_wall_counts_open_cases_by_state_department_and_kind(wall: Wall) -> None:
    page = wall.client.get("/wall?lang=en", headers=auth("dispatcher"))
    assert page.status_code == 200
    html = page.text
    assert _count(html, "open") == 4
    with wall.sessions() as session:
        states = [c.state for c in session.scalars(select(Case))]
    for state in ("new", "dispatched", "accepted"):
        assert _count(html, state) == states.count(state)
    assert "Open by department" in html
    assert "Open by kind" in html
    assert 'font-size="30"' in html  # wall charts use the large type
    assert 'class="wall-page"' in html  # no kiosk: the header stays
    kiosk = wall.client.get("/wall?kiosk=1", headers=auth("dispatcher")).text
    assert 'class="wall-page kiosk"' in kiosk


def test_urgent_cases_fire_lane_first_then_overdue_then_nearest_deadline(wall: Wall) -> None:
    now = utcnow()
    first, second, third = wall.parking
    with wall.sessions() as session:
        for case_id, due, overdue in (
            (first, now + timedelta(minutes=50), False),
            (second, now + timedelta(minutes=5), False),
            (third, now - timedelta(minutes=3), False),  # past its deadline, the sweep not yet run
        ):
            case = session.get(Case, case_id)
            assert case is not None
            case.sla_due_at, case.overdue = due, overdue
        fire = session.get(Case, wall.fire)
        assert fire is not None
        fire.sla_due_at = now + timedelta(minutes=25)
        session.commit()
    html = wall.client.get("/wall/fragment", headers=auth("dispatcher")).text
    assert _order(html, "wall-urgent") == [wall.fire, third, second, first]
    assert _order(html, "wall-sla") == [third, second, wall.fire, first]
    assert "超时 3 分钟" in html or "超时 4 分钟" in html


def test_a_worker_is_sent_to_the_worker_view_and_signed_out_to_login(wall: Wall) -> None:
    response = wall.client.get("/wall", headers=auth("law"), follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/worker"
    response = wall.client.get("/wall", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=%2Fwall")
