"""小事协商 over the real app on SQLite and PostgreSQL: a resident's community-tier report, the
council and property management discussing, proposing and voting to quorum, the agreed outcome
on the audit chain, property management resolving; another consultation timing out through the
real SLA sweep; and the refusals (votes twice, closed, other sites and departments, bad text and
choices)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from contracts.events import ViolationKind
from dispatch.accounts import AccountService
from dispatch.calendar import WorkingCalendar
from dispatch.config import (
    AccountSettings,
    ApiSettings,
    Department,
    ResidentSettings,
    Role,
    RoutingSettings,
    SlaSettings,
)
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.metrics import DispatchMetrics
from dispatch.residents.intake import IntakeDeps, ReportSubmission, submit_report
from dispatch.residents.tiers import ResidentAwareRouter
from dispatch.sla import SlaSweep
from dispatch.workflow import Workflow
from storage.audit import verify_chain
from storage.database import SessionFactory
from storage.evidence_store import EvidenceStore
from storage.tables import (
    Case,
    CaseTransition,
    Consultation,
    ConsultationPost,
    ConsultationVote,
    utcnow,
)
from tests.factories import API_TOKENS, OTHER_SITE, SITE, make_registry, migrated_database

PASSWORD = "consultation-test-pass"
PEOPLE: list[tuple[str, Role, Department | None, str | None]] = [
    ("council-1", Role.COUNCIL, None, SITE),
    ("council-2", Role.COUNCIL, None, SITE),
    ("council-3", Role.COUNCIL, None, SITE),
    ("council-b", Role.COUNCIL, None, OTHER_SITE),
    ("pm-worker", Role.WORKER, Department.PROPERTY_MANAGEMENT, None),
    ("pm-chief", Role.SUPERVISOR, Department.PROPERTY_MANAGEMENT, None),
    ("law-worker", Role.WORKER, Department.LAW_ENFORCEMENT, None),
]


@dataclass
class Rig:
    client: TestClient
    sessions: SessionFactory
    intake: IntakeDeps
    tokens: dict[str, str]

    def as_(self, who: str) -> dict[str, str]:
        if who == "desk":
            return {"Authorization": f"Bearer {API_TOKENS['dispatcher'].token.get_secret_value()}"}
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def report(self, description: str = "bags of garbage", building: str = "1号楼") -> int:
        """A resident's community-tier report (garbage): its case id."""
        with self.sessions() as session:
            receipt = submit_report(
                session,
                ReportSubmission(
                    category=ViolationKind.GARBAGE,
                    site_id=SITE,
                    building=building,
                    description=description,
                    phone="13812345678",
                    client_address="198.51.100.1",
                ),
                deps=self.intake,
            )
            session.commit()
            return receipt.case_id

    def consultation_of(self, case_id: int) -> int:
        with self.sessions() as session:
            return session.scalars(
                select(Consultation.id).where(Consultation.case_id == case_id)
            ).one()

    def post(self, who: str, path: str, body: dict[str, Any]) -> Any:
        return self.client.post(f"/api/v1/consultations{path}", json=body, headers=self.as_(who))

    def get(self, who: str, path: str = "") -> Any:
        return self.client.get(f"/api/v1/consultations{path}", headers=self.as_(who))

    def actions(self, case_id: int) -> list[str]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(CaseTransition.action)
                    .where(CaseTransition.case_id == case_id)
                    .order_by(CaseTransition.seq)
                )
            )


@pytest.fixture
def rig(database_url: str, tmp_path: Path) -> Iterator[Rig]:
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
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=intake.evidence_store,
                settings=ApiSettings(tokens=list(API_TOKENS.values())),
                registry=registry,
                metrics_registry=CollectorRegistry(),
                workflow=Workflow(reroute=intake.router.assignment),
                accounts=accounts,
                intake=intake,
                residents=settings,
            )
        )
        with TestClient(app) as client:
            tokens = {}
            for name, *_ in PEOPLE:
                login = client.post(
                    "/api/v1/auth/login", json={"username": name, "password": PASSWORD}
                )
                assert login.status_code == 200, login.text
                tokens[name] = login.json()["token"]
            client.cookies.clear()  # bearer tokens only: each request says who it is
            yield Rig(client, sessions, intake, tokens)


