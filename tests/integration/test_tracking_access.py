"""Who sees a resident's report, and what a tracking code opens.

Two residents report the same garbage (the second joins the first's case): A gives a phone and
agrees to be called, B gives a phone and does not. Every place a report shows is read as the
dispatcher, property management's worker and supervisor (the case's department), the site's
council and an integration: the phone is whole for the dispatcher only, masked for the
department when the resident agreed, absent otherwise, and never in Open311 output.

A tracking code (the resident's only key, BOLA) opens its own report: the public replies of the
joined case (public by nature) but never the other reporter's phone or description; a rating by
one code changes no other report; lookups are rate-limited per address.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from contracts.kinds import ViolationKind
from dispatch.accounts import AccountService
from dispatch.config import (
    AccountSettings,
    ApiSettings,
    Department,
    ReportRateLimits,
    ResidentSettings,
    Role,
    RoutingSettings,
)
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.residents.intake import IntakeDeps, ReportSubmission, submit_report
from dispatch.residents.privacy import mask_phone
from dispatch.residents.tiers import ResidentAwareRouter
from dispatch.web.report_page import CSRF_COOKIE
from dispatch.workflow import Action, Actor, Command, Workflow
from storage.database import SessionFactory
from storage.evidence_store import EvidenceStore
from storage.tables import Case, ResidentReport
from tests.factories import API_TOKENS, SITE, make_registry, migrated_database

PASSWORD = "tracking-access-pass"
PEOPLE: list[tuple[str, Role, Department | None, str | None]] = [
    ("pm-worker", Role.WORKER, Department.PROPERTY_MANAGEMENT, None),
    ("pm-chief", Role.SUPERVISOR, Department.PROPERTY_MANAGEMENT, None),
    ("council-1", Role.COUNCIL, None, SITE),
]
PHONE_A = "13812341234"  # agreed to be contacted
PHONE_B = "13987654321"  # did not
PM_WORKER = Actor("pm-worker", Role.WORKER, Department.PROPERTY_MANAGEMENT)


@dataclass
class World:
    client: TestClient
    sessions: SessionFactory
    workflow: Workflow
    tokens: dict[str, str]
    case_id: int
    code_a: str
    code_b: str

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


def _submit(intake: IntakeDeps, sessions: SessionFactory, text: str, phone: str, ok: bool) -> str:
    with sessions() as session:
        receipt = submit_report(
            session,
            ReportSubmission(
                category=ViolationKind.GARBAGE,
                site_id=SITE,
                building="1号楼",
                description=text,
                phone=phone,
                contact_consent=ok,
                client_address="198.51.100.7",
            ),
            deps=intake,
        )
        session.commit()
        return receipt.tracking_code


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[World]:
    with migrated_database(database_url) as (_engine, sessions):
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
        accounts = AccountService(
            sessions,
            AccountSettings(),
            hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
        )
        for name, role, department, site in PEOPLE:
            accounts.create_user(name, PASSWORD, role, department, site_id=site)
        workflow = Workflow(reroute=intake.router.assignment)
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=intake.evidence_store,
                settings=ApiSettings(tokens=list(API_TOKENS.values())),
                registry=registry,
                metrics_registry=CollectorRegistry(),
                workflow=workflow,
                accounts=accounts,
                intake=intake,
                residents=settings,
            )
        )
        code_a = _submit(intake, sessions, "A-ONLY bags by the gate", PHONE_A, True)
        code_b = _submit(intake, sessions, "B-ONLY secret detail", PHONE_B, False)
        with sessions() as session:
            cases = {report.case_id for report in session.scalars(select(ResidentReport)).all()}
        assert len(cases) == 1  # B joined A's case
        with TestClient(app) as client:
            tokens = {
                "dispatcher": API_TOKENS["dispatcher"].token.get_secret_value(),
                "integration": API_TOKENS["integration"].token.get_secret_value(),
            }
            for name, *_ in PEOPLE:
                login = client.post(
                    "/api/v1/auth/login", json={"username": name, "password": PASSWORD}
                )
                assert login.status_code == 200, login.text
                tokens[name] = login.json()["token"]
            client.cookies.clear()
            yield World(client, sessions, workflow, tokens, cases.pop(), code_a, code_b)


def _places(world: World) -> list[str]:
    case = world.case_id
    return [
        f"/api/v1/cases/{case}",
        f"/console/cases/{case}",
        f"/console/cases/{case}/panel",
        f"/worker/cases/{case}",
        f"/open311/v2/requests/{world.code_a}.json",
        f"/open311/v2/requests/{world.code_a}.xml",
        "/open311/v2/requests.json",
        "/api/v1/cases",
    ]


# who -> (sees A's phone as, sees B's phone as): None means the number appears in no form
EXPECTED: dict[str, tuple[str | None, str | None]] = {
    "dispatcher": (PHONE_A, PHONE_B),
    "pm-worker": (mask_phone(PHONE_A), None),
    "pm-chief": (mask_phone(PHONE_A), None),
    "council-1": (None, None),
    "integration": (None, None),
}


def _forms(phone: str) -> set[str]:
    return {phone, mask_phone(phone), f"{phone[:3]} {phone[3:7]}"}


def test_each_role_sees_the_reporters_phone_only_as_it_may(world: World) -> None:
    for who, (a_shown, b_shown) in EXPECTED.items():
        seen: dict[str, str] = {}
        for path in _places(world):
            response = world.client.get(path, headers=world.headers(who))
            assert response.status_code < 500, (who, path, response.text[:300])
            seen[path] = response.text if response.status_code == 200 else ""
            for phone, shown in ((PHONE_A, a_shown), (PHONE_B, b_shown)):
                hidden = _forms(phone) - ({shown} if shown else set())
                for form in hidden:
                    assert form not in response.text, (who, path, form)
            if path.startswith("/open311"):  # never any form of a phone, whoever asks
                for phone in (PHONE_A, PHONE_B):
                    assert not _forms(phone) & {f for f in _forms(phone) if f in response.text}
        panel = seen[f"/console/cases/{world.case_id}/panel"] or seen.get(
            f"/worker/cases/{world.case_id}", ""
        )
        for shown in (a_shown, b_shown):
            if shown is not None:  # shown somewhere: the panel (or the worker's page) has it
                assert shown in panel, (who, shown)
        if who in ("pm-worker", "pm-chief"):
            assert "居民未同意由部门联系" in panel or "did not agree" in panel


def test_a_tracking_code_opens_its_own_report_and_public_replies_only(world: World) -> None:
    with world.sessions() as session:
        case = session.get(Case, world.case_id)
        assert case is not None
        world.workflow.apply(
            session, case, Command(Action.REPLY, reason="PUBLIC-REPLY 已安排清运"), PM_WORKER
        )
        world.workflow.apply(session, case, Command(Action.NOTE, reason="INTERNAL-NOTE"), PM_WORKER)
        session.commit()
    page_a = world.client.get(f"/report/t/{world.code_a}").text
    page_b = world.client.get(f"/report/t/{world.code_b.lower()}").text
    assert "A-ONLY" in page_a
    assert "B-ONLY" not in page_a
    assert "B-ONLY" in page_b
    assert "A-ONLY" not in page_b
    for page in (page_a, page_b):
        assert "PUBLIC-REPLY" in page  # the joined case's public reply: public by nature
        assert "INTERNAL-NOTE" not in page
        for phone in (PHONE_A, PHONE_B):
            for form in _forms(phone):
                assert form not in page
    assert world.code_b not in page_a
    assert world.code_a not in page_b


def test_a_rating_by_one_code_changes_no_other_report(world: World) -> None:
    with world.sessions() as session:
        case = session.get(Case, world.case_id)
        assert case is not None
        for action in (Action.ACCEPT, Action.RESOLVE):
            world.workflow.apply(session, case, Command(action), PM_WORKER)
        session.commit()
    world.client.get(f"/report/t/{world.code_a}")
    token = world.client.cookies.get(CSRF_COOKIE) or ""
    sent = world.client.post(
        f"/report/t/{world.code_a}/rate",
        data={"csrf": token, "rating": "satisfied"},
        follow_redirects=False,
    )
    assert sent.status_code == 303
    with world.sessions() as session:
        ratings = dict(
            session.execute(select(ResidentReport.tracking_code, ResidentReport.rating)).all()
        )
    assert ratings == {world.code_a: "satisfied", world.code_b: None}
    page_b = world.client.get(f"/report/t/{world.code_b}").text
    assert 'data-testid="rating-submit"' in page_b  # B still rates for itself


def test_lookups_and_ratings_are_rate_limited_per_address(world: World) -> None:
    for _ in range(ReportRateLimits().lookups_per_address - 1):
        assert world.client.get(f"/report/t/{world.code_a}").status_code == 200
    token = world.client.cookies.get(CSRF_COOKIE) or ""
    # the last allowed lookup is a guess; then even a known code's rating is refused
    assert world.client.get("/report/t/ABCDEFGHJK").status_code == 404
    limited = world.client.post(
        f"/report/t/{world.code_a}/rate", data={"csrf": token, "rating": "satisfied"}
    )
    assert limited.status_code == 429
    assert "Retry-After" in limited.headers
    assert world.client.get(f"/report/t/{world.code_b}").status_code == 429
    with world.sessions() as session:
        assert session.scalars(select(ResidentReport.rating)).all() == [None, None]


def test_the_department_replies_from_the_case_and_the_resident_reads_it(world: World) -> None:
    panel = world.client.get(
        f"/console/cases/{world.case_id}/panel", headers=world.headers("dispatcher")
    )
    assert 'data-action="reply"' in panel.text
    worker_page = world.client.get(
        f"/worker/cases/{world.case_id}", headers=world.headers("pm-worker")
    )
    assert 'data-action="reply"' in worker_page.text
    answered = world.client.post(
        f"/api/v1/cases/{world.case_id}/actions",
        json={"action": "reply", "reason": "明早八点清运 API-REPLY"},
        headers=world.headers("pm-worker"),
    )
    assert answered.status_code == 200, answered.text
    empty = world.client.post(
        f"/api/v1/cases/{world.case_id}/actions",
        json={"action": "reply", "reason": "  "},
        headers=world.headers("pm-worker"),
    )
    assert empty.status_code == 422
    assert empty.json()["code"] == "reason_required"
    council = world.client.post(
        f"/api/v1/cases/{world.case_id}/actions",
        json={"action": "reply", "reason": "not mine to answer"},
        headers=world.headers("council-1"),
    )
    assert council.status_code in (403, 404)
    for code in (world.code_a, world.code_b):
        page = world.client.get(f"/report/t/{code}").text
        assert "API-REPLY" in page
        assert "not mine" not in page
