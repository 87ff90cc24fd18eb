"""The warning stage from the API (SQLite and PostgreSQL, real Mosquitto): property management
issues one, it reaches the gateway's signed rule store, a revoke takes it away; hostile input
and the wrong roles are refused with a reason, and nothing is stored."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from contracts.exemptions import StageWhy, warning_stage
from storage.tables import ExemptionRuleRow, utcnow
from tests.factories import PARKING_ZONE, SITE
from tests.integration.test_exemptions_api import Gateway, Rig, rig
from tests.waiting import wait_for

__all__ = ["rig"]  # the imported fixture this module runs on

PLATE = "沪A12345"


def body(**extra: Any) -> dict[str, Any]:
    return {
        "site_id": SITE,
        "zone_id": PARKING_ZONE,
        "grace_minutes": 5,
        "channels": ["announce", "owner"],
        "repeat_warnings": 3,
        "repeat_days": 30,
        "reason": "先提醒后执法 warn first",
    } | extra


def warns(gateway: Gateway) -> bool:
    zone = gateway.config.cameras[0].zone(PARKING_ZONE)
    assert zone is not None
    document = gateway.rules.document
    decision = warning_stage(document, PLATE, 0.95, zone, gateway.site, utcnow())
    return decision.why is StageWhy.WARN


def test_a_warning_stage_issued_in_the_api_reaches_the_gateway_and_is_revoked(rig: Rig) -> None:
    gateway = Gateway(rig.mosquitto, rig.folder / "gw", rig.registry)
    try:
        created = rig.call("POST", "/exemptions/warning-stages", "pm", body())
        assert created.status_code == 201, created.text
        stage = created.json()
        assert stage["type"] == "warning_stage"
        wait_for(lambda: warns(gateway), 5)
        listed = rig.call("GET", f"/exemptions/warning-stages?site_id={SITE}", "dispatcher")
        assert [s["id"] for s in listed.json()] == [stage["id"]]
        # It is not a permit: the permit routes do not touch it.
        assert rig.call("GET", "/exemptions/permits", "pm").json() == []
        wrong = rig.call("POST", f"/exemptions/permits/{stage['id']}/revoke", "pm", {"reason": "x"})
        assert wrong.status_code == 404
        revoked = rig.call(
            "POST", f"/exemptions/warning-stages/{stage['id']}/revoke", "pm", {"reason": "done"}
        )
        assert revoked.status_code == 200, revoked.text
        wait_for(lambda: not warns(gateway), 5)
    finally:
        gateway.stop()


def test_hostile_warning_stages_and_wrong_roles_are_refused(rig: Rig) -> None:
    hostile = [
        (body(grace_minutes=0), 422),
        (body(grace_minutes=10_000), 422),
        (body(channels=[]), 422),
        (body(channels=["announce", "announce"]), 422),
        (body(channels=["fax"]), 422),
        (body(repeat_warnings=0), 422),
        (body(image="AAAA"), 422),
        (body(valid_from="2026-12-04T10:00:00+00:00", valid_to="2026-12-04T09:00:00+00:00"), 422),
        (body(valid_from="2026-12-04T10:00:00"), 422),  # naive
        (body(zone_id="roof"), 404),
        (body(site_id="nowhere"), 404),
    ]
    for payload, expected in hostile:
        response = rig.call("POST", "/exemptions/warning-stages", "pm", payload)
        assert response.status_code == expected, (payload, response.text)
        assert response.json()["code"], response.text
    for who in ("law", "integration"):
        response = rig.call("POST", "/exemptions/warning-stages", who, body())
        assert response.status_code == 403, (who, response.text)
    with rig.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ExemptionRuleRow)) == 0