def _chain_intact(rig: Rig) -> None:
    with rig.sessions() as session:
        report = verify_chain(session)
        assert report.intact, report.problems


def test_council_and_property_management_agree_and_property_management_resolves(
    rig: Rig,
) -> None:
    case_id = rig.report()
    cid = rig.consultation_of(case_id)
    listed = rig.get("council-1").json()
    assert [item["id"] for item in listed] == [cid]
    assert listed[0]["state"] == "open"
    assert listed[0]["quorum"] == 3
    assert rig.post("council-1", f"/{cid}/comments", {"body": "谁放的？"}).status_code == 201
    assert rig.post("pm-worker", f"/{cid}/comments", {"body": "物业可清运"}).status_code == 201
    proposal = rig.post("council-1", f"/{cid}/proposals", {"body": "物业今天清运，张贴告示"})
    assert proposal.status_code == 201, proposal.text
    pid = proposal.json()["id"]
    vote = rig.post("council-1", f"/{cid}/proposals/{pid}/votes", {"choice": "against"})
    assert vote.json() == {
        "tally": {"for": 0, "against": 1, "abstain": 0},
        "agreed": False,
        "state": "open",
    }
    # changing one's vote is allowed while open, and counts once
    rig.post("council-1", f"/{cid}/proposals/{pid}/votes", {"choice": "for"})
    rig.post("council-2", f"/{cid}/proposals/{pid}/votes", {"choice": "for"})
    with rig.sessions() as session:
        deadline_before = session.get_one(Case, case_id).sla_due_at
    carried = rig.post("pm-chief", f"/{cid}/proposals/{pid}/votes", {"choice": "for"})
    assert carried.json() == {
        "tally": {"for": 3, "against": 0, "abstain": 0},
        "agreed": True,
        "state": "agreed",
    }
    item = rig.get("council-3", f"/{cid}").json()
    assert (item["state"], item["outcome"]) == ("agreed", "物业今天清运，张贴告示")
    assert item["closed_at"] is not None
    assert "13812345678" not in str(item)
    assert "phone" not in item["case"]
    assert item["case"]["description"] == "bags of garbage"
    assert [p["kind"] for p in item["posts"]] == ["comment", "comment", "proposal"]
    assert item["posts"][2]["tally"] == {"for": 3, "against": 0, "abstain": 0}
    assert item["posts"][2]["my_vote"] is None  # council-3 did not vote
    assert rig.get("council-1", f"/{cid}").json()["posts"][2]["my_vote"] == "for"
    with rig.sessions() as session:
        case = session.get_one(Case, case_id)
        # property management's normal route deadline, counted from the agreement
        assert case.sla_due_at is not None
        assert deadline_before is not None
        assert case.sla_due_at != deadline_before
        assert case.department == "property_management"
        agreed = session.scalars(
            select(CaseTransition).where(
                CaseTransition.case_id == case_id, CaseTransition.action == "consult_agreed"
            )
        ).one()
        assert agreed.reason == "物业今天清运，张贴告示"
        assert agreed.detail["for"] == 3
        assert agreed.detail["deadline_to"]
        changed = session.scalars(
            select(CaseTransition).where(
                CaseTransition.case_id == case_id,
                CaseTransition.action == "consult_vote",
                CaseTransition.actor == "council-1",
            )
        ).all()
        assert [entry.detail.get("from_choice") for entry in changed] == [None, "against"]
    assert rig.actions(case_id)[-8:] == [
        "consult_comment",
        "consult_comment",
        "consult_propose",
        *["consult_vote"] * 4,
        "consult_agreed",
    ]
    # closed: no more votes, comments or proposals
    late = rig.post("council-3", f"/{cid}/proposals/{pid}/votes", {"choice": "for"})
    assert (late.status_code, late.json()["code"]) == (409, "consultation_closed")
    assert rig.post("council-3", f"/{cid}/comments", {"body": "x"}).status_code == 409
    # property management carries it out through the normal workflow
    for action in ("accept", "resolve"):
        done = rig.client.post(
            f"/api/v1/cases/{case_id}/actions",
            json={"action": action},
            headers=rig.as_("pm-worker"),
        )
        assert done.status_code == 200, done.text
    assert rig.actions(case_id)[-2:] == ["accept", "resolve"]
    # the timeline tells every step, in both languages
    for lang, words in (("en", ["Consultation agreed", "carried"]), ("zh-CN", ["协商达成一致"])):
        page = rig.client.get(f"/console/cases/{case_id}?lang={lang}", headers=rig.as_("desk"))
        assert page.status_code == 200
        for word in words:
            assert word in page.text, (lang, word)
    _chain_intact(rig)


