"""The dispatcher's case list in Chromium on the real server (see conftest.py): filters, search
and pages over 120 seeded cases, Enter to open, saved views, bulk transfer with a refusal, the
CSV export, keyboard shortcuts, and the alert when an urgent case arrives."""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import re
from pathlib import Path

import pytest

if importlib.util.find_spec("playwright") is None and not os.environ.get("CI"):
    pytest.skip(
        "the playwright package is missing (pip install -e '.[dev]')", allow_module_level=True
    )

from playwright.sync_api import Browser, Page, ViewportSize, expect
from sqlalchemy import select

from contracts.events import ViolationKind
from storage.tables import Case
from tests.browser.conftest import PASSWORD, LiveSite, screenshot_path
from tests.factories import FIRE_LANE_ZONE

pytestmark = pytest.mark.browser

DESKTOP = ViewportSize(width=1440, height=1000)
SEEDED = 120
CSRF = {"X-Requested-With": "civicwatch"}


def seed(site: LiveSite, count: int) -> list[int]:
    """``count`` parking cases stored straight through the server's ingest service."""
    for _ in range(count):
        site.server.service.store(site.edge.event(frames=1))
    with site.server.session_factory() as session:
        return list(session.scalars(select(Case.id).order_by(Case.id)))


def sign_in(page: Page, site: LiveSite, path: str = "/console") -> None:
    page.goto(f"{site.url}{path}")
    page.wait_for_load_state()  # the login script has bound the form before it is submitted
    page.fill("#username", "desk")
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    expect(page).to_have_url(re.compile(re.escape(f"{site.url}/console")))
    page.wait_for_load_state()  # the page's scripts have run: its keys and forms answer


def rows(page: Page) -> int:
    return page.locator("#cases tr.case-row").count()


def test_filters_search_pages_and_enter_opens(browser: Browser, live_site: LiveSite) -> None:
    ids = seed(live_site, SEEDED)
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    try:
        sign_in(page, live_site)
        expect(page.locator(".list-total")).to_have_text(f"共 {SEEDED} 件")
        assert rows(page) == 50

        # Next page: 50 more, none of the first page's; the cursor is in the URL.
        first_page = set(
            page.locator("#cases tr.case-row").evaluate_all(
                "rows => rows.map(row => row.dataset.caseId)"
            )
        )
        page.click("#page-next")
        expect(page).to_have_url(re.compile(r"cursor="))
        expect(page.locator("#page-first")).to_be_visible()
        second_page = set(
            page.locator("#cases tr.case-row").evaluate_all(
                "rows => rows.map(row => row.dataset.caseId)"
            )
        )
        assert len(second_page) == 50
        assert not first_page & second_page
        page.click("#page-first")
        expect(page.locator("#page-first")).to_have_count(0)

        # A filter: the state chosen in the bar goes into the URL, which reloads the same list.
        page.select_option("#filter-state", ["dispatched"])
        page.click("#filter-apply")
        expect(page).to_have_url(f"{live_site.url}/console?state=dispatched")
        expect(page.locator(".list-total")).to_have_text(f"共 {SEEDED} 件")
        page.select_option("#filter-state", ["closed"])
        page.click("#filter-apply")
        expect(page.locator(".list-total")).to_have_text("共 0 件")
        page.reload()
        expect(page.locator("#filter-state option[value=closed]")).to_have_js_property(
            "selected", True
        )

        # Search by case number.
        page.goto(f"{live_site.url}/console")
        target = ids[77]
        page.fill("#list-q", f"#{target}")
        page.press("#list-q", "Enter")
        expect(page).to_have_url(re.compile(r"q=%23" + str(target)))
        expect(page.locator("#cases tr.case-row")).to_have_count(1)
        expect(page.locator(".list-total")).to_have_text("共 1 件")

        # Enter on the focused row opens the case in the panel.
        page.locator(f'#cases tr[data-case-id="{target}"]').focus()
        page.keyboard.press("Enter")
        expect(page.locator(f'#panel .case-panel[data-case-id="{target}"]')).to_be_visible()
        page.screenshot(path=screenshot_path("case-list"), full_page=True)
    finally:
        context.close()


