"""The exemption pages in Chromium on the real server (see conftest.py): property management
imports the vehicle registry from CSV (a hostile file is refused with its rows, columns and
reasons shown as text, in Chinese; a good one is stored), a law-enforcement worker sees the
registry masked, and the gateways' page flags a gateway that runs an older rule document. The
server here has no rules signing key, so the gateways' versions are written to the database as
the signing service and a gateway's retained status would leave them."""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

if importlib.util.find_spec("playwright") is None and not os.environ.get("CI"):
    pytest.skip(
        "the playwright package is missing (pip install -e '.[dev]')", allow_module_level=True
    )

from playwright.sync_api import Browser, Dialog, FilePayload, Page, expect
from sqlalchemy import select

from civicwatch.config import CivicwatchConfig, ServerSettings
from contracts.rule_signing import generate_key_pair
from dispatch.config import AccountSettings, ApiSettings
from dispatch.exemption_settings import ExemptionSettings
from ingest.config import IngestSettings
from storage.tables import (
    ExemptionRuleRow,
    GatewayStatusRow,
    RegistryVehicle,
    RuleDocumentVersion,
    utcnow,
)
from tests.browser.conftest import (
    PASSWORD,
    USERS,
    LiveSite,
    screenshot_path,
    serve_live_site,
)
from tests.conftest import MosquittoProcess
from tests.factories import GATEWAY, SITE, make_registry

pytestmark = pytest.mark.browser

HEADER = "plate,category,building,unit,owner_name,phone\r\n"
HOSTILE = (
    HEADER
    + "沪A12345,resident,3号楼,2-301,张三丰,13812341234\r\n"
    + "ABC,resident,3号楼,2-302,李四,13900000000\r\n"
    + "沪B54321,resident,3号楼,2-303,\"=cmd|' /C calc'!A0\",13900000001\r\n"
    + "<img src=x onerror=alert(1)>,resident,,,王五,13900000002\r\n"
)
GOOD = "\ufeff" + HEADER + "沪A12345,resident,3号楼,2-301,张三丰,13812341234\r\n"


def _sign_in(page: Page, site: LiveSite, username: str, path: str) -> None:
    page.goto(f"{site.url}{path}")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_load_state()


def _csv(name: str, text: str) -> FilePayload:
    return {"name": name, "mimeType": "text/csv", "buffer": text.encode()}


def _plates(site: LiveSite) -> list[str]:
    with site.server.session_factory() as session:
        return list(session.scalars(select(RegistryVehicle.plate)))