def test_an_unsettled_consultation_escalates_with_the_sla_sweep(rig: Rig) -> None:
    case_id = rig.report("old sofa on the lawn")
    cid = rig.consultation_of(case_id)
    rig.post("council-1", f"/{cid}/comments", {"body": "no agreement yet"})
    agreed_case = rig.report("another pile", building="2号楼")
    agreed_cid = rig.consultation_of(agreed_case)
    pid = rig.post("council-1", f"/{agreed_cid}/proposals", {"body": "clear it"}).json()["id"]
    for who in ("council-1", "council-2", "pm-worker"):
        rig.post(who, f"/{agreed_cid}/proposals/{pid}/votes", {"choice": "for"})
    router = rig.intake.router
    sweep = SlaSweep(
        rig.sessions,
        Workflow(reroute=router.assignment),
        WorkingCalendar(),
        SlaSettings(),
        DispatchMetrics(CollectorRegistry()),
        router,
    )
    with rig.sessions() as session:
        deadline = session.get_one(Consultation, cid).deadline_at
    sweep.run(deadline - timedelta(minutes=1))
    with rig.sessions() as session:
        assert session.get_one(Consultation, cid).state == "open"
    later = deadline + timedelta(minutes=1)
    sweep.run(later)
    with rig.sessions() as session:
        case = session.get_one(Case, case_id)
        assert (case.department, case.tier) == ("law_enforcement", "department")
        consultation = session.get_one(Consultation, cid)
        assert (consultation.state, consultation.closed_at) == ("escalated", later)
        entry = session.scalars(
            select(CaseTransition).where(
                CaseTransition.case_id == case_id, CaseTransition.action == "consult_escalated"
            )
        ).one()
        assert (entry.actor, entry.detail["department"]) == ("sla-sweep", "law_enforcement")
        # the agreed one stays agreed and with property management
        assert session.get_one(Consultation, agreed_cid).state == "agreed"
        assert session.get_one(Case, agreed_case).department == "property_management"
    assert rig.actions(case_id)[-2:] == ["transfer", "consult_escalated"]
    # the council's list: the closed ones, the latest closed first
    listed = rig.get("council-1").json()
    assert [(item["id"], item["state"]) for item in listed] == [
        (cid, "escalated"),
        (agreed_cid, "agreed"),
    ]
    refused = rig.post("council-1", f"/{cid}/comments", {"body": "too late"})
    assert (refused.status_code, refused.json()["code"]) == (409, "consultation_closed")
    for lang, word in (("en", "Consultation escalated"), ("zh-CN", "协商升级派单")):
        page = rig.client.get(f"/console/cases/{case_id}?lang={lang}", headers=rig.as_("desk"))
        assert word in page.text
    _chain_intact(rig)


def _counts(rig: Rig) -> tuple[int, int, int]:
    with rig.sessions() as session:
        return (
            len(session.scalars(select(ConsultationPost.id)).all()),
            len(session.scalars(select(ConsultationVote.voter)).all()),
            len(session.scalars(select(CaseTransition.id)).all()),
        )


