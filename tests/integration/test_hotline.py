"""The hotline operator's form (12345 一键接办) over the real app, a real SQLite database and
the real intake: the page, one submit to a routed case in the department's queue, refusals in
the API's error shape, and who may use it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from dispatch.config import ApiSettings, ResidentSettings, RoutingSettings
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.residents.intake import IntakeDeps
from dispatch.residents.tiers import ResidentAwareRouter
from dispatch.workflow import Workflow
from storage.database import SessionFactory
from storage.evidence_store import EvidenceStore
from storage.tables import Case, ResidentReport
from tests.factories import API_TOKENS, SITE, make_registry, migrated_database

CALL = {
    "category": "ebike_charging",
    "site_id": SITE,
    "building": "5号楼",
    "unit": "2单元",
    "description": "电动车在楼道充电",
    "phone": "13812341234",
    "contact_consent": True,
}


def _auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKENS[who].token.get_secret_value()}"}


@pytest.fixture
def hotline(tmp_path: Path) -> Iterator[tuple[TestClient, SessionFactory]]:
    with migrated_database(f"sqlite:///{tmp_path / 'hotline.db'}") as (_engine, sessions):
        registry = make_registry()
        routing = RoutingSettings()
        settings = ResidentSettings()
        intake = IntakeDeps(
            settings=settings,
            registry=registry,
            router=ResidentAwareRouter(routing, registry=registry),
            routing=routing,
            evidence_store=EvidenceStore(tmp_path / "evidence"),
        )
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=intake.evidence_store,
                settings=ApiSettings(tokens=list(API_TOKENS.values())),
                registry=registry,
                metrics_registry=CollectorRegistry(),
                workflow=Workflow(),
                intake=intake,
                residents=settings,
            )
        )
        with TestClient(app) as client:
            yield client, sessions


def test_the_page_is_the_operators_in_both_languages(
    hotline: tuple[TestClient, SessionFactory],
) -> None:
    client, _sessions = hotline
    page = client.get("/console/hotline", headers=_auth("dispatcher"))
    assert page.status_code == 200
    assert "热线接办" in page.text
    assert "autofocus" in page.text
    english = client.get("/console/hotline?lang=en", headers=_auth("dispatcher"))
    assert "Hotline intake" in english.text
    worker = client.get("/console/hotline", headers=_auth("fire"), follow_redirects=False)
    assert worker.status_code == 303


def test_one_submit_gives_a_routed_case_in_the_departments_queue(
    hotline: tuple[TestClient, SessionFactory],
) -> None:
    client, sessions = hotline
    answer = client.post("/console/hotline", json=CALL, headers=_auth("dispatcher"))
    assert answer.status_code == 200, answer.text
    receipt = answer.json()
    assert len(receipt["tracking_code"]) == 10
    assert receipt["case_url"] == f"/console/cases/{receipt['case_id']}"
    assert (receipt["joined"], receipt["tier"]) == (False, "department")
    with sessions() as session:
        report = session.scalars(select(ResidentReport)).one()
        assert (report.channel, report.submitted_by) == ("hotline", "desk")
        assert (report.phone, report.contact_consent) == ("13812341234", True)
        case = session.get(Case, receipt["case_id"])
        assert case is not None
        assert (case.source, case.department, case.state) == (
            "hotline",
            "fire_rescue",
            "dispatched",
        )
    queue = client.get("/api/v1/cases", headers=_auth("fire")).json()
    items = queue["items"] if isinstance(queue, dict) else queue
    assert receipt["case_id"] in [item["id"] for item in items]
    elsewhere = client.get("/api/v1/cases", headers=_auth("law")).json()
    other_items = elsewhere["items"] if isinstance(elsewhere, dict) else elsewhere
    assert receipt["case_id"] not in [item["id"] for item in other_items]


def test_refusals_and_who_may_file(hotline: tuple[TestClient, SessionFactory]) -> None:
    client, sessions = hotline
    bad_phone = client.post(
        "/console/hotline", json=CALL | {"phone": "call me"}, headers=_auth("dispatcher")
    )
    assert bad_phone.status_code == 422
    assert bad_phone.json()["code"] == "report_bad_phone"
    unknown = client.post(
        "/console/hotline", json=CALL | {"category": "moon"}, headers=_auth("dispatcher")
    )
    assert unknown.status_code == 422
    worker = client.post("/console/hotline", json=CALL, headers=_auth("fire"))
    assert worker.status_code == 403
    with sessions() as session:
        assert session.scalars(select(ResidentReport)).all() == []
