"""The hotline operator's form in Chromium at 1920x1080 on the real server: keyboard only, one
Enter files the caller's report; the tracking code shows large, the case is routed into the
department's queue, and the form is fresh for the next call. Screenshot:
var/screenshots/hotline-done.png."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from playwright.sync_api import expect
from sqlalchemy import select

from storage.tables import Case, ResidentReport
from tests.browser.conftest import PASSWORD, LiveSite, screenshot_path

if TYPE_CHECKING:
    from playwright.sync_api import Browser


def test_one_enter_from_the_call_to_a_routed_case(browser: Browser, live_site: LiveSite) -> None:
    page = browser.new_page(viewport={"width": 1920, "height": 1080})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if "Refused" in msg.text else None)
    page.goto(f"{live_site.url}/console/hotline")
    page.fill("#username", "desk")
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    expect(page).to_have_url(f"{live_site.url}/console/hotline")
    # The category has the focus on arrival: the operator starts typing at once.
    expect(page.locator("select[name=category]")).to_be_focused()
    page.select_option("select[name=category]", "illegal_parking")
    page.keyboard.press("Tab")  # the site: the first is chosen
    page.keyboard.press("Tab")
    page.keyboard.type("3号楼")
    page.fill("textarea[name=description]", "<b>车</b>堵在单元门口")
    page.fill("input[name=phone]", "13812341234")
    page.press("input[name=phone]", "Enter")
    code = page.locator("#hotline-code")
    expect(code).to_be_visible()
    assert re.fullmatch(r"[2-9A-HJ-NP-Z]{10}", code.inner_text())
    page.screenshot(path=screenshot_path("hotline-done"))
    # A fresh form for the next call, the focus back on the category.
    assert page.input_value("input[name=phone]") == ""
    expect(page.locator("select[name=category]")).to_be_focused()
    with live_site.server.session_factory() as session:
        report = session.scalars(select(ResidentReport)).one()
        assert report.tracking_code == code.inner_text()
        assert (report.channel, report.submitted_by) == ("hotline", "desk")
        case = session.get(Case, report.case_id)
        assert case is not None
        assert (case.department, case.state, case.source) == (
            "law_enforcement",
            "dispatched",
            "hotline",
        )
    href = page.get_attribute("#hotline-case", "href")
    assert href == f"/console/cases/{report.case_id}"
    assert not errors, errors
