"""Permits end to end on a real broker and a real database (SQLite and PostgreSQL): issued through
the API, signed and retained on the gateway's rules topic, verified and stored by the gateway,
which reports its version; a revoke takes effect within 5 s; an offline gateway catches up on
reconnect; roles, hostile input and the audit chain."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select, update

from contracts.exemptions import RuleDocument, StayHistory
from contracts.mqtt import MqttSession
from contracts.rule_signing import (
    RefusalReason,
    generate_key_pair,
    private_key_from_text,
    public_key_from_text,
    sign_document,
)
from contracts.sites import SiteRegistry
from contracts.status import GatewayStatus
from contracts.topics import gateway_status_topic, rules_topic
from dispatch.config import ApiSettings, ApiToken, Department, Role
from dispatch.exemptions import ExemptionService, RulePublisher, verify_exemption_audit
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.workflow import Workflow
from edge.outbox import Outbox
from edge.publisher import EdgePublisher
from edge.rule_store import RuleStore
from storage.database import SessionFactory
from storage.tables import ExemptionAudit, ExemptionRuleRow, utcnow
from tests.conftest import MosquittoProcess
from tests.factories import (
    API_TOKENS,
    GATEWAY,
    PARKING_ZONE,
    SITE,
    make_ingest,
    make_registry,
    migrated_database,
)
from tests.waiting import wait_for

TOKENS = {
    **API_TOKENS,
    "pm": ApiToken(
        name="pm-chief",
        token=SecretStr("property-token-00001"),
        role=Role.SUPERVISOR,
        department=Department.PROPERTY_MANAGEMENT,
    ),
}
PLATE = "沪A12345"
PRIVATE, PUBLIC = generate_key_pair()
REVOKE_WITHIN_S = 5.0


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who].token.get_secret_value()}"}


class Gateway:
    """The gateway's side: its RuleStore behind its real EdgePublisher's MQTT session."""

    def __init__(self, mosquitto: MosquittoProcess, folder: Path, registry: SiteRegistry) -> None:
        found = registry.gateway(GATEWAY)
        assert found is not None
        self.site, self.config = found
        self.rules = RuleStore(
            folder / "rules.json", public_key_from_text(PUBLIC), self.site, GATEWAY
        )
        self.publisher = EdgePublisher(
            mosquitto.settings, SITE, GATEWAY, Outbox(folder / "outbox.sqlite"), 5, rules=self.rules
        )
        self.publisher.start()

    def exempt(self, plate: str = PLATE) -> bool:
        zone = self.config.cameras[0].zone(PARKING_ZONE)
        assert zone is not None
        now = utcnow()
        return self.rules.decide(plate, 0.95, zone, now, StayHistory(now)).exempt

    def stop(self) -> None:
        self.publisher.stop()


@dataclass
class Rig:
    client: TestClient
    sessions: SessionFactory
    service: ExemptionService
    mosquitto: MosquittoProcess
    folder: Path
    registry: SiteRegistry

    def call(self, method: str, url: str, who: str, body: Any = None) -> Any:
        return self.client.request(method, f"/api/v1{url}", headers=auth(who), json=body)

    def permit(self, who: str = "pm", **extra: Any) -> Any:
        now = utcnow()
        body = {
            "site_id": SITE,
            "zone_id": PARKING_ZONE,
            "plate": PLATE,
            "valid_from": (now - timedelta(minutes=1)).isoformat(),
            "valid_to": (now + timedelta(hours=2)).isoformat(),
            "reason": "搬家 moving day",
        } | extra
        return self.call("POST", "/exemptions/permits", who, body)


@pytest.fixture
def rig(database_url: str, tmp_path: Path, mosquitto: MosquittoProcess) -> Iterator[Rig]:
    registry = make_registry()
    with migrated_database(database_url) as (_engine, sessions):
        ingest = make_ingest(sessions, tmp_path / "evidence")
        publisher = RulePublisher(mosquitto.settings)
        publisher.start()
        assert publisher.wait_connected(5)
        service = ExemptionService(
            sessions, registry, private_key_from_text(PRIVATE), on_change=publisher.publish
        )
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=ingest.evidence_store,
                settings=ApiSettings(tokens=list(TOKENS.values())),
                registry=registry,
                metrics_registry=ingest.metrics.registry,
                workflow=Workflow(),
                exemptions=service,
            )
        )
        try:
            with TestClient(app) as client:
                yield Rig(client, sessions, service, mosquitto, tmp_path, registry)
        finally:
            publisher.stop()


def status_reader(rig: Rig) -> tuple[MqttSession, Callable[[], int | None]]:
    """The rules version in the gateway's retained status, as the server would read it."""
    seen: list[GatewayStatus] = []
    session = MqttSession(
        rig.mosquitto.settings,
        "status-reader",
        subscriptions=lambda: [(gateway_status_topic(SITE, GATEWAY), 1)],
        on_message=lambda m: seen.append(GatewayStatus.model_validate_json(m.payload)),
    )
    session.start()
    return session, lambda: seen[-1].rules_version if seen else None