def test_hostile_steps_are_refused_and_store_nothing(rig: Rig) -> None:
    case_id = rig.report()
    cid = rig.consultation_of(case_id)
    pid = rig.post("pm-worker", f"/{cid}/proposals", {"body": "sweep daily"}).json()["id"]
    assert rig.post("council-1", f"/{cid}/proposals/{pid}/votes", {"choice": "for"}).is_success
    before = _counts(rig)
    twice = rig.post("council-1", f"/{cid}/proposals/{pid}/votes", {"choice": "for"})
    assert (twice.status_code, twice.json()["code"]) == (409, "consultation_same_vote")
    bad = rig.post("council-1", f"/{cid}/proposals/{pid}/votes", {"choice": "maybe"})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")
    for who in ("council-b", "law-worker"):
        for answer in (
            rig.get(who, f"/{cid}"),
            rig.post(who, f"/{cid}/comments", {"body": "hello"}),
            rig.post(who, f"/{cid}/proposals", {"body": "mine"}),
            rig.post(who, f"/{cid}/proposals/{pid}/votes", {"choice": "for"}),
        ):
            assert (answer.status_code, answer.json()["code"]) == (404, "consultation_not_found")
        assert rig.get(who).json() == []
    reader = rig.post("desk", f"/{cid}/comments", {"body": "desk"})
    assert (reader.status_code, reader.json()["code"]) == (403, "consultation_read_only")
    assert rig.get("desk", f"/{cid}").json()["can_take_part"] is False
    long_text = rig.post("council-1", f"/{cid}/comments", {"body": "长" * 2001})
    assert (long_text.status_code, long_text.json()["code"]) == (422, "consultation_text_too_long")
    assert long_text.json()["params"] == {"limit": 2000}
    huge = rig.post("council-1", f"/{cid}/comments", {"body": "x" * 10_000})
    assert huge.status_code == 422
    nul = rig.post("council-1", f"/{cid}/comments", {"body": "a\x00b"})
    assert (nul.status_code, nul.json()["code"]) == (422, "consultation_text_invalid")
    blank = rig.post("council-1", f"/{cid}/comments", {"body": "   "})
    assert (blank.status_code, blank.json()["code"]) == (422, "consultation_text_empty")
    other = rig.report("elsewhere", building="3号楼")
    other_cid = rig.consultation_of(other)
    cross = rig.post("council-1", f"/{other_cid}/proposals/{pid}/votes", {"choice": "for"})
    assert (cross.status_code, cross.json()["code"]) == (404, "consultation_proposal_not_found")
    after = _counts(rig)
    assert after[:2] == before[:2]
    # the other report added its own entries only; none of the refusals wrote one
    assert rig.actions(case_id)[-1] == "consult_vote"
    script = "<script>alert('x')</script>"
    stored = rig.post("council-2", f"/{cid}/comments", {"body": script})
    assert stored.status_code == 201
    assert stored.json()["body"] == script
    page = rig.client.get(f"/council/{cid}", headers=rig.as_("council-2"))
    assert page.status_code == 200
    assert script not in page.text
    assert "&lt;script&gt;" in page.text
    _chain_intact(rig)


def test_a_deadline_passed_before_the_sweep_refuses_steps(rig: Rig) -> None:
    case_id = rig.report()
    cid = rig.consultation_of(case_id)
    with rig.sessions() as session:
        session.get_one(Consultation, cid).deadline_at = utcnow() - timedelta(minutes=1)
        session.commit()
    late = rig.post("council-1", f"/{cid}/comments", {"body": "late"})
    assert (late.status_code, late.json()["code"]) == (409, "consultation_deadline_passed")


def test_the_consultation_routes_are_in_the_openapi_document(rig: Rig) -> None:
    paths = rig.client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/consultations",
        "/api/v1/consultations/{consultation_id}",
        "/api/v1/consultations/{consultation_id}/comments",
        "/api/v1/consultations/{consultation_id}/proposals",
        "/api/v1/consultations/{consultation_id}/proposals/{proposal_id}/votes",
    ):
        assert path in paths, path


def test_the_council_pages_in_both_languages_and_who_reaches_them(rig: Rig) -> None:
    case_id = rig.report()
    cid = rig.consultation_of(case_id)
    listing = rig.client.get("/council?lang=en", headers=rig.as_("council-1"))
    assert listing.status_code == 200
    assert f'href="/council/{cid}"' in listing.text
    assert "Garbage left out" in listing.text
    assert "min left" in listing.text  # the countdown
    chinese = rig.client.get("/council?lang=zh-CN", headers=rig.as_("council-1"))
    assert "小事协商" in chinese.text
    assert "协商中" in chinese.text
    item = rig.client.get(f"/council/{cid}?lang=en", headers=rig.as_("pm-worker"))
    assert item.status_code == 200
    assert "Propose a resolution" in item.text
    assert "13812345678" not in item.text
    desk = rig.client.get(f"/council/{cid}?lang=en", headers=rig.as_("desk"))
    assert desk.status_code == 200
    assert "Propose a resolution" not in desk.text
    for who in ("council-b", "law-worker"):
        assert rig.client.get(f"/council/{cid}", headers=rig.as_(who)).status_code == 404
        assert f"/council/{cid}" not in rig.client.get("/council", headers=rig.as_(who)).text
    # property management's case pages link to the consultation; another department's do not
    for path in (f"/console/cases/{case_id}", f"/worker/cases/{case_id}"):
        panel = rig.client.get(path, headers=rig.as_("pm-worker"))
        assert f'href="/council/{cid}"' in panel.text, path
    desk_panel = rig.client.get(f"/console/cases/{case_id}", headers=rig.as_("desk"))
    assert f'href="/council/{cid}"' in desk_panel.text
    home = rig.client.get("/", headers=rig.as_("council-1"), follow_redirects=False)
    assert home.headers["location"] == "/council"


