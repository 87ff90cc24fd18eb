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

from tests.browser.conftest import PASSWORD, LiveSite

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
