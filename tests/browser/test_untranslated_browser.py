"""The untranslated-string crawl in Chromium (see conftest.py): what a person sees once the
pages' scripts have run (live rows, the case panel, the wall), in both languages, read from the
rendered text. Also: a browser set to English still gets Chinese (the README's default), and an
API refusal shows in the page's language, never as the API's English detail.

The checks are the HTTP crawl's (tests/integration/test_untranslated.py); ``PAGES`` lists what
is read, per user. A page that is not there (404) is skipped, so the list may run ahead.
"""

from __future__ import annotations

import importlib.util
import os
import re

import pytest

if importlib.util.find_spec("playwright") is None and not os.environ.get("CI"):
    pytest.skip(
        "the playwright package is missing (pip install -e '.[dev]')", allow_module_level=True
    )

from playwright.sync_api import Browser, Page, ViewportSize, expect
from sqlalchemy import select

from contracts.events import ViolationKind
from storage.tables import Case
from tests.browser.conftest import PASSWORD, USERS, LiveSite
from tests.factories import FIRE_LANE_ZONE, make_registry
from tests.integration.test_untranslated import catalogue_pattern, data_words, untranslated

pytestmark = pytest.mark.browser

DESKTOP = ViewportSize(width=1440, height=1000)
# (user, pages): "{case}" is a seeded case the user may see.
PAGES: list[tuple[str, list[str]]] = [
    (
        "desk",
        [
            "/console",
            "/console/cases/{case}",
            "/console/templates",
            "/console/reports",
            "/console/plans/{site}",
            "/admin/plans",
            "/wall",
            "/account/password",
        ],
    ),
    ("officer", ["/worker", "/worker/cases/{case}"]),
]


def _seed(site: LiveSite) -> int:
    """A parking case and a fire-lane case through the server's ingest; the parking case's id."""
    site.server.service.store(site.edge.event(frames=1))
    site.server.service.store(
        site.edge.event(frames=1, zone_id=FIRE_LANE_ZONE, kind=ViolationKind.FIRE_LANE_BLOCKING)
    )
    with site.server.session_factory() as session:
        parking = session.scalars(
            select(Case.id).where(Case.kind == ViolationKind.ILLEGAL_PARKING.value)
        ).first()
    assert parking is not None
    return parking


def _sign_in(page: Page, site: LiveSite, username: str) -> None:
    page.goto(f"{site.url}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(re.compile(r".*/(console|worker)"))
    page.wait_for_load_state()


def _words(site: LiveSite) -> list[str]:
    with site.server.session_factory() as session:
        plates = [p for p in session.scalars(select(Case.plate_text)) if p]
    names = [*USERS, *(user.display_name for user in USERS.values() if user.display_name)]
    return data_words(make_registry(), names, plates)


def _read(page: Page, url: str) -> list[str] | None:
    """The page's rendered text, one line per line a person sees; None: no such page."""
    response = page.goto(url)
    if response is None or response.status == 404:
        return None
    page.wait_for_load_state("networkidle")
    text: str = page.evaluate("document.body.innerText")
    return text.splitlines()


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_rendered_pages_are_in_one_language(
    browser: Browser, live_site: LiveSite, language: str
) -> None:
    case_id = _seed(live_site)
    words, keys = _words(live_site), catalogue_pattern()
    site_id = make_registry().sites[0].id
    findings: list[str] = []
    read = 0
    for username, paths in PAGES:
        # The browser says English: only the user's own choice (?lang=) may change the language.
        context = browser.new_context(viewport=DESKTOP, locale="en-US")
        page = context.new_page()
        _sign_in(page, live_site, username)
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        # The user's own choice, on the first page they read; the cookie keeps it.
        first = paths[0].format(case=case_id, site=site_id)
        page.goto(f"{live_site.url}{first}?lang={language}")
        for path in paths:
            url = f"{live_site.url}{path.format(case=case_id, site=site_id)}"
            lines = _read(page, url)
            if lines is None:
                continue
            read += 1
            expect(page.locator("html")).to_have_attribute("lang", language)
            findings += [
                f"{language} {username} {path}: {problem}: {text!r}"
                for problem, text in untranslated(lines, language, words, keys)
            ]
        context.close()
    assert read >= 4
    assert sorted(set(findings)) == []


def test_an_api_refusal_shows_in_the_pages_language(browser: Browser, live_site: LiveSite) -> None:
    """ "操作失败: case 999 does not exist" was seen: the code's message shows, not the detail."""
    case_id = _seed(live_site)
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    _sign_in(page, live_site, "desk")
    page.goto(f"{live_site.url}/console/cases/{case_id}")
    page.wait_for_load_state("networkidle")
    script = """async (url) => {
        try { await CW.api(url, {method: "POST", json: {action: "note", reason: "x"}}); }
        catch (error) { CW.showError(document.body.querySelector('.case-panel') || document.body,
                                     error); return [error.status, error.code, error.message]; }
        return null; }"""
    status, code, message = page.evaluate(script, "/api/v1/cases/999999/actions")
    assert status == 404
    assert code  # the API's one error shape names a code
    assert re.search(r"[\u4e00-\u9fff]", message), message
    assert not re.search(r"[A-Za-z]{3,}", message), message  # no English detail
    page.goto(f"{live_site.url}/console/cases/{case_id}?lang=en")
    page.wait_for_load_state("networkidle")
    status, _, english = page.evaluate(script, "/api/v1/cases/999999/actions")
    assert status == 404
    assert not re.search(r"[\u4e00-\u9fff]", english), english
    context.close()