def test_user_add_refuses_a_council_member_of_an_unknown_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``civicwatch user add --role council --site X`` against the example config (its sites)."""
    from civicwatch.cli import main
    from civicwatch.exit_codes import EXIT_ACCOUNT

    config = ["--config", str(Path(__file__).resolve().parents[2] / "configs" / "example.yaml")]
    monkeypatch.setenv("CIVICWATCH_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("CIVICWATCH_PASSWORD", PASSWORD)
    add = ["user", "add", "wang", "--role", "council", *config]
    assert main([*add, "--site", "no-such-compound"]) == EXIT_ACCOUNT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "unknown site 'no-such-compound'" in err[0]
    assert main([*add, "--site", "compound-demo"]) == 0
    assert "created wang" in capsys.readouterr().out


def test_the_example_config_has_a_council_account_at_its_demo_site() -> None:
    from civicwatch.config import load_config

    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "example.yaml")
    users = {u.username: u for u in config.server.api.accounts.dev_users}
    assert users["council"].role is Role.COUNCIL
    assert users["council"].site_id in {site.id for site in config.sites}


@pytest.mark.parametrize(
    ("action", "extra"),
    [("close", {"close_reason": "not_in_remit"}), ("merge", {"duplicate_of": "other"})],
)
def test_closing_or_merging_the_case_withdraws_its_open_consultation(
    rig: Rig, action: str, extra: dict[str, Any]
) -> None:
    """A community case filed or merged away by the command centre ends its open consultation
    as withdrawn, on the audit chain; nobody can vote on a case that no longer exists."""
    case_id = rig.report("a bicycle in the stairwell")
    cid = rig.consultation_of(case_id)
    pid = rig.post("council-1", f"/{cid}/proposals", {"body": "move it"}).json()["id"]
    other = rig.report("the same bicycle", building="2号楼")
    body: dict[str, Any] = {"action": action, "reason": "handled elsewhere", **extra}
    if action == "merge":
        body["duplicate_of"] = other
    else:
        # a dispatcher files only a case back on the desk: property management returns it first
        returned = rig.client.post(
            f"/api/v1/cases/{case_id}/actions",
            json={"action": "return", "reason": "not ours"},
            headers=rig.as_("pm-worker"),
        )
        assert returned.status_code == 200, returned.text
    done = rig.client.post(f"/api/v1/cases/{case_id}/actions", json=body, headers=rig.as_("desk"))
    assert done.status_code == 200, done.text
    with rig.sessions() as session:
        consultation = session.get_one(Consultation, cid)
        assert consultation.state == "withdrawn"
        assert consultation.closed_at is not None
        assert session.get_one(Consultation, rig.consultation_of(other)).state == "open"
    assert rig.actions(case_id)[-2:] == [action, "consult_withdrawn"]
    refused = rig.post("council-2", f"/{cid}/proposals/{pid}/votes", {"choice": "for"})
    assert (refused.status_code, refused.json()["code"]) == (409, "consultation_closed")
    for lang, state, entry in (
        ("en", "Withdrawn (the case was closed or merged)", "Consultation withdrawn"),
        ("zh-CN", "已撤销（案件已结案或合并）", "协商撤销"),
    ):
        page = rig.client.get(f"/council/{cid}?lang={lang}", headers=rig.as_("council-1"))
        assert page.status_code == 200
        assert state in page.text
        case_page = rig.client.get(f"/console/cases/{case_id}?lang={lang}", headers=rig.as_("desk"))
        assert entry in case_page.text
    _chain_intact(rig)