def test_property_management_imports_the_registry_and_a_bad_file_shows_its_rows(
    browser: Browser, live_site: LiveSite
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    dialogs: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    try:
        _sign_in(page, live_site, "keeper", "/console/registry")
        expect(page).to_have_url(f"{live_site.url}/console/registry")
        expect(page.locator("#registry-none")).to_have_text("暂无登记车辆。")

        page.set_input_files(
            "#import-form input[type=file]",
            files=_csv("bad.csv", HOSTILE),
        )
        page.click("#import-form button[type=submit]")
        rows = page.locator("#import-report tr.import-error")
        expect(rows).to_have_count(3)
        expect(page.locator("#import-report .import-summary")).to_contain_text("未导入任何数据")
        expect(rows.nth(0)).to_contain_text("不是车牌号")
        expect(rows.nth(1).locator("td").nth(1)).to_have_text("车主")  # the column's name
        expect(rows.nth(1)).to_contain_text("'=cmd")  # shown as text, with its guard
        expect(rows.nth(1)).to_contain_text("不能以 = + - @ 开头")
        expect(rows.nth(2)).to_contain_text("<img src=x")  # text, not an element
        assert page.locator("#import-report img").count() == 0
        assert dialogs == []  # no script of the file ran
        assert _plates(live_site) == []
        page.screenshot(path=screenshot_path("registry-import-refused"))

        page.set_input_files(
            "#import-form input[type=file]",
            files=_csv("good.csv", GOOD),
        )
        page.click("#import-form button[type=submit]")
        expect(page.locator(".page-done")).to_have_text("已导入 1 行：新增 1，修改 0。")
        expect(page.locator("tr.vehicle .owner")).to_have_text("张三丰")
        assert _plates(live_site) == ["沪A12345"]
    finally:
        context.close()

    # a camera department reads it masked, with no import form
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    try:
        _sign_in(page, live_site, "officer", "/console/registry")
        expect(page.locator("tr.vehicle .owner")).to_have_text("张**")
        expect(page.locator("tr.vehicle .phone")).to_have_text("138****1234")
        expect(page.locator("#import-form")).to_have_count(0)
        assert "13812341234" not in page.content()
    finally:
        context.close()


def test_the_gateways_page_flags_a_gateway_that_runs_an_older_document(
    browser: Browser, live_site: LiveSite
) -> None:
    with live_site.server.session_factory.begin() as session:
        session.add(RuleDocumentVersion(gateway_id=GATEWAY, version=7, issued_at=utcnow()))
        session.merge(
            GatewayStatusRow(
                gateway_id=GATEWAY,
                site_id=SITE,
                state="online",
                received_at=utcnow(),
                rules_version=6,
            )
        )
    context = browser.new_context(locale="en")
    page = context.new_page()
    try:
        _sign_in(page, live_site, "desk", "/console/gateways?lang=en")
        row = page.locator(f'#gateway-table tr[data-gateway-id="{GATEWAY}"]')
        expect(row).to_have_class("behind")
        expect(row.locator(".latest")).to_have_text("7")
        expect(row.locator(".running")).to_have_text("6")
        expect(row.locator(".flag")).to_have_text("Behind")
        expect(page.locator("#gateways-behind")).to_have_text("1 gateways are behind.")
        page.screenshot(path=screenshot_path("gateways-behind"))
        with live_site.server.session_factory.begin() as session:
            session.get_one(GatewayStatusRow, GATEWAY).rules_version = 7
        page.reload()
        expect(row).to_have_class("current")
        expect(page.locator("#gateways-current")).to_be_visible()
    finally:
        context.close()


@pytest.fixture
def signing_site(tmp_path: Path, mosquitto: MosquittoProcess) -> Iterator[LiveSite]:
    """The browser tests' server with a rules signing key: permits are on."""
    key = tmp_path / "rules.key"
    key.write_text(generate_key_pair()[0])
    config = CivicwatchConfig(
        sites=make_registry().sites,
        broker=mosquitto.settings,
        server=ServerSettings(
            database_url=f"sqlite:///{tmp_path / 'civicwatch.db'}",
            ingest=IngestSettings(
                client_id=f"ingest-browser-{uuid.uuid4().hex[:8]}",
                evidence_dir=tmp_path / "evidence",
            ),
            api=ApiSettings(accounts=AccountSettings(dev_users=list(USERS.values()))),
            exemptions=ExemptionSettings(signing_key_file=key),
        ),
    )
    yield from serve_live_site(config, mosquitto)


def _permits(site: LiveSite) -> list[tuple[str, bool]]:
    with site.server.session_factory() as session:
        rows = session.scalars(select(ExemptionRuleRow).where(ExemptionRuleRow.type == "permit"))
        return [(row.plate or "", row.revoked_at is not None) for row in rows]


def test_property_management_issues_and_revokes_a_permit(
    browser: Browser, signing_site: LiveSite
) -> None:
    context = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai")
    page = context.new_page()
    try:
        _sign_in(page, signing_site, "keeper", "/console/permits")
        expect(page.locator("#permits-none")).to_be_visible()
        form = page.locator("#permit-form")
        form.locator('input[name="plate"]').fill("沪a12345")
        form.locator('input[name="valid_from"]').fill("2026-05-04T08:00")
        form.locator('input[name="valid_to"]').fill("2026-05-04T07:00")  # ends before it starts
        form.locator('input[name="reason"]').fill("搬家")
        form.locator('button[type="submit"]').click()
        expect(page.locator(".action-error")).to_be_visible()
        assert _permits(signing_site) == []

        form.locator('input[name="valid_to"]').fill("2026-05-04T18:00")
        form.locator('button[type="submit"]').click()
        expect(page.locator(".page-done")).to_have_text("通行证已发放。")
        row = page.locator("#permit-list tr[data-rule-id]")
        expect(row).to_have_count(1)
        expect(row.locator(".plate")).to_have_text("沪A12345")
        expect(row).to_contain_text("2026-05-04 08:00")  # the site's time, as entered
        assert _permits(signing_site) == [("沪A12345", False)]

        page.once("dialog", lambda dialog: dialog.accept("车已离开"))
        row.locator("button.permit-revoke").click()
        expect(page.locator(".page-done")).to_have_text("通行证已撤销。")
        expect(page.locator("#permits-none")).to_be_visible()
        assert _permits(signing_site) == [("沪A12345", True)]
    finally:
        context.close()