def test_permit_reaches_the_gateway_and_a_revoke_takes_effect_within_5_s(rig: Rig) -> None:
    gateway = Gateway(rig.mosquitto, rig.folder / "gw", rig.registry)
    reader, version = status_reader(rig)
    try:
        assert not gateway.exempt()
        response = rig.permit()
        assert response.status_code == 201, response.text
        permit = response.json()
        wait_for(gateway.exempt, 5)
        assert gateway.rules.version is not None
        wait_for(lambda: version() == gateway.rules.version, 5)
        assert (rig.folder / "gw" / "rules.json").exists()
        assert not gateway.exempt("京B54321")

        asked = time.monotonic()
        revoked = rig.call(
            "POST", f"/exemptions/permits/{permit['id']}/revoke", "dispatcher", {"reason": "done"}
        )
        assert revoked.status_code == 200, revoked.text
        wait_for(lambda: not gateway.exempt(), REVOKE_WITHIN_S)
        took = time.monotonic() - asked
        assert took < REVOKE_WITHIN_S
        print(f"revoke took effect at the gateway {took:.3f} s after it was asked for")
        again = rig.call(
            "POST", f"/exemptions/permits/{permit['id']}/revoke", "pm", {"reason": "twice"}
        )
        assert again.status_code == 409
        assert again.json()["code"] == "conflict"
    finally:
        gateway.stop()
        reader.stop()


def test_an_offline_gateway_catches_up_on_reconnect_and_after_a_restart(rig: Rig) -> None:
    folder = rig.folder / "gw"
    gateway = Gateway(rig.mosquitto, folder, rig.registry)
    wait_for(lambda: gateway.publisher.connected, 5)
    gateway.stop()
    assert rig.permit().status_code == 201  # while the gateway is away
    back = Gateway(rig.mosquitto, folder, rig.registry)
    try:
        wait_for(back.exempt, 5)  # the retained document
        version = back.rules.version
    finally:
        back.stop()
    # Restarted with the broker gone: the disk copy, checked again, is used.
    rig.mosquitto.stop()
    restarted = RuleStore(folder / "rules.json", public_key_from_text(PUBLIC), back.site, GATEWAY)
    assert restarted.version == version
    zone = back.config.cameras[0].zone(PARKING_ZONE)
    assert zone is not None
    now = utcnow()
    assert restarted.decide(PLATE, 0.95, zone, now, StayHistory(now)).exempt


def test_server_start_publishes_every_gateways_document(rig: Rig) -> None:
    first = [d for d in rig.service.publish_all() if d.topic.endswith("/rules")]
    second = [d for d in rig.service.publish_all() if d.topic.endswith("/rules")]
    assert {d.topic for d in first} == {d.topic for d in second}
    assert len(first) == 2  # both gateways of the registry (and each site's plates besides)
    assert all(b.version == a.version + 1 for a, b in zip(first, second, strict=True))
    gateway = Gateway(rig.mosquitto, rig.folder / "gw", rig.registry)
    try:
        wait_for(lambda: gateway.rules.version == second[0].version, 5)
    finally:
        gateway.stop()


