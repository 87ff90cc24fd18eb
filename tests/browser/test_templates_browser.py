"""The response templates' admin page in Chromium on the real server (see conftest.py): an admin
adds, changes and deletes a template; a refusal shows in the page's language; nobody else gets
the page."""

from __future__ import annotations

import importlib.util
import os

import pytest

if importlib.util.find_spec("playwright") is None and not os.environ.get("CI"):
    pytest.skip(
        "the playwright package is missing (pip install -e '.[dev]')", allow_module_level=True
    )

from playwright.sync_api import Browser, Dialog, Page, expect
from sqlalchemy import select

from dispatch.accounts import AccountService
from dispatch.config import Role
from storage.tables import ResponseTemplate
from tests.browser.conftest import PASSWORD, LiveSite, screenshot_path

pytestmark = pytest.mark.browser

PAGE = "/console/templates"


def _sign_in(page: Page, site: LiveSite, username: str) -> None:
    page.goto(f"{site.url}{PAGE}")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_load_state()


def _templates(site: LiveSite) -> list[tuple[str, str, str | None]]:
    with site.server.session_factory() as session:
        rows = session.scalars(select(ResponseTemplate).order_by(ResponseTemplate.name))
        return [(row.name, row.body, row.department) for row in rows]


def test_an_admin_adds_changes_and_deletes_templates(browser: Browser, live_site: LiveSite) -> None:
    accounts: AccountService | None = live_site.server.app.state.api.accounts
    assert accounts is not None
    accounts.create_user("admin", PASSWORD, Role.ADMIN)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    try:
        _sign_in(page, live_site, "admin")
        expect(page).to_have_url(f"{live_site.url}{PAGE}")
        expect(page.locator("#template-list")).to_contain_text("暂无模板。")

        new = page.locator("#template-new form.template-form")
        new.locator('input[name="name"]').fill("已拖离")
        new.locator('select[name="department"]').select_option("law_enforcement")
        new.locator('textarea[name="body"]').fill("车辆已拖离现场。")
        new.locator('button[type="submit"]').click()
        saved = page.locator("#template-list form.template-form")
        expect(saved).to_have_count(1)
        expect(page.locator(".templates-done")).to_have_text("已保存。")
        assert _templates(live_site) == [("已拖离", "车辆已拖离现场。", "law_enforcement")]

        # the same name again: refused, in Chinese, never the API's English
        new.locator('input[name="name"]').fill("已拖离")
        new.locator('textarea[name="body"]').fill("重复")
        new.locator('button[type="submit"]').click()
        error = page.locator(".action-error")
        expect(error).to_be_visible()
        expect(error).to_contain_text("已有名为 已拖离 的回复模板。")
        assert len(_templates(live_site)) == 1

        # change it to an all-department template
        saved.locator('select[name="department"]').select_option("")
        saved.locator('textarea[name="body"]').fill("车主已自行驶离。")
        # the message from the first save is still shown: wait for the change itself
        with page.expect_response(lambda r: r.request.method == "PUT") as answer:
            saved.locator('button[type="submit"]').click()
        assert answer.value.status == 200
        page.wait_for_load_state()
        expect(page.locator(".templates-done")).to_have_text("已保存。")
        expect(saved.locator('textarea[name="body"]')).to_have_value("车主已自行驶离。")
        assert _templates(live_site) == [("已拖离", "车主已自行驶离。", None)]
        page.screenshot(path=screenshot_path("templates-admin"))

        def accept(dialog: Dialog) -> None:
            assert dialog.message == "确定删除此模板？"
            dialog.accept()

        page.once("dialog", accept)
        saved.locator("button.template-delete").click()
        expect(page.locator(".templates-done")).to_have_text("已删除。")
        expect(page.locator("#template-list")).to_contain_text("暂无模板。")
        assert _templates(live_site) == []
    finally:
        context.close()


def test_only_an_admin_gets_the_page(browser: Browser, live_site: LiveSite) -> None:
    context = browser.new_context(locale="en")
    page = context.new_page()
    try:
        _sign_in(page, live_site, "desk")
        expect(page).to_have_url(f"{live_site.url}/console")
    finally:
        context.close()