def test_saved_view_round_trip(browser: Browser, live_site: LiveSite) -> None:
    seed(live_site, 3)
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    try:
        sign_in(page, live_site, "/console?state=dispatched&sort=newest")
        page.fill("#view-name", "待受理")
        page.click("#save-view button")
        chip = page.locator(".view-chip", has_text="待受理")
        expect(chip).to_be_visible()
        page.goto(f"{live_site.url}/console")
        page.locator(".view-chip a", has_text="待受理").click()
        expect(page).to_have_url(f"{live_site.url}/console?state=dispatched&sort=newest")
        expect(page.locator("#filter-sort")).to_have_value("newest")
        page.locator(".view-chip button.delete-view").click()
        expect(page.locator(".view-chip")).to_have_count(0)
        page.reload()
        expect(page.locator(".view-chip")).to_have_count(0)
    finally:
        context.close()


def test_bulk_transfer_of_three_with_one_refused(browser: Browser, live_site: LiveSite) -> None:
    ids = seed(live_site, 3)
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    try:
        sign_in(page, live_site)
        # One of them is parked first: a parked case cannot be transferred.
        parked = ids[1]
        answer = page.request.post(
            f"{live_site.url}/api/v1/cases/{parked}/actions",
            data={"action": "park", "reason": "等待业主回复"},
            headers=CSRF,
        )
        assert answer.ok, answer.text()
        page.reload()
        for case_id in ids:
            page.locator(f'#cases tr[data-case-id="{case_id}"] input.pick-case').check()
        expect(page.locator("#bulk-count")).to_have_text("已选 3 件")
        page.select_option("#bulk-action", "transfer")
        expect(page.locator("#bulk-person")).to_be_hidden()
        page.select_option("#bulk-department", "property_management")
        page.fill("#bulk-reason", "小区内部道路，由物业处置")
        page.click("#bulk-run")
        results = page.locator("#bulk-results")
        expect(results.locator("li.ok")).to_have_count(2)
        refused = results.locator("li.refused")
        expect(refused).to_have_count(1)
        expect(refused).to_have_attribute("data-case-id", str(parked))
        expect(results.locator("li.summary")).to_have_text("成功 2 件，被拒 1 件")
        for case_id in (ids[0], ids[2]):
            assert live_site.case(case_id).department == "property_management"
        assert live_site.case(parked).state == "parked"
        # The list redraws with the new departments, the selection cleared.
        expect(page.locator(f'#cases tr[data-case-id="{ids[0]}"]')).to_contain_text("物业管理")
        expect(page.locator("#bulk-count")).to_have_text("已选 0 件")
    finally:
        context.close()


def test_export_csv_of_the_filtered_list(
    browser: Browser, live_site: LiveSite, tmp_path: Path
) -> None:
    ids = seed(live_site, 5)
    live_site.server.service.store(
        live_site.edge.event(zone_id=FIRE_LANE_ZONE, kind=ViolationKind.FIRE_LANE_BLOCKING)
    )
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN", accept_downloads=True)
    page = context.new_page()
    try:
        sign_in(page, live_site, "/console?kind=illegal_parking")
        with page.expect_download() as download:
            page.click("#export-csv")
        saved = tmp_path / "cases.csv"
        download.value.save_as(saved)
        table = list(csv.reader(io.StringIO(saved.read_text(encoding="utf-8-sig"))))
        assert len(table) == 1 + len(ids)  # a header, then exactly the filtered cases
        assert sorted(int(row[0]) for row in table[1:]) == ids
        assert table[1][1] == "违法停车"
    finally:
        context.close()


def test_keyboard_shortcuts(browser: Browser, live_site: LiveSite) -> None:
    ids = seed(live_site, 4)
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    try:
        sign_in(page, live_site)
        page.keyboard.press("?")
        expect(page.locator("#shortcuts")).to_be_visible()
        expect(page.locator("#shortcuts")).to_contain_text("下一行")
        page.keyboard.press("Escape")
        expect(page.locator("#shortcuts")).to_be_hidden()

        order = page.locator("#cases tr.case-row").evaluate_all(
            "rows => rows.map(row => row.dataset.caseId)"
        )
        assert sorted(int(case_id) for case_id in order) == ids
        page.keyboard.press("j")
        page.keyboard.press("j")
        expect(page.locator(f'#cases tr[data-case-id="{order[1]}"]')).to_be_focused()
        page.keyboard.press("k")
        expect(page.locator(f'#cases tr[data-case-id="{order[0]}"]')).to_be_focused()
        page.keyboard.press("x")
        expect(page.locator(f'#cases tr[data-case-id="{order[0]}"] input')).to_be_checked()
        expect(page.locator("#bulk-count")).to_have_text("已选 1 件")
        page.keyboard.press("/")
        expect(page.locator("#list-q")).to_be_focused()
        # Typing in the search box is typing, not shortcuts.
        page.keyboard.type("jx?")
        expect(page.locator("#list-q")).to_have_value("jx?")
        expect(page.locator("#shortcuts")).to_be_hidden()
        expect(page.locator("#bulk-count")).to_have_text("已选 1 件")
        page.locator(f'#cases tr[data-case-id="{order[0]}"]').focus()
        page.keyboard.press("a")
        expect(page.locator("#bulk-action")).to_have_value("assign")
        expect(page.locator("#bulk-department")).to_be_focused()
    finally:
        context.close()


