"""Response templates, a department's people and assignment through the real app (TestClient)
on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from dispatch.accounts import AccountService
from dispatch.config import AccountSettings, ApiSettings, ApiToken, Department, Role
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.workflow import Workflow
from storage.tables import Case
from tests.factories import API_TOKENS, EventFactory, make_ingest, migrated_database

LAW = Department.LAW_ENFORCEMENT
TOKENS = {
    **API_TOKENS,
    "admin": ApiToken(name="root", token=SecretStr("admin-token-0000001"), role=Role.ADMIN),
    "law_chief": ApiToken(
        name="law-chief",
        token=SecretStr("law-chief-token-0001"),
        role=Role.SUPERVISOR,
        department=LAW,
    ),
}
PASSWORD = "a long enough password 1"


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who].token.get_secret_value()}"}


@dataclass
class Rig:
    client: TestClient
    case_id: int  # dispatched to law enforcement

    def call(self, method: str, url: str, who: str, body: Any = None) -> Any:
        return self.client.request(method, f"/api/v1{url}", headers=auth(who), json=body)


@pytest.fixture
def rig(database_url: str, tmp_path: Path) -> Iterator[Rig]:
    with migrated_database(database_url) as (_engine, sessions):
        ingest = make_ingest(sessions, tmp_path / "evidence")
        ingest.service.store(EventFactory().event())
        with sessions() as session:
            case_id = session.scalars(select(Case.id)).one()
        accounts = AccountService(sessions, AccountSettings())
        accounts.create_user("officer-1", PASSWORD, Role.WORKER, LAW, display_name="Wang Wei")
        accounts.create_user("law-chief", PASSWORD, Role.SUPERVISOR, LAW, display_name="Zhao Lei")
        accounts.create_user("fire-1", PASSWORD, Role.WORKER, Department.FIRE_RESCUE)
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=ingest.evidence_store,
                settings=ApiSettings(tokens=list(TOKENS.values())),
                registry=ingest.registry,
                metrics_registry=ingest.metrics.registry,
                workflow=Workflow(),
                accounts=accounts,
            )
        )
        with TestClient(app) as client:
            yield Rig(client, case_id)


def names(response: Any) -> list[str]:
    return [t["name"] for t in response.json()]


def _template(name: str, department: str | None = None, body: str = "Towed away.") -> Any:
    return {"name": name, "body": body, "department": department}


def test_an_admin_writes_templates_and_each_role_lists_its_own(rig: Rig) -> None:
    for name, department in (("Towed", "law_enforcement"), ("Any", None), ("Hose", "fire_rescue")):
        created = rig.call("POST", "/templates", "admin", _template(name, department))
        assert created.status_code == 201, created.text
        assert created.json()["created_by"] == "root"
    assert names(rig.call("GET", "/templates", "dispatcher")) == ["Any", "Hose", "Towed"]
    law = rig.call("GET", "/templates?department=law_enforcement", "dispatcher")
    assert names(law) == ["Any", "Towed"]
    assert names(rig.call("GET", "/templates", "law")) == ["Any", "Towed"]
    assert names(rig.call("GET", "/templates?department=law_enforcement", "law")) == [
        "Any",
        "Towed",
    ]
    other = rig.call("GET", "/templates?department=fire_rescue", "law")
    assert (other.status_code, other.json()["code"]) == (403, "forbidden")
    assert rig.call("GET", "/templates", "integration").status_code == 403

    towed = next(t for t in law.json() if t["name"] == "Towed")
    changed = rig.call(
        "PUT", f"/templates/{towed['id']}", "admin", _template("Towed", None, "Gone.")
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["department"], changed.json()["body"]) == (None, "Gone.")
    assert names(rig.call("GET", "/templates", "fire")) == ["Any", "Hose", "Towed"]
    assert rig.call("DELETE", f"/templates/{towed['id']}", "admin").status_code == 204
    gone = rig.call("DELETE", f"/templates/{towed['id']}", "admin")
    assert (gone.status_code, gone.json()["code"]) == (404, "template_not_found")
    assert gone.json()["params"] == {"template_id": towed["id"]}


def test_only_an_admin_writes_and_names_are_unique(rig: Rig) -> None:
    for who in ("dispatcher", "law_chief", "law"):
        refused = rig.call("POST", "/templates", who, _template("Mine"))
        assert refused.status_code == 403, who
    assert rig.call("POST", "/templates", "admin", _template("Same")).status_code == 201
    twice = rig.call("POST", "/templates", "admin", _template("Same", "fire_rescue"))
    assert (twice.status_code, twice.json()["code"]) == (409, "template_name_taken")
    other = rig.call("POST", "/templates", "admin", _template("Other")).json()
    renamed = rig.call("PUT", f"/templates/{other['id']}", "admin", _template("Same"))
    assert renamed.status_code == 409
    assert rig.call("PUT", "/templates/99999", "admin", _template("X")).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        _template(""),
        _template("x" * 81),
        _template("ok", body=""),
        _template("ok", body="y" * 2001),
        _template("two\nlines"),
        _template(" padded "),
        _template("ok", body=" \n "),
        _template("c1\x85"),
        _template("bell\x07"),
        _template("ok", body="hidden\x1b[2J"),
        _template("ok", department="nowhere"),
        {**_template("ok"), "extra": 1},
    ],
)
def test_hostile_templates_are_refused_with_a_reason(rig: Rig, body: Any) -> None:
    refused = rig.call("POST", "/templates", "admin", body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "invalid_request"
    assert rig.call("GET", "/templates", "admin").json() == []


def test_a_departments_people_for_those_who_may_assign(rig: Rig) -> None:
    people = rig.call("GET", "/departments/law_enforcement/people", "dispatcher")
    assert people.status_code == 200, people.text
    assert people.json() == [
        {"username": "officer-1", "display_name": "Wang Wei", "role": "worker"},
        {"username": "law-chief", "display_name": "Zhao Lei", "role": "supervisor"},
    ]
    assert rig.call("GET", "/departments/law_enforcement/people", "law_chief").status_code == 200
    assert rig.call("GET", "/departments/law_enforcement/people", "admin").status_code == 200
    for who, department in (("law_chief", "fire_rescue"), ("law", "law_enforcement")):
        refused = rig.call("GET", f"/departments/{department}/people", who)
        assert refused.status_code == 403, who
    assert rig.call("GET", "/departments/nowhere/people", "dispatcher").status_code == 422


def test_assign_through_the_api_with_coded_refusals(rig: Rig) -> None:
    url = f"/cases/{rig.case_id}/actions"
    done = rig.call("POST", url, "law_chief", {"action": "assign", "assignee": "officer-1"})
    assert done.status_code == 200, done.text
    assert done.json()["assignee"] == "officer-1"
    wrong = rig.call("POST", url, "dispatcher", {"action": "assign", "assignee": "fire-1"})
    assert wrong.status_code == 422
    assert wrong.json()["code"] == "assignee_not_in_department"
    params = wrong.json()["params"]
    assert (params["assignee"], params["department"]) == ("fire-1", "law_enforcement")
    note = {"action": "note", "reason": "x", "close_reason": "false_alarm"}
    misplaced = rig.call("POST", url, "dispatcher", note)
    assert (misplaced.status_code, misplaced.json()["code"]) == (422, "close_reason_only_on_close")
    worker = rig.call("POST", url, "law", {"action": "assign", "assignee": ""})
    assert (worker.status_code, worker.json()["code"]) == (403, "role_not_permitted")
