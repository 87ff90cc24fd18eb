"""Hostile and conflicting exemption input, on a real broker and a real database (SQLite and
PostgreSQL): permits that end before they start, overlapping rules (the documented winner, as
the gateway decides it from the document it received), documents from the wrong key or with a
broken signature, oversized and garbled payloads on the rules topic, and documents for another
gateway. Each refusal is counted by reason at the gateway and the previous document stays in
use; after them the gateway still takes the next genuine one."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from contracts.exemptions import (
    AllowlistCategory,
    AllowlistRule,
    Decision,
    FamilyBayRule,
    Outcome,
    PermitRule,
    RuleDocument,
    StayHistory,
)
from contracts.mqtt import MqttSession
from contracts.rule_signing import (
    MAX_DOCUMENT_BYTES,
    RefusalReason,
    generate_key_pair,
    key_id,
    private_key_from_text,
    sign_document,
)
from contracts.topics import rules_topic
from dispatch.config import ApiSettings
from dispatch.exemptions import ExemptionService, RulePublisher
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.workflow import Workflow
from storage.tables import ExemptionAudit, ExemptionRuleRow, RuleDocumentVersion, utcnow
from tests.conftest import MosquittoProcess
from tests.factories import (
    FIRE_LANE_ZONE,
    GATEWAY,
    OTHER_GATEWAY,
    OTHER_SITE,
    PARKING_ZONE,
    SITE,
    make_ingest,
    make_registry,
    migrated_database,
)
from tests.integration.test_exemptions_api import PLATE, PRIVATE, TOKENS, Gateway, Rig
from tests.waiting import wait_for

KEY = private_key_from_text(PRIVATE)
OTHER_PLATE = "京B54321"


@pytest.fixture
def rig(database_url: str, tmp_path: Path, mosquitto: MosquittoProcess) -> Iterator[Rig]:
    """The API and exemption service as the server wires them, publishing to the real broker."""
    registry = make_registry()
    with migrated_database(database_url) as (_engine, sessions):
        ingest = make_ingest(sessions, tmp_path / "evidence")
        publisher = RulePublisher(mosquitto.settings)
        publisher.start()
        assert publisher.wait_connected(5)
        service = ExemptionService(sessions, registry, KEY, on_change=publisher.publish)
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


@pytest.fixture
def gateway(rig: Rig) -> Iterator[Gateway]:
    """gw-a1 on the broker, holding the server's first document (no rules yet)."""
    gateway = Gateway(rig.mosquitto, rig.folder / "gw", rig.registry)
    [first] = [d for d in rig.service.publish_all() if d.topic == rules_topic(SITE, GATEWAY)]
    wait_for(lambda: gateway.rules.version == first.version, 5)
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def attacker(rig: Rig) -> Iterator[MqttSession]:
    """Anyone who can write to the gateway's rules topic (the ACL stops them in production:
    tests/integration/test_rules_acl.py); here the broker lets them, the gateway must not."""
    session = MqttSession(rig.mosquitto.settings, "attacker")
    session.start()
    assert session.connected.wait(5)
    try:
        yield session
    finally:
        session.stop()


def _send(attacker: MqttSession, payload: bytes, retain: bool = False) -> None:
    info = attacker.publish(rules_topic(SITE, GATEWAY), payload, qos=1, retain=retain)
    info.wait_for_publish(10)
    assert info.is_published()


def _envelope(document_text: str, signature: bytes, signer_key_id: str) -> bytes:
    return json.dumps(
        {
            "document": document_text,
            "signature": base64.b64encode(signature).decode(),
            "key_id": signer_key_id,
        }
    ).encode()


def _signed_text(text: str) -> bytes:
    """Any text, signed with the server's own key: a server bug or a stolen key's work."""
    return _envelope(text, KEY.sign(text.encode()), key_id(KEY.public_key()))


def _document(version: int, **fields: Any) -> dict[str, Any]:
    return {
        "site_id": SITE,
        "gateway_id": GATEWAY,
        "version": version,
        "issued_at": utcnow().isoformat(),
        "rules": [],
    } | fields


def _decide(
    gateway: Gateway, plate: str, minutes_stayed: float = 5, zone: str = PARKING_ZONE
) -> Decision:
    found = gateway.config.cameras[0].zone(zone)
    assert found is not None
    now = utcnow()
    history = StayHistory(now - timedelta(minutes=minutes_stayed))
    return gateway.rules.decide(plate, 0.95, found, now, history)


def _permit(
    rule_id: str,
    issued_at: datetime,
    zone: str | None = PARKING_ZONE,
    plate: str = PLATE,
) -> PermitRule:
    return PermitRule(
        id=rule_id,
        site_id=SITE,
        zone_id=zone,
        plate=plate,
        valid_from=issued_at - timedelta(hours=1),
        valid_to=utcnow() + timedelta(hours=2),
        reason="test permit",
        issued_at=issued_at,
    )


