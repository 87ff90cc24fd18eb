"""回访 through the real app: public replies on the tracking page (notes never), one rating per
report, 不满意 reopening the case once to the department's supervisor (who is notified), a second
不满意 recorded and flagged, mediation turning a household matter into a consultation, and the
hostile cases (rating an open case, a bad value, no CSRF, an unknown code, an oversized or
control-character comment), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from dispatch.config import ApiSettings, Department, ResidentSettings, Role, RoutingSettings
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.notification_settings import NotificationEvent, NotificationSettings
from dispatch.notifications.pump import Notifier
from dispatch.notifications.sender import NotificationSender
from dispatch.residents.followup import COMMENT_CHARS
from dispatch.residents.intake import IntakeDeps
from dispatch.residents.status import (
    RESIDENT_DEPARTMENT,
    STATUS_EVENT,
    ResidentGateway,
    ResidentStatusPump,
)
from dispatch.residents.tiers import ResidentAwareRouter
from dispatch.web.i18n import translator
from dispatch.web.report_page import CSRF_COOKIE
from dispatch.web.timeline import TimelineText
from dispatch.workflow import Action, Actor, Command, Workflow
from storage.database import SessionFactory
from storage.tables import Case, CaseTransition, Consultation, Notification, ResidentReport
from tests.factories import SITE, make_ingest, make_registry, migrated_database

WORKER = Actor("officer", Role.WORKER, Department.PUBLIC_SECURITY)
DISPATCHER = Actor("desk", Role.DISPATCHER)
HOOK = NotificationSettings.model_validate(
    {
        "webhooks": [
            {
                "department": "public_security",
                "url": "http://127.0.0.1:9/hook",
                "secret": "s" * 16,
            }
        ],
        "mqtt": {"enabled": False},
    }
)


@dataclass
class Site:
    client: TestClient
    sessions: SessionFactory
    workflow: Workflow


@pytest.fixture
def site(database_url: str, tmp_path: Path) -> Iterator[Site]:
    with migrated_database(database_url) as (_engine, sessions):
        rig = make_ingest(sessions, tmp_path / "evidence")
        registry = make_registry()
        routing = RoutingSettings()
        router = ResidentAwareRouter(routing, registry=registry)
        workflow = Workflow(reroute=router.assignment)
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=rig.evidence_store,
                settings=ApiSettings(),
                registry=registry,
                metrics_registry=rig.metrics.registry,
                workflow=workflow,
                intake=IntakeDeps(
                    settings=ResidentSettings(),
                    registry=registry,
                    router=router,
                    routing=routing,
                    evidence_store=rig.evidence_store,
                ),
            )
        )
        with TestClient(app) as client:
            yield Site(client, sessions, workflow)


def csrf(site: Site, path: str = "/report") -> str:
    page = site.client.get(path)
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    assert site.client.cookies.get(CSRF_COOKIE) == found.group(1)
    return found.group(1)


def report(site: Site, category: str = "noise", **fields: str) -> str:
    data = {"csrf": csrf(site), "category": category, "site_id": SITE, "description": "loud"}
    sent = site.client.post("/report", data=data | fields, follow_redirects=False)
    assert sent.status_code == 303, sent.text
    return str(sent.headers["location"]).rsplit("/", 1)[1]


def case_of(site: Site, code: str) -> int:
    with site.sessions() as session:
        found = session.scalar(
            select(ResidentReport.case_id).where(ResidentReport.tracking_code == code)
        )
        assert found is not None
        return found


def act(site: Site, case_id: int, actor: Actor, *commands: Command) -> None:
    with site.sessions() as session:
        case = session.get(Case, case_id)
        assert case is not None
        for command in commands:
            site.workflow.apply(session, case, command, actor)
        session.commit()


def resolve(site: Site, case_id: int) -> None:
    act(site, case_id, WORKER, Command(Action.ACCEPT), Command(Action.RESOLVE))


def rate(site: Site, code: str, rating: str, comment: str = "", **extra: str) -> httpx.Response:
    # the page sets the cookie; an old tab's form (already rated) still carries its value
    site.client.get(f"/report/t/{code}")
    token = site.client.cookies.get(CSRF_COOKIE) or ""
    data = {"csrf": token, "rating": rating, "comment": comment}
    response: httpx.Response = site.client.post(
        f"/report/t/{code}/rate", data=data | extra, follow_redirects=False
    )
    return response


def entries(site: Site, case_id: int, action: str) -> list[CaseTransition]:
    with site.sessions() as session:
        return list(
            session.scalars(
                select(CaseTransition)
                .where(CaseTransition.case_id == case_id, CaseTransition.action == action)
                .order_by(CaseTransition.seq)
            )
        )


def stored(site: Site, code: str) -> ResidentReport:
    with site.sessions() as session:
        row = session.scalar(select(ResidentReport).where(ResidentReport.tracking_code == code))
        assert row is not None
        session.expunge(row)
        return row


def test_a_public_reply_reaches_the_tracking_page_and_a_note_never(site: Site) -> None:
    code = report(site)
    case_id = case_of(site, code)
    act(
        site,
        case_id,
        DISPATCHER,
        Command(Action.REPLY, reason="已通知派出所 first reply"),
        Command(Action.NOTE, reason="SECRET internal note"),
    )
    act(site, case_id, WORKER, Command(Action.REPLY, reason="民警已到场 second reply"))
    replies = entries(site, case_id, "reply")
    assert [entry.detail["public"] for entry in replies] == [True, True]
    page = site.client.get(f"/report/t/{code}")
    assert page.status_code == 200
    assert page.text.index("first reply") < page.text.index("second reply")
    assert "SECRET" not in page.text
    assert 'data-testid="rating-submit"' not in page.text  # not handled yet: nothing to rate
    # site-local time (site-a runs on Asia/Shanghai: UTC+8) on each reply
    assert re.findall(r"<time>[^<]+</time><p>[^<]*reply", page.text)
    line = TimelineText(translator("en"), lambda value, _site: str(value))(replies[0])
    assert "Public reply (the resident sees it)" in line.facts


def test_one_rating_per_report_stored_with_its_audit_entry(site: Site) -> None:
    code = report(site)
    case_id = case_of(site, code)
    resolve(site, case_id)
    form = site.client.get(f"/report/t/{code}")
    for testid in ("rating-satisfied", "rating-basic", "rating-unsatisfied", "rating-comment"):
        assert f'data-testid="{testid}"' in form.text
    sent = rate(site, code, "satisfied", "  快，谢谢 <b>  ")
    assert sent.status_code == 303
    assert sent.headers["location"] == f"/report/t/{code}?done=rated"
    row = stored(site, code)
    assert (row.rating, row.rating_comment) == ("satisfied", "快，谢谢 <b>")
    assert row.rated_at is not None
    [entry] = entries(site, case_id, "rate")
    assert entry.actor == "resident"
    assert entry.detail == {"tracking_code": code, "rating": "satisfied"}
    assert entry.reason == "快，谢谢 <b>"
    page = site.client.get(f"/report/t/{code}?done=rated")
    assert "感谢您的评价" in page.text
    assert 'data-rating="satisfied"' in page.text
    assert 'data-testid="rating-submit"' not in page.text
    again = rate(site, code, "dissatisfied", "changed my mind")
    assert again.status_code == 409
    assert "每条反映只能评价一次" in again.text
    assert stored(site, code).rating == "satisfied"
    assert len(entries(site, case_id, "rate")) == 1
    assert entries(site, case_id, "reopen") == []


def test_unsatisfied_reopens_once_to_the_supervisor_who_is_notified(site: Site) -> None:
    notifier = Notifier(site.sessions, HOOK)
    notifier.pump()  # places the cursor: history is not sent
    first = report(site)
    case_id = case_of(site, first)
    resolve(site, case_id)
    assert rate(site, first, "dissatisfied", "还是很吵").status_code == 303
    with site.sessions() as session:
        case = session.get(Case, case_id)
        assert case is not None
        assert case.state == "dispatched"
        assert case.department == "public_security"
        assert case.escalation_level == 1
        assert case.resolved_at is None
    [reopen] = entries(site, case_id, "reopen")
    assert reopen.actor == "resident"
    assert "还是很吵" in reopen.reason
    assert reopen.detail["unsatisfied_rating"] is True
    assert reopen.detail["level"] == 1
    for language, text in (("en", "Reopened after an unsatisfied rating"), ("zh-CN", "不满意")):
        line = TimelineText(translator(language), lambda value, _site: str(value))(reopen)
        assert any(text in fact for fact in line.facts), line
    notifier.pump()
    with site.sessions() as session:
        told = session.scalars(
            select(Notification).where(Notification.event_type == NotificationEvent.REOPENED)
        ).all()
    assert [row.department for row in told] == ["public_security"]
    assert told[0].payload["case"]["escalation_level"] == 1
    assert told[0].payload["actor"] == "resident"

    # a second reporter joins the reopened case; handled again; 不满意 again: no second reopen
    second = report(site, phone="13812341234")
    assert case_of(site, second) == case_id
    resolve(site, case_id)
    assert rate(site, second, "dissatisfied", "依旧").status_code == 303
    assert len(entries(site, case_id, "reopen")) == 1
    with site.sessions() as session:
        case = session.get(Case, case_id)
        assert case is not None
        assert case.state == "resolved"
    flagged = entries(site, case_id, "rate")[-1]
    assert flagged.detail["unsatisfied_again"] is True
    line = TimelineText(translator("zh-CN"), lambda value, _site: str(value))(flagged)
    assert "再次不满意（不再重办）" in line.facts


def test_mediation_turns_a_household_matter_into_a_consultation(site: Site) -> None:
    code = report(site, "neighbour_dispute", description="楼上漏水不管")
    case_id = case_of(site, code)
    page = site.client.get(f"/report/t/{code}")
    assert 'data-state="closed"' in page.text
    assert 'data-testid="mediation-submit"' in page.text
    token = csrf(site, f"/report/t/{code}")
    sent = site.client.post(
        f"/report/t/{code}/mediate", data={"csrf": token}, follow_redirects=False
    )
    assert sent.status_code == 303, sent.text
    with site.sessions() as session:
        case = session.get(Case, case_id)
        assert case is not None
        assert (case.state, case.tier, case.department) == (
            "dispatched",
            "community",
            "property_management",
        )
        assert case.closed_at is None
        consultation = session.scalar(select(Consultation).where(Consultation.case_id == case_id))
        assert consultation is not None
        assert consultation.state == "open"
        assert case.sla_due_at == consultation.deadline_at
    [mediate] = entries(site, case_id, "mediate")
    assert mediate.actor == "resident"
    assert mediate.detail["consultation_id"] == consultation.id
    after = site.client.get(f"/report/t/{code}")
    assert 'data-testid="mediation-submit"' not in after.text
    assert 'id="mediation-requested"' in after.text
    again = site.client.post(f"/report/t/{code}/mediate", data={"csrf": token})
    assert again.status_code == 409
    assert len(entries(site, case_id, "mediate")) == 1


def test_mediation_is_refused_on_a_department_case(site: Site) -> None:
    code = report(site)
    token = csrf(site)
    refused = site.client.post(f"/report/t/{code}/mediate", data={"csrf": token})
    assert refused.status_code == 409
    assert entries(site, case_of(site, code), "mediate") == []


@pytest.mark.parametrize(
    ("rating", "comment", "status", "says"),
    [
        ("excellent", "", 422, "请选择"),
        ("satisfied", "x" * (COMMENT_CHARS + 1), 422, "最多 500 字"),
        ("satisfied", "bell\x07", 422, "无法保存"),
        ("satisfied", "evil \u202e override", 422, "无法保存"),
    ],
)
def test_a_bad_rating_is_refused_with_a_reason_and_nothing_stored(
    site: Site, rating: str, comment: str, status: int, says: str
) -> None:
    code = report(site)
    case_id = case_of(site, code)
    resolve(site, case_id)
    refused = rate(site, code, rating, comment)
    assert refused.status_code == status
    assert says in refused.text
    assert stored(site, code).rating is None
    assert entries(site, case_id, "rate") == []


def test_rating_an_open_case_or_without_csrf_is_refused(site: Site) -> None:
    code = report(site)
    case_id = case_of(site, code)
    early = rate(site, code, "satisfied")
    assert early.status_code == 409
    assert "办理完成后才能评价" in early.text
    resolve(site, case_id)
    site.client.cookies.clear()
    forged = site.client.post(
        f"/report/t/{code}/rate", data={"rating": "satisfied", "csrf": "forged"}
    )
    assert forged.status_code == 403
    assert stored(site, code).rating is None
    assert entries(site, case_id, "rate") == []


def test_an_unknown_code_is_not_found_for_rating_or_mediation(site: Site) -> None:
    token = csrf(site)
    for path in ("/report/t/ABCDEFGHJK/rate", "/report/t/nonsense/mediate"):
        missing = site.client.post(path, data={"csrf": token, "rating": "satisfied"})
        assert missing.status_code == 404
        assert 'id="not-found"' in missing.text


def test_a_merged_case_is_rated_on_the_case_that_lives_on(site: Site) -> None:
    code = report(site)
    merged_id = case_of(site, code)
    other = report(site, "ebike_charging", description="charging in the hall")
    living_id = case_of(site, other)
    act(site, merged_id, DISPATCHER, Command(Action.MERGE, duplicate_of=living_id))
    act(
        site,
        living_id,
        Actor("fire", Role.WORKER, Department.FIRE_RESCUE),
        Command(Action.ACCEPT),
        Command(Action.RESOLVE),
    )
    assert rate(site, code, "basic").status_code == 303
    assert [entry.detail["rating"] for entry in entries(site, living_id, "rate")] == ["basic"]
    assert entries(site, merged_id, "rate") == []


class _Gateway(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture
def gateway() -> Iterator[tuple[str, list[dict[str, object]]]]:
    received: list[dict[str, object]] = []
    handler = type("Gateway", (_Gateway,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/sms", received
    finally:
        server.shutdown()
        server.server_close()


def test_status_messages_reach_the_gateway_with_the_whole_phone_only_with_consent(
    site: Site, gateway: tuple[str, list[dict[str, object]]]
) -> None:
    url, received = gateway
    pump = ResidentStatusPump(site.sessions, url, "https://civic.example/")
    pump.pump_all()  # places the cursor: history is not sent
    agreed = report(site, phone="13812341234", contact_consent="on")
    case_id = case_of(site, agreed)
    refused = report(site, phone="13987654321")  # joins; did not agree
    silent = report(site)  # no phone
    assert case_of(site, refused) == case_of(site, silent) == case_id
    act(site, case_id, WORKER, Command(Action.ACCEPT))
    act(site, case_id, WORKER, Command(Action.NOTE, reason="INTERNAL"))
    act(site, case_id, WORKER, Command(Action.REPLY, reason="民警已到场"))
    act(site, case_id, WORKER, Command(Action.RESOLVE))
    assert pump.pump_all() == 4  # dispatched, accepted, reply, resolved: for the one who agreed
    with site.sessions() as session:
        rows = session.scalars(select(Notification).order_by(Notification.id)).all()
    assert {(row.department, row.event_type, row.target) for row in rows} == {
        (RESIDENT_DEPARTMENT, STATUS_EVENT, url)
    }
    assert all("13812341234" not in json.dumps(row.payload) for row in rows)  # not at rest
    sender = NotificationSender(
        site.sessions,
        NotificationSettings.model_validate({"mqtt": {"enabled": False}}),
        deliveries={RESIDENT_DEPARTMENT: ResidentGateway(site.sessions, url).deliver},
    )
    try:
        assert sender.run().delivered == 4
    finally:
        sender.close()
    assert [body["state"] for body in received] == ["dispatched", "accepted", "reply", "resolved"]
    for body in received:
        assert set(body) == {
            "tracking_code",
            "state",
            "message_zh",
            "message_en",
            "phone",
            "tracking_url",
        }
        assert body["phone"] == "13812341234"
        assert body["tracking_code"] == agreed
        assert body["tracking_url"] == f"https://civic.example/report/t/{agreed}"
        assert agreed in str(body["message_zh"])
        assert agreed in str(body["message_en"])
    assert "民警已到场" in str(received[2]["message_zh"])
    assert "INTERNAL" not in json.dumps(received, ensure_ascii=False)
    assert "13987654321" not in json.dumps(received)


def test_a_status_row_for_another_target_is_not_sent(
    site: Site, gateway: tuple[str, list[dict[str, object]]]
) -> None:
    url, received = gateway
    elsewhere = ResidentStatusPump(site.sessions, url + "-evil", "https://civic.example")
    elsewhere.pump_all()
    report(site, phone="13812341234", contact_consent="on")
    assert elsewhere.pump_all() == 1
    sender = NotificationSender(
        site.sessions,
        NotificationSettings.model_validate({"mqtt": {"enabled": False}}),
        deliveries={RESIDENT_DEPARTMENT: ResidentGateway(site.sessions, url).deliver},
    )
    try:
        outcome = sender.run()
    finally:
        sender.close()
    assert (outcome.delivered, outcome.retried) == (0, 1)
    assert received == []


def test_unsatisfied_with_a_household_matter_offers_mediation_not_a_reopen(site: Site) -> None:
    pm = NotificationSettings.model_validate(
        {
            "webhooks": [
                {
                    "department": "property_management",
                    "url": "http://127.0.0.1:9/pm",
                    "secret": "p" * 16,
                }
            ],
            "mqtt": {"enabled": False},
        }
    )
    notifier = Notifier(site.sessions, pm)
    notifier.pump()
    code = report(site, "neighbour_dispute", description="装修噪音")
    case_id = case_of(site, code)
    assert notifier.pump() == 0  # guided and closed: no department to tell
    assert rate(site, code, "dissatisfied", "没用").status_code == 303
    assert entries(site, case_id, "reopen") == []
    [rated] = entries(site, case_id, "rate")
    assert rated.detail["unsatisfied_household"] is True
    page = site.client.get(f"/report/t/{code}")
    assert 'data-testid="mediation-submit"' in page.text
    token = site.client.cookies.get(CSRF_COOKIE) or ""
    assert site.client.post(f"/report/t/{code}/mediate", data={"csrf": token}).status_code == 200
    notifier.pump()
    with site.sessions() as session:
        told = session.scalars(select(Notification)).all()
    # property management hears of the case the mediation handed it
    assert [(row.department, row.event_type) for row in told] == [
        ("property_management", NotificationEvent.DISPATCHED.value)
    ]


def test_the_server_wires_the_status_pump_only_when_a_gateway_is_named(site: Site) -> None:
    from civicwatch.config import ServerSettings
    from civicwatch.server import _resident_status
    from dispatch.warning_stage import OWNER_DEPARTMENT

    named = ServerSettings.model_validate({"residents": {"status_webhook_url": "http://gw/sms"}})
    pump, deliveries = _resident_status(site.sessions, named)
    assert isinstance(pump, ResidentStatusPump)
    assert deliveries is not None
    # the warning stage's messages to a car's owner go out through the same gateway
    assert set(deliveries) == {RESIDENT_DEPARTMENT, OWNER_DEPARTMENT}
    assert _resident_status(site.sessions, ServerSettings()) == (None, None)
