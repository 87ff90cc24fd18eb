"""The analysis reports page in Chromium on the real server: a dispatcher picks a month and a
compound, generates the report and reads it with its charts loaded; nothing is refused by the
page's security policy. Screenshots: var/screenshots/report-*.png."""

from __future__ import annotations

import importlib.util
import os
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

if importlib.util.find_spec("playwright") is None and not os.environ.get("CI"):
    pytest.skip(
        "the playwright package is missing (pip install -e '.[dev]')", allow_module_level=True
    )

from playwright.sync_api import Browser, ViewportSize, expect
from sqlalchemy import insert

from storage.tables import Case
from tests.browser.conftest import PASSWORD, LiveSite, screenshot_path
from tests.factories import CAMERA, GATEWAY, PARKING_ZONE, SITE

pytestmark = pytest.mark.browser

SCREEN = ViewportSize(width=1280, height=900)


def seed_may(site: LiveSite) -> None:
    start = datetime(2026, 5, 3, 1, tzinfo=UTC)
    rows = []
    for n in range(40):
        created = start + timedelta(hours=17 * n)
        rows.append(
            {
                "violation_id": uuid.uuid4(),
                "kind": "illegal_parking",
                "site_id": SITE,
                "gateway_id": GATEWAY,
                "camera_id": CAMERA,
                "zone_id": PARKING_ZONE,
                "zone_kind": "no_parking",
                "state": "closed" if n % 3 else "accepted",
                "department": "law_enforcement",
                "started_at": created,
                "opened_at": created,
                "last_observed_at": created,
                "dwell_seconds": 300.0,
                "created_at": created,
                "updated_at": created,
                "acknowledged_at": created + timedelta(minutes=4),
                "ack_due_at": created + timedelta(minutes=10),
                "sla_due_at": created + timedelta(hours=2),
                "resolved_at": created + timedelta(hours=1) if n % 3 else None,
                "closed_at": created + timedelta(hours=1, minutes=20) if n % 3 else None,
                "plate_text": f"浙A{n % 7:05d}",
                "plate_confidence": 0.95,  # read at or above the floor: a repeat plate counts
                "overdue": False,
                "chain_broken": False,
                "escalation_level": 0,
            }
        )
    with site.server.session_factory.begin() as session:
        session.execute(insert(Case), rows)


def test_a_dispatcher_generates_and_reads_a_monthly_report(
    browser: Browser, live_site: LiveSite
) -> None:
    seed_may(live_site)
    context = browser.new_context(viewport=SCREEN, locale="zh-CN")
    page = context.new_page()
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text))
    page.goto(f"{live_site.url}/console/reports")
    page.fill("#username", "desk")
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    expect(page).to_have_url(f"{live_site.url}/console/reports")
    expect(page.locator("#report-form")).to_be_visible()

    page.select_option("#report-period", "month")
    page.select_option("#report-place", f"site:{SITE}")
    page.fill("#report-day", "2026-05-10")
    page.screenshot(path=screenshot_path("report-form"))
    page.click("#report-generate")

    # Generating draws six charts and a PDF: seconds on a loaded machine.
    expect(page).to_have_url(
        re.compile(rf"{re.escape(live_site.url)}/console/reports/\d+$"), timeout=60_000
    )
    expect(page.locator("#report-title")).to_contain_text(
        "社情研判月报（2026-05-01 至 2026-05-31）"
    )
    expect(page.locator("#total-cases")).to_have_text("40")
    expect(page.locator("#repeat-plates")).to_contain_text("浙A00000")
    widths: list[int] = page.eval_on_selector_all(
        "img", "images => images.map(image => image.complete ? image.naturalWidth : 0)"
    )
    assert len(widths) >= 5
    assert all(width > 300 for width in widths), widths
    page.screenshot(path=screenshot_path("report"), full_page=True)

    page.goto(f"{live_site.url}/console/reports")
    expect(page.locator("#reports tr[data-report]")).to_have_count(1)
    # A period that has not ended: one line above the form, in the page's language.
    page.fill("#report-day", "2999-01-01")
    page.click("#report-generate")
    expect(page.locator("#report-error")).to_contain_text("尚未结束", timeout=30_000)
    expect(page).to_have_url(f"{live_site.url}/console/reports")
    assert not [text for text in refused if "Content Security Policy" in text], refused
    context.close()