# -- permits with an end before their start ---------------------------------------------------


@pytest.mark.parametrize("hours", [-1, 0], ids=["end-before-start", "end-at-start"])
def test_a_permit_that_ends_before_it_starts_is_refused_and_nothing_is_pushed(
    rig: Rig, gateway: Gateway, hours: int
) -> None:
    version = gateway.rules.version
    start = utcnow() + timedelta(hours=1)
    response = rig.permit(
        valid_from=start.isoformat(), valid_to=(start + timedelta(hours=hours)).isoformat()
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "invalid_request"
    assert "valid_to" in json.dumps(body)
    with rig.sessions() as session:
        assert session.scalars(select(ExemptionRuleRow)).all() == []
        assert session.scalars(select(ExemptionAudit)).all() == []
        [row] = [r for r in session.scalars(select(RuleDocumentVersion)) if r.gateway_id == GATEWAY]
        assert row.version == version, "a refused permit pushed a new document"
    assert gateway.rules.version == version


def test_a_signed_document_carrying_a_permit_that_ends_before_it_starts_is_refused(
    gateway: Gateway, attacker: MqttSession
) -> None:
    """Even under the server's own key: the gateway validates every rule it is handed."""
    version = gateway.rules.version
    assert version is not None
    now = utcnow()
    backwards = _permit("backwards", now).model_dump(mode="json") | {
        "valid_from": now.isoformat(),
        "valid_to": (now - timedelta(hours=1)).isoformat(),
    }
    _send(attacker, _signed_text(json.dumps(_document(version + 1, rules=[backwards]))))
    wait_for(lambda: gateway.rules.refused[RefusalReason.INVALID_DOCUMENT] == 1, 5)
    assert gateway.rules.version == version
    assert not _decide(gateway, PLATE).exempt


# -- overlapping rules: the documented winner -----------------------------------------------


def test_overlapping_permits_zone_before_site_then_newest_then_the_other_after_a_revoke(
    rig: Rig, gateway: Gateway
) -> None:
    """docs/exemptions.md: zone-scoped before site-wide, then the latest issued_at, then id;
    whatever the order they were issued in."""
    now = utcnow()
    rig.service.issue_rule(_permit("zone-old", now - timedelta(minutes=30)), "pm")
    rig.service.issue_rule(_permit("site-newest", now, zone=None), "pm")
    rig.service.issue_rule(_permit("zone-new", now - timedelta(minutes=10)), "pm")
    wait_for(lambda: len(gateway.rules.document.rules) == 3, 5)  # type: ignore[union-attr]
    decision = _decide(gateway, PLATE)
    assert decision.exempt
    assert decision.rule_id == "zone-new"

    rig.service.revoke("zone-new", "pm", "ended early")
    wait_for(lambda: _decide(gateway, PLATE).rule_id == "zone-old", 5)
    rig.service.revoke("zone-old", "pm", "ended early")
    wait_for(lambda: _decide(gateway, PLATE).rule_id == "site-newest", 5)
    # The site-wide permit reaches the other zone too; a fire lane it does not.
    assert _decide(gateway, PLATE, zone=FIRE_LANE_ZONE).outcome is Outcome.ENFORCE


def test_a_permit_beats_a_family_bays_limit_and_the_newer_bay_rule_replaces_the_older(
    rig: Rig, gateway: Gateway
) -> None:
    now = utcnow()

    def bay(rule_id: str, minutes: int, issued_at: datetime) -> FamilyBayRule:
        return FamilyBayRule(
            id=rule_id,
            site_id=SITE,
            zone_id=PARKING_ZONE,
            valid_from=now - timedelta(days=1),
            reason="孝心车位",
            issued_at=issued_at,
            max_minutes=minutes,
            max_visits_per_day=3,
            family_max_minutes=minutes,
        )

    rig.service.issue_rule(bay("bay-generous", 60, now - timedelta(hours=1)), "pm")
    rig.service.issue_rule(bay("bay-strict", 10, now), "pm")
    rig.service.issue_rule(_permit("mover", now - timedelta(hours=2)), "pm")
    wait_for(lambda: len(gateway.rules.document.rules) == 3, 5)  # type: ignore[union-attr]

    over = _decide(gateway, OTHER_PLATE, minutes_stayed=20)  # over the strict bay, not the old
    assert over.outcome is Outcome.ENFORCE
    assert over.rule_id == "bay-strict"
    assert _decide(gateway, OTHER_PLATE, minutes_stayed=5).exempt
    held = _decide(gateway, PLATE, minutes_stayed=20)  # the permit holder, over the bay's time
    assert held.exempt
    assert held.rule_id == "mover"


def test_a_resident_allowlist_never_exempts_in_a_fire_lane_even_beside_a_permit(
    rig: Rig, gateway: Gateway
) -> None:
    now = utcnow()
    rig.service.issue_rule(
        AllowlistRule(
            id="residents",
            site_id=SITE,
            valid_from=now - timedelta(days=1),
            reason="住户",
            issued_at=now,
            category=AllowlistCategory.RESIDENT,
            plates=[PLATE],
        ),
        "pm",
    )
    rig.service.issue_rule(_permit("site-permit", now, zone=None), "pm")
    wait_for(lambda: len(gateway.rules.document.rules) == 2, 5)  # type: ignore[union-attr]
    assert _decide(gateway, PLATE).exempt
    assert _decide(gateway, PLATE, zone=FIRE_LANE_ZONE).outcome is Outcome.ENFORCE


# -- forged, oversized, garbled, another gateway's --------------------------------------------


def _rules_for(rig: Rig, gateway_id: str, version: int) -> RuleDocument:
    with rig.sessions() as session:
        return rig.service.document(session, gateway_id, version, utcnow())


def _hostile_payloads(rig: Rig, version: int) -> list[tuple[str, bytes, str]]:
    other_private, _ = generate_key_pair()
    mine = _rules_for(rig, GATEWAY, version)
    genuine = json.loads(sign_document(mine, KEY))
    tampered = genuine | {"document": genuine["document"].replace(PLATE, OTHER_PLATE)}
    assert tampered != genuine
    return [
        ("wrong key", sign_document(mine, private_key_from_text(other_private)), "wrong_key"),
        ("tampered", json.dumps(tampered).encode(), "bad_signature"),
        ("empty", b"", "garbled"),
        ("not json", b"\x00\xff rules \xfe", "garbled"),
        ("json, no envelope", b'{"rules": []}', "garbled"),
        ("signature not base64", json.dumps(genuine | {"signature": "!!"}).encode(), "garbled"),
        ("nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000, "garbled"),
        ("oversized", b" " * (MAX_DOCUMENT_BYTES + 8192), "oversize"),
        ("signed, not a document", _signed_text('{"hello": "world"}'), "invalid_document"),
        (
            "signed, unknown field",
            _signed_text(json.dumps(_document(version, x=1))),
            "invalid_document",
        ),
        (
            "another site's gateway",
            sign_document(_rules_for(rig, OTHER_GATEWAY, version), KEY),
            "wrong_gateway",
        ),
        (
            "this gateway on another site",
            _signed_text(json.dumps(_document(version, site_id=OTHER_SITE))),
            "wrong_gateway",
        ),
    ]


def test_forged_garbled_oversized_and_other_gateways_documents_are_refused_and_counted(
    rig: Rig, gateway: Gateway, attacker: MqttSession
) -> None:
    assert rig.permit().status_code == 201
    wait_for(gateway.exempt, 5)
    version = gateway.rules.version
    assert version is not None
    payloads = _hostile_payloads(rig, version + 50)
    for _name, payload, _reason in payloads:
        _send(attacker, payload)
    expected: dict[str, int] = {}
    for _name, _payload, reason in payloads:
        expected[reason] = expected.get(reason, 0) + 1
    wait_for(lambda: sum(gateway.rules.refused.values()) >= len(payloads), 10)
    assert dict(gateway.rules.refused) == expected
    assert gateway.rules.version == version, "the previous document stays"
    assert gateway.exempt()
    assert gateway.publisher.connected, "hostile payloads do not cost the gateway its session"
    # And the next genuine document is still taken.
    assert rig.permit(plate=OTHER_PLATE).status_code == 201
    wait_for(lambda: gateway.exempt(OTHER_PLATE), 5)
    assert gateway.exempt()


def test_a_garbled_retained_document_leaves_a_restarting_gateway_on_its_disk_copy(
    rig: Rig, gateway: Gateway, attacker: MqttSession
) -> None:
    assert rig.permit().status_code == 201
    wait_for(gateway.exempt, 5)
    version = gateway.rules.version
    gateway.stop()
    _send(attacker, b'{"document": "{}", "signature": "%%%", "key_id": "x"}', retain=True)
    again = Gateway(rig.mosquitto, rig.folder / "gw", rig.registry)
    try:
        assert again.rules.version == version  # the disk copy, verified again on load
        wait_for(lambda: again.rules.refused[RefusalReason.GARBLED] == 1, 5)
        assert again.rules.version == version
        assert again.exempt()
    finally:
        again.stop()
