"""The three rates through the real app (TestClient) on SQLite and PostgreSQL: GET /api/v1/rates
per role (a department sees its own row, the command centre every row), its refusals, the
civicwatch_rate lines of /metrics and the console page /console/rates in both languages."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import SecretStr
from sqlalchemy import insert

from dispatch.config import ApiSettings, ApiToken, Department, Role
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.metrics import RATES_MAX_AGE_SECONDS, RatesCollector
from dispatch.reports.rates import BASIC, SATISFIED, UNSATISFIED
from dispatch.workflow import Action, Workflow
from storage.database import SessionFactory
from storage.evidence_store import EvidenceStore
from storage.tables import Case, CaseTransition, ResidentReport, utcnow
from tests.factories import API_TOKENS, OTHER_SITE, SITE, make_registry, migrated_database

MIN = timedelta(minutes=1)
T0 = datetime(2026, 5, 6, 2, tzinfo=UTC)  # Wednesday 6 May 2026, 10:00 in Shanghai
WEEK = "period=week&at=2026-05-07"
TOKENS = {
    **API_TOKENS,
    "admin": ApiToken(name="root", token=SecretStr("admin-token-00000001"), role=Role.ADMIN),
    "law_supervisor": ApiToken(
        name="chief",
        token=SecretStr("law-supervisor-token1"),
        role=Role.SUPERVISOR,
        department=Department.LAW_ENFORCEMENT,
    ),
}


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who].token.get_secret_value()}"}


def case_row(case_id: int, created: datetime, **values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": case_id,
        "violation_id": uuid.uuid4(),
        "kind": "illegal_parking",
        "site_id": SITE,
        "gateway_id": "gw",
        "camera_id": "cam",
        "zone_id": "zone",
        "zone_kind": "no_parking",
        "state": "accepted",
        "department": Department.LAW_ENFORCEMENT.value,
        "started_at": created,
        "opened_at": created,
        "last_observed_at": created,
        "dwell_seconds": 300.0,
        "created_at": created,
        "updated_at": created,
        "overdue": False,
        "chain_broken": False,
        "escalation_level": 0,
        "ack_due_at": created + 10 * MIN,
        "sla_due_at": created + 120 * MIN,
    }
    return base | values


def report_row(report_id: int, case_id: int, rating: str, at: datetime) -> dict[str, Any]:
    return {
        "id": report_id,
        "tracking_code": f"RATE{report_id:04d}",
        "case_id": case_id,
        "joined": False,
        "channel": "web",
        "category": "illegal_parking",
        "site_id": SITE,
        "description": "",
        "contact_consent": False,
        "client_address": "",
        "created_at": at,
        "rating": rating,
        "rated_at": at,
    }


def seed(sessions: SessionFactory, t0: datetime, first_id: int) -> None:
    """Law: 2 cases (one accepted and resolved in time, one accepted late, resolved and
    reopened), ratings 满意 + 不满意 + 基本满意; fire: one case at each site, one accepted in
    time, none resolved, no rating."""
    i = first_id
    rows = [
        case_row(i, t0, acknowledged_at=t0 + MIN, resolved_at=t0 + 30 * MIN, state="resolved"),
        case_row(i + 1, t0, source="web"),
        case_row(i + 2, t0, department=Department.FIRE_RESCUE.value, acknowledged_at=t0 + MIN),
        case_row(i + 3, t0, site_id=OTHER_SITE, department=Department.FIRE_RESCUE.value),
    ]
    entries = [
        (Action.ACCEPT, t0 + 20 * MIN),
        (Action.RESOLVE, t0 + 40 * MIN),
        (Action.REOPEN, t0 + 50 * MIN),
    ]
    with sessions.begin() as session:
        session.execute(insert(Case), rows)
        session.add_all(
            CaseTransition(
                case_id=i + 1, from_state=None, to_state="x", actor="t", at=at, action=a.value
            )
            for a, at in entries
        )
        session.execute(
            insert(ResidentReport),
            [
                report_row(i, i, SATISFIED, t0 + 35 * MIN),
                report_row(i + 1, i + 1, UNSATISFIED, t0 + 45 * MIN),
                report_row(i + 2, i + 1, BASIC, t0 + 46 * MIN),
            ],
        )


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with migrated_database(database_url) as (_engine, sessions):
        seed(sessions, T0, 1)
        # the current week: what /metrics and the page's "this week" count
        seed(sessions, utcnow() - 2 * MIN, 101)
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=EvidenceStore(tmp_path / "evidence"),
                settings=ApiSettings(tokens=list(TOKENS.values())),
                registry=make_registry(),
                metrics_registry=CollectorRegistry(),
                workflow=Workflow(),
            )
        )
        with TestClient(app) as test_client:
            yield test_client


def rates(client: TestClient, who: str, query: str = WEEK) -> httpx.Response:
    response: httpx.Response = client.get(f"/api/v1/rates?{query}", headers=auth(who))
    return response


LAW = {
    "department": "law_enforcement",
    "site": None,
    "dispatched": 2,
    "responded": 1,
    "resolved": 1,
    "ratings": 3,
    "satisfied": 2,
    "response_rate": 0.5,
    "resolution_rate": 0.5,
    "satisfaction_rate": pytest.approx(2 / 3),
}
FIRE = {
    "department": "fire_rescue",
    "site": None,
    "dispatched": 2,
    "responded": 1,
    "resolved": 0,
    "ratings": 0,
    "satisfied": 0,
    "response_rate": 0.5,
    "resolution_rate": 0.0,
    "satisfaction_rate": None,
}


@pytest.mark.parametrize("who", ["dispatcher", "admin", "integration"])
def test_the_command_centre_and_integrations_see_every_department(
    client: TestClient, who: str
) -> None:
    response = rates(client, who)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["period"], body["first_day"], body["last_day"]) == (
        "week",
        "2026-05-04",
        "2026-05-10",
    )
    assert body["rows"] == [FIRE, LAW]
    assert body["total"]["dispatched"] == 4
    assert body["total"]["response_rate"] == 0.5
    assert body["total"]["department"] is None


@pytest.mark.parametrize("who", ["law", "law_supervisor"])
def test_a_department_sees_its_own_row_and_a_total_over_it(client: TestClient, who: str) -> None:
    body = rates(client, who).json()
    assert body["rows"] == [LAW]
    assert {k: v for k, v in body["total"].items() if k != "department"} == {
        k: v for k, v in LAW.items() if k != "department"
    }
    by_site = rates(client, who, WEEK + "&by=site").json()
    assert [(r["site"], r["dispatched"]) for r in by_site["rows"]] == [(SITE, 2)]
    fire = rates(client, "fire", WEEK + "&by=site").json()
    assert [(r["site"], r["dispatched"]) for r in fire["rows"]] == [(SITE, 1), (OTHER_SITE, 1)]
    assert "law_enforcement" not in rates(client, "fire").text


def test_source_resident_and_month_and_an_empty_period(client: TestClient) -> None:
    residents = rates(client, "dispatcher", WEEK + "&source=resident").json()
    # the cases with a resident report: both of law's (ratings on both), none of fire's
    assert [(r["department"], r["dispatched"]) for r in residents["rows"]] == [
        ("law_enforcement", 2)
    ]
    month = rates(client, "dispatcher", "period=month&at=2026-05-31").json()
    assert month["first_day"] == "2026-05-01"
    assert month["total"]["dispatched"] == 4
    empty = rates(client, "dispatcher", "period=week&at=2026-04-01").json()
    assert empty["rows"] == []
    assert (empty["total"]["response_rate"], empty["total"]["satisfaction_rate"]) == (None, None)


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("period=week&department=fire_rescue", 400, "unknown_parameter"),
        ("period=fortnight", 422, "invalid_request"),
        ("at=2026-13-01", 422, "invalid_request"),
        ("at=1999-12-31", 422, "invalid_request"),
        ("at=2101-01-01", 422, "invalid_request"),
        ("at='; drop table cases", 422, "invalid_request"),
        ("by=camera", 422, "invalid_request"),
        ("source=" + "x" * 5000, 422, "invalid_request"),
    ],
)
def test_bad_parameters_are_refused_in_the_one_error_shape(
    client: TestClient, query: str, status: int, code: str
) -> None:
    response = rates(client, "dispatcher", query)
    assert response.status_code == status
    body = response.json()
    assert body["code"] == code
    assert body["detail"]


def test_no_caller_no_rates(client: TestClient) -> None:
    assert client.get(f"/api/v1/rates?{WEEK}").status_code == 401


def sample(metrics: str, labels: dict[str, str]) -> float | None:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    found = re.search(rf"^civicwatch_rate\{{{re.escape(inner)}\}} (\S+)$", metrics, re.M)
    return float(found.group(1)) if found else None


def test_metrics_give_the_current_weeks_and_months_rates(client: TestClient) -> None:
    metrics = client.get("/metrics").text
    assert "# TYPE civicwatch_rate gauge" in metrics
    for period in ("week", "month"):
        law = {"department": "law_enforcement", "period": period}
        assert sample(metrics, law | {"rate": "response"}) == 0.5
        assert sample(metrics, law | {"rate": "resolution"}) == 0.5
        assert sample(metrics, law | {"rate": "satisfaction"}) == pytest.approx(2 / 3)
        fire = {"department": "fire_rescue", "period": period}
        assert sample(metrics, fire | {"rate": "resolution"}) == 0.0
        # no rating: no sample, never 0
        assert sample(metrics, fire | {"rate": "satisfaction"}) is None


@pytest.mark.parametrize(
    ("lang", "words"),
    [
        ("en", ["Department rates", "This week", "This month", "Last month", "Response rate"]),
        ("zh-CN", ["部门三率", "本周", "本月", "上月", "响应率", "解决率", "满意率"]),
    ],
)
def test_the_console_page_ranks_departments_in_both_languages(
    client: TestClient, lang: str, words: list[str]
) -> None:
    response = client.get(f"/console/rates?lang={lang}", headers=auth("dispatcher"))
    assert response.status_code == 200
    page = response.text
    for word in words:
        assert word in page
    week = page[page.index('id="rates-week"') : page.index('id="rates-month"')]
    # law (mean of 50 %, 50 %, 66.7 %) ranks above fire (mean of 50 %, 0 %)
    assert week.index('data-department="law_enforcement"') < week.index(
        'data-department="fire_rescue"'
    )
    assert "66.7%" in week
    assert "—" in week  # fire's satisfaction: no rating
    assert 'href="/console/rates"' in page  # the navigation links it
    last_month = page[page.index('id="rates-last_month"') :]
    assert "data-department=" not in last_month.split("</section>")[0]


def test_the_page_shows_a_department_its_own_row_and_turns_integrations_away(
    client: TestClient,
) -> None:
    page = client.get("/console/rates", headers=auth("law")).text
    assert 'data-department="law_enforcement"' in page
    assert 'data-department="fire_rescue"' not in page
    away = client.get("/console/rates", headers=auth("integration"), follow_redirects=False)
    assert away.status_code == 303
    assert client.get("/console/rates?source=nonsense", headers=auth("dispatcher")).status_code in (
        400,
        422,
    )


def test_metrics_count_once_a_minute_and_again_after(database_url: str) -> None:
    with migrated_database(database_url) as (_engine, sessions):
        now = [utcnow()]
        collector = RatesCollector(sessions, make_registry(), lambda: now[0])
        seed(sessions, now[0] - 2 * MIN, 1)

        def law_response() -> float | None:
            registry = CollectorRegistry()
            registry.register(collector)
            text = generate_latest(registry).decode()
            labels = {"department": "law_enforcement", "period": "month", "rate": "response"}
            return sample(text, labels)

        assert law_response() == 0.5
        with sessions.begin() as session:  # a third law case, accepted in time
            start = now[0] - MIN
            session.execute(insert(Case), [case_row(50, start, acknowledged_at=start)])
        assert law_response() == 0.5  # within the minute: the kept answer
        now[0] += timedelta(seconds=RATES_MAX_AGE_SECONDS)
        assert law_response() == pytest.approx(2 / 3)
