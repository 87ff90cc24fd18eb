"""The exemption pages in Chromium on the real server (see conftest.py): property management
imports the vehicle registry from CSV (a hostile file is refused with its rows, columns and
reasons shown as text, in Chinese; a good one is stored), a law-enforcement worker sees the
registry masked, and the gateways' page flags a gateway that runs an older rule document. The
server here has no rules signing key, so the gateways' versions are written to the database as
the signing service and a gateway's retained status would leave them."""

from __future__ import annotations

import importlib.util
import os

import pytest

if importlib.util.find_spec("playwright") is None and not os.environ.get("CI"):
    pytest.skip(
        "the playwright package is missing (pip install -e '.[dev]')", allow_module_level=True
    )

from playwright.sync_api import Browser, Dialog, FilePayload, Page, expect
from sqlalchemy import select

from storage.tables import GatewayStatusRow, RegistryVehicle, RuleDocumentVersion, utcnow
from tests.browser.conftest import PASSWORD, LiveSite, screenshot_path
from tests.factories import GATEWAY, SITE

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
