"""Signing in, in Chromium, on the real server (see conftest.py): ``next`` never leaves the site,
and a user who must change their password can reach nothing else until they have."""

from __future__ import annotations

import importlib.util
import os
from urllib.parse import quote, urlsplit

import pytest

if importlib.util.find_spec("playwright") is None and not os.environ.get("CI"):
    pytest.skip(
        "the playwright package is missing (pip install -e '.[dev]')", allow_module_level=True
    )

from playwright.sync_api import Browser, Dialog, Page, Route, expect
from sqlalchemy import select

from dispatch.accounts import AccountService
from dispatch.config import Department, Role
from storage.tables import AccountAudit
from tests.browser.conftest import PASSWORD, LiveSite, screenshot_path

pytestmark = pytest.mark.browser

HOSTILE_NEXT = [
    "/%09/evil.example/x",
    "/%0a/evil.example/x",
    "/%0d/evil.example/x",
    "/%0d%0a/evil.example/x",
    "%09//evil.example/x",
    "//evil.example/x",
    "/%5Cevil.example/x",
    "%5C%5Cevil.example/x",
    "https://evil.example/x",
    "https:%5C%5Cevil.example/x",
    "javascript:alert(document.domain)",
    "java%09script:alert(document.domain)",
]


def _accounts(site: LiveSite) -> AccountService:
    accounts: AccountService | None = site.server.app.state.api.accounts
    assert accounts is not None
    return accounts


def _submit_password(page: Page, expected_status: int) -> None:
    with page.expect_response("**/api/v1/auth/password") as answer:
        page.click("#password-submit")
    assert answer.value.status == expected_status


def _log_in(page: Page, username: str, password: str) -> None:
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-submit")


def test_signing_in_with_a_hostile_next_stays_on_the_site(
    browser: Browser, live_site: LiveSite
) -> None:
    left: list[str] = []
    dialogs: list[str] = []

    def evil(route: Route) -> None:
        left.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body="<h1>evil</h1>")

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    for hostile in [*HOSTILE_NEXT, quote("/console?lang=en", safe="")]:
        context = browser.new_context(locale="en")
        context.route(lambda url: urlsplit(url).hostname == "evil.example", evil)
        page = context.new_page()
        page.on("dialog", on_dialog)
        try:
            page.goto(f"{live_site.url}/login?next={hostile}")
            _log_in(page, "desk", PASSWORD)
            # A path on the site is still where signing in leads.
            home = "/console?lang=en" if hostile.startswith("%2F") else "/console"
            expect(page).to_have_url(f"{live_site.url}{home}")
            assert not left, f"next={hostile} sent the browser to {left}"
            assert not dialogs, f"next={hostile} ran script: {dialogs}"
        finally:
            context.close()


def test_a_user_who_must_change_the_password_reaches_nothing_else_until_they_do(
    browser: Browser, live_site: LiveSite
) -> None:
    accounts = _accounts(live_site)
    first_password = "first-login-password"
    new_password = "my-own-secret-phrase"
    accounts.create_user(
        "newbie",
        first_password,
        Role.WORKER,
        Department.LAW_ENFORCEMENT,
        must_change_password=True,
    )
    other_session = accounts.authenticate("newbie", first_password, "another-device")

    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    try:
        page.goto(f"{live_site.url}/worker")
        _log_in(page, "newbie", first_password)
        expect(page).to_have_url(f"{live_site.url}/account/password?next=%2Fworker")
        expect(page.locator("#password-form")).to_be_visible()
        expect(page.locator("#password-must-change")).to_be_visible()
        expect(page.locator("header .page-title")).to_have_text("修改密码")
        page.screenshot(path=screenshot_path("password-change"))

        # Every other page sends them back here; the API refuses, saying why.
        for path in ("/console", "/", "/worker/cases/1", "/worker"):
            page.goto(f"{live_site.url}{path}")
            expect(page).to_have_url(
                f"{live_site.url}/account/password?next={quote(path, safe='')}"
            )
        answer = page.evaluate(
            """async () => {
                const r = await fetch('/api/v1/cases', {credentials: 'same-origin'});
                return {status: r.status, body: await r.json()};
            }"""
        )
        assert answer["status"] == 403
        assert answer["body"]["detail"]["code"] == "password_change_required"

        # The new password twice, checked before anything is sent; then the server's rules.
        page.fill("#current-password", first_password)
        page.fill("#new-password", new_password)
        page.fill("#confirm-password", new_password + "x")
        page.click("#password-submit")
        expect(page.locator("#password-error")).to_have_text("两次输入的新密码不一致")
        page.fill("#new-password", "short")
        page.fill("#confirm-password", "short")
        _submit_password(page, 422)
        expect(page.locator("#password-error")).to_have_text("新密码至少需要 10 个字符")
        page.fill("#current-password", "not-the-password")
        page.fill("#new-password", new_password)
        page.fill("#confirm-password", new_password)
        _submit_password(page, 403)
        expect(page.locator("#password-error")).to_have_text("当前密码不正确")

        page.fill("#current-password", first_password)
        page.click("#password-submit")
        expect(page).to_have_url(f"{live_site.url}/worker")
        expect(page.locator("#queue")).to_be_attached()

        account = accounts.get_user("newbie")
        assert not account.must_change_password
        # The session that changed it goes on; every other one has ended.
        assert accounts.resolve_session(other_session.token) is None
        with live_site.server.session_factory() as session:
            entries = list(
                session.scalars(select(AccountAudit).where(AccountAudit.username == "newbie"))
            )
        assert [(e.action, e.actor) for e in entries] == [
            ("created", "local"),
            ("password_changed", "newbie"),
        ]

        # Reachable from the worker view at any time, and the new password is the one.
        page.click("#change-password")
        expect(page).to_have_url(f"{live_site.url}/account/password")
        expect(page.locator("#password-must-change")).to_be_hidden()
        page.click("#logout")
        expect(page).to_have_url(f"{live_site.url}/login")
        _log_in(page, "newbie", first_password)
        expect(page.locator("#login-error")).to_be_visible()
        _log_in(page, "newbie", new_password)
        expect(page).to_have_url(f"{live_site.url}/worker")
    finally:
        context.close()


def test_a_form_sent_before_its_script_has_loaded_goes_nowhere(
    browser: Browser, live_site: LiveSite
) -> None:
    """On a slow phone the login form is on screen before login.js runs; Enter or a tap then
    would send it natively, putting the password in the URL (and the server's access log)."""
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)  # answered later, when the test lets the script arrive

    context = browser.new_context(locale="en")
    context.route("**/static/login.js", hold)
    page = context.new_page()
    try:
        page.goto(f"{live_site.url}/login?next=/console", wait_until="commit")
        submit = page.locator("#login-submit")
        expect(submit).to_be_disabled()
        page.fill("#username", "desk")
        page.fill("#password", PASSWORD)
        page.press("#password", "Enter")
        page.wait_for_timeout(500)  # a native submission would have navigated by now
        assert "password" not in page.url
        assert urlsplit(page.url).path == "/login"

        assert len(held) == 1
        held[0].continue_()
        expect(submit).to_be_enabled()
        submit.click()
        expect(page).to_have_url(f"{live_site.url}/console")
    finally:
        context.close()
