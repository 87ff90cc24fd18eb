"""The exemption console pages over the real app and database (SQLite): who gets each page, the
registry masked for roles that only read it, both languages, and the gateways' page flagging a
gateway that runs an older rule document."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from storage.tables import GatewayStatusRow, utcnow
from tests.factories import GATEWAY, SITE
from tests.integration.test_registry import NAME, PHONE, Rig, auth
from tests.integration.test_registry import rig as registry_rig

__all__ = ["registry_rig"]


@pytest.fixture
def rig(registry_rig: Rig) -> Rig:
    return registry_rig


def page(client: TestClient, path: str, who: str, lang: str = "zh-CN") -> tuple[int, str]:
    answer = client.get(f"{path}?lang={lang}", headers=auth(who), follow_redirects=False)
    return answer.status_code, answer.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_who_gets_each_page_and_the_registry_is_masked_for_readers(rig: Rig) -> None:
    assert rig.register().status_code == 201
    status, text = page(rig.client, "/console/registry", "pm")
    assert status == 200
    assert NAME in text
    assert PHONE in text
    assert 'id="import-form"' in text
    status, text = page(rig.client, "/console/registry", "law_chief", "en")
    assert status == 200
    assert NAME not in text
    assert PHONE not in text
    assert "138****1234" in text
    assert 'id="import-form"' not in text
    assert "masked for your role" in text
    for path in ("/console/permits", "/console/gateways"):
        assert page(rig.client, path, "pm")[0] == 200
        assert page(rig.client, path, "dispatcher", "en")[0] == 200
        assert page(rig.client, path, "law")[0] == 303
    assert page(rig.client, "/console/registry", "integration")[0] == 303


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_gateways_page_flags_a_gateway_that_is_behind(rig: Rig) -> None:
    assert rig.register().status_code == 201
    latest = rig.published[-1].version
    with rig.sessions.begin() as session:
        session.add(
            GatewayStatusRow(
                gateway_id=GATEWAY,
                site_id=SITE,
                state="online",
                received_at=utcnow(),
                rules_version=latest - 1,
            )
        )
    status, text = page(rig.client, "/console/gateways", "pm")
    assert status == 200
    assert f'data-gateway-id="{GATEWAY}" class="behind"' in text
    assert "个网关落后" in text