# Records each desktop notification the page makes, then makes it as the browser would.
RECORD_NOTIFICATIONS = """
(() => {
  const Real = window.Notification;
  window.__notifications = [];
  class Recorded extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notifications.push({ title, body: (options || {}).body || "" });
    }
  }
  Object.defineProperty(Recorded, "permission", { get: () => Real.permission });
  Recorded.requestPermission = (...args) => Real.requestPermission(...args);
  window.Notification = Recorded;
})();
"""


def test_an_urgent_case_flashes_and_notifies(browser: Browser, live_site: LiveSite) -> None:
    seed(live_site, 2)
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN", permissions=["notifications"])
    context.add_init_script(RECORD_NOTIFICATIONS)
    page = context.new_page()
    try:
        sign_in(page, live_site)
        expect(page.locator("#live-status")).to_have_text("实时连接正常")
        # Opting in: the browser grants the permission this context holds; stored on the account.
        page.check("#alert-desktop")
        page.check("#alert-sound")
        page.wait_for_function(
            "async () => { const r = await fetch('/api/v1/account/alerts');"
            " const p = await r.json(); return p.desktop && p.sound; }"
        )

        # An ordinary case: no alert.
        ordinary = live_site.edge.event()
        live_site.publish(ordinary)
        plain = page.locator(
            f'#feed .feed-item[data-case-id="{live_site.case_of(ordinary).id}"]'
        ).first
        expect(plain).to_be_visible(timeout=10000)
        assert "urgent-flash" not in (plain.get_attribute("class") or "")
        event = live_site.edge.event(zone_id=FIRE_LANE_ZONE, kind=ViolationKind.FIRE_LANE_BLOCKING)
        live_site.publish(event)
        case = live_site.case_of(event)
        item = page.locator(f'#feed .feed-item[data-case-id="{case.id}"]').first
        expect(item).to_have_class(re.compile(r"urgent-flash"), timeout=10000)
        row = page.locator(f'#cases tr[data-case-id="{case.id}"]')
        expect(row).to_have_class(re.compile(r"urgent-flash"), timeout=10000)
        notes = page.evaluate("window.__notifications")
        assert [note["title"] for note in notes] == [f"紧急案件 #{case.id}"]
        assert "占用消防通道" in notes[0]["body"]

        # With reduced motion the mark stays but nothing blinks.
        page.emulate_media(reduced_motion="reduce")
        for selector in (f'#cases tr[data-case-id="{case.id}"]', "#feed .urgent-flash"):
            page.wait_for_function(
                """selector => [...document.querySelectorAll(selector)].length > 0
                && [...document.querySelectorAll(selector)].every(element => {
                  const style = getComputedStyle(element);
                  return element.classList.contains("urgent-flash")
                    && style.animationName === "none"
                    && style.backgroundColor === "rgb(255, 205, 210)";
                })""",
                arg=selector,
            )
        page.screenshot(path=screenshot_path("urgent-alert"))
    finally:
        context.close()


def test_bulk_assign_to_a_person_of_the_department(browser: Browser, live_site: LiveSite) -> None:
    ids = seed(live_site, 2)
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    page = context.new_page()
    try:
        sign_in(page, live_site)
        page.locator("#select-all").check()
        expect(page.locator("#bulk-count")).to_have_text("已选 2 件")
        page.locator("#cases tr.case-row").first.focus()
        page.keyboard.press("a")  # the assign shortcut: the bulk bar, on assign
        page.select_option("#bulk-department", "law_enforcement")
        expect(page.locator("#bulk-person option[value=officer]")).to_be_attached()
        page.select_option("#bulk-person", "officer")
        page.click("#bulk-run")
        expect(page.locator("#bulk-results li.ok")).to_have_count(2)
        for case_id in ids:
            assert live_site.case(case_id).assignee == "officer"
            expect(page.locator(f'#cases tr[data-case-id="{case_id}"] td.assignee')).to_have_text(
                "officer"
            )
    finally:
        context.close()
