"""Evidence in the dispatcher's Chromium: a stored file that is really a web page does not run,
the console works under its Content-Security-Policy, and an original opened by one person is not
handed to the next person who signs in on the same browser (see conftest.py for the server)."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os

import pytest

if importlib.util.find_spec("playwright") is None and not os.environ.get("CI"):
    pytest.skip(
        "the playwright package is missing (pip install -e '.[dev]')", allow_module_level=True
    )

from PIL import Image
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, expect
from playwright.sync_api import Error as PlaywrightError

from tests.browser.conftest import LiveSite
from tests.browser.test_console_browser import sign_in
from tests.factories import plant_evidence
from tests.unit.ingest.helpers import with_redacted_copies

pytestmark = pytest.mark.browser

MARKER = "/xss-ran"
HTML = (
    b"<!doctype html><html><body><h1>evidence</h1>"
    b"<script>document.title = 'pwned'; fetch('" + MARKER.encode() + b"');</script>"
    b'<img src="x" onerror="fetch(\'' + MARKER.encode() + b"?img')\">"
    b"</body></html>"
)


def _jpeg_then_html() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 0, 0)).save(buffer, format="JPEG")
    return buffer.getvalue() + HTML


def _open(page: Page, url: str) -> None:
    """Opens ``url`` in the tab; a file served as a download aborts the navigation."""
    try:
        page.goto(url)
    except PlaywrightError as exc:
        if not any(sign in str(exc) for sign in ("Download is starting", "ERR_ABORTED")):
            raise


def _csp_errors(page: Page) -> list[str]:
    """Every Content-Security-Policy refusal Chromium reports on ``page`` from now on."""
    errors: list[str] = []

    def collect(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            errors.append(message.text)

    page.on("console", collect)
    return errors


@pytest.mark.parametrize("data", [HTML, _jpeg_then_html()], ids=["html", "jpeg-then-html"])
def test_a_stored_web_page_posing_as_evidence_does_not_run_when_opened(
    browser: Browser, live_site: LiveSite, data: bytes
) -> None:
    """Ingest now refuses such frames, so the file is written into the store directly, as an
    older version (or anyone with the disk) could have left it, declared text/html."""
    event = live_site.edge.event()
    live_site.publish(event)
    case = live_site.case_of(event)
    sha = plant_evidence(
        live_site.server.session_factory,
        live_site.server.evidence_store,
        case.id,
        data,
        "text/html",
    )
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    ran: list[str] = []

    def call_home(request: Request) -> None:
        if MARKER in request.url:
            ran.append(request.url)

    context.on("request", call_home)
    try:
        sign_in(page, live_site, "/console", "desk")
        _open(page, f"{live_site.url}/api/v1/evidence/{sha}?original=true")
        page.wait_for_timeout(1000)  # time for a script, had one run, to call home
        assert ran == [], f"the planted script ran: {ran}"
        assert page.title() != "pwned"
    finally:
        context.close()


def test_the_console_and_worker_pages_run_under_their_content_security_policy(
    browser: Browser, live_site: LiveSite
) -> None:
    event = live_site.edge.event()
    live_site.publish(event)
    case = live_site.case_of(event)
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    refused = _csp_errors(page)
    try:
        sign_in(page, live_site, "/console", "desk")
        expect(page.locator("#live-status")).to_have_text("实时连接正常")  # the script ran
        page.locator(f'#cases tr[data-case-id="{case.id}"] a').first.click()
        expect(page.locator(f'#panel .case-panel[data-case-id="{case.id}"]')).to_be_visible()
        page.wait_for_function(
            "() => [...document.querySelectorAll('#panel img')]"
            ".every(image => image.complete && image.naturalWidth > 0)"
        )
        page.goto(f"{live_site.url}/console/cases/{case.id}")
        expect(page.locator(".case-panel h2")).to_contain_text(f"#{case.id}")
        page.click("#logout")
        expect(page).to_have_url(f"{live_site.url}/login")
        sign_in(page, live_site, "/worker", "officer")
        expect(page.locator(f'#queue .queue-item[data-case-id="{case.id}"]')).to_be_visible()
        assert refused == []
    finally:
        context.close()


def test_an_original_is_not_served_from_the_cache_to_the_next_user_on_the_browser(
    browser: Browser, live_site: LiveSite
) -> None:
    """The dispatcher opens an unredacted original, signs out; a department worker signs in on
    the same browser and opens the same URL: they must get the redacted copy, as the server
    would give them, not the dispatcher's original kept by the browser."""
    event = with_redacted_copies(live_site.edge.event())
    live_site.publish(event)
    live_site.case_of(event)
    frame = event.evidence[0]
    assert frame.redacted is not None
    url = f"{live_site.url}/api/v1/evidence/{frame.sha256}?original=true"
    context = browser.new_context()
    page = context.new_page()
    try:
        sign_in(page, live_site, "/console", "desk")
        opened = page.goto(url)
        assert opened is not None
        assert hashlib.sha256(opened.body()).hexdigest() == frame.sha256
        page.goto(f"{live_site.url}/console")
        page.click("#logout")
        expect(page).to_have_url(f"{live_site.url}/login")

        sign_in(page, live_site, "/worker", "officer")
        again = page.goto(url)
        assert again is not None
        assert hashlib.sha256(again.body()).hexdigest() == frame.redacted.sha256, (
            "the worker got the dispatcher's unredacted original"
        )
        assert again.header_value("x-evidence-copy") == "redacted"
    finally:
        context.close()