def test_other_roles_may_not_issue_or_list_permits(rig: Rig) -> None:
    """Each other role in turn on one rig (a rig per role cost seconds each)."""
    for who in ("law", "fire", "integration"):
        response = rig.permit(who)
        assert response.status_code == 403, who
        assert response.json()["code"] == "forbidden", who
        assert rig.call("GET", "/exemptions/permits", who).status_code == 403, who
        assert rig.service.list_rules() == [], who


HOSTILE_PERMITS: list[tuple[dict[str, Any], int, str]] = [
    (
        {"valid_to": "2026-01-01T00:00:00+00:00", "valid_from": "2026-02-01T00:00:00+00:00"},
        422,
        "invalid_request",
    ),
    ({"plate": "NOT-A-PLATE"}, 422, "invalid_request"),
    ({"valid_to": "2026-02-01T00:00:00"}, 422, "invalid_request"),  # naive
    ({"reason": ""}, 422, "invalid_request"),
    ({"surprise": 1}, 422, "invalid_request"),
    ({"zone_id": "nowhere"}, 404, "not_found"),
    ({"site_id": "site-z"}, 404, "not_found"),
]


def test_hostile_permits_are_refused_and_nothing_is_stored(rig: Rig) -> None:
    """Each hostile permit in turn on one rig (a rig per permit cost seconds each): refused with
    its status and code, and still nothing stored after it."""
    for extra, status, code in HOSTILE_PERMITS:
        response = rig.permit(**extra)
        assert response.status_code == status, (extra, response.text)
        assert response.json()["code"] == code, extra
        with rig.sessions() as session:
            assert session.scalars(select(ExemptionRuleRow)).all() == [], extra
            assert session.scalars(select(ExemptionAudit)).all() == [], extra


def test_every_change_is_on_the_audit_chain_and_tampering_shows(rig: Rig) -> None:
    first = rig.permit().json()
    rig.permit(plate="京B54321")
    rig.call("POST", f"/exemptions/permits/{first['id']}/revoke", "pm", {"reason": "left"})
    listed = rig.call("GET", "/exemptions/permits", "pm").json()
    assert [p["plate"] for p in listed] == ["京B54321"]
    with rig.sessions() as session:
        entries = session.scalars(select(ExemptionAudit).order_by(ExemptionAudit.seq)).all()
        assert [(e.action, e.actor) for e in entries] == [
            ("issued", "pm-chief"),
            ("issued", "pm-chief"),
            ("revoked", "pm-chief"),
        ]
        assert verify_exemption_audit(session) == []
    with rig.sessions() as session, session.begin():
        session.execute(update(ExemptionAudit).where(ExemptionAudit.seq == 2).values(actor="x"))
    with rig.sessions() as session:
        assert verify_exemption_audit(session) == [2]


def test_a_forged_document_on_the_broker_is_refused_and_the_previous_one_kept(rig: Rig) -> None:
    gateway = Gateway(rig.mosquitto, rig.folder / "gw", rig.registry)
    forger = MqttSession(rig.mosquitto.settings, "forger")
    forger.start()
    try:
        assert rig.permit().status_code == 201
        wait_for(gateway.exempt, 5)
        version = gateway.rules.version
        assert version is not None
        other_private, _ = generate_key_pair()
        forged = RuleDocument(
            site_id=SITE, gateway_id=GATEWAY, version=version + 100, issued_at=utcnow(), rules=[]
        )
        assert forger.connected.wait(5)
        forger.publish_and_wait(
            rules_topic(SITE, GATEWAY),
            sign_document(forged, private_key_from_text(other_private)),
            qos=1,
            timeout=5,
        )
        wait_for(lambda: gateway.rules.refused[RefusalReason.WRONG_KEY] == 1, 5)
        assert gateway.rules.version == version
        assert gateway.exempt()
    finally:
        forger.stop()
        gateway.stop()
