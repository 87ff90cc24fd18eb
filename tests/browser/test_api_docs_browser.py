"""/docs in Chromium with the internet cut off: Swagger UI must come from the server itself."""

from __future__ import annotations

import importlib.util
import os
from urllib.parse import urlsplit

import pytest

if importlib.util.find_spec("playwright") is None and not os.environ.get("CI"):
    pytest.skip(
        "the playwright package is missing (pip install -e '.[dev]')", allow_module_level=True
    )

from playwright.sync_api import Browser, Route, expect

from tests.browser.conftest import LiveSite, screenshot_path

pytestmark = pytest.mark.browser


def test_docs_render_every_operation_offline_under_the_page_policy(
    browser: Browser, live_site: LiveSite
) -> None:
    context = browser.new_context()
    blocked: list[str] = []
    refused_by_policy: list[str] = []

    def offline(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:  # a command centre without internet
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", offline)
    page = context.new_page()
    page.on(
        "console",
        lambda message: (
            refused_by_policy.append(message.text)
            if "Content Security Policy" in message.text
            else None
        ),
    )
    try:
        page.goto(f"{live_site.url}/docs")
        cases = page.locator(".opblock-summary-path", has_text="/api/v1/cases").first
        expect(cases).to_be_visible(timeout=15_000)
        assert page.locator(".opblock").count() >= 20
        page.screenshot(path=screenshot_path("api-docs-offline"), full_page=False)
    finally:
        context.close()
    assert blocked == []
    assert refused_by_policy == []
