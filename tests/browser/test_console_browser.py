"""The dispatcher and the worker, in Chromium, on the real server (see conftest.py).

Violations are generated events (tests/factories.py EventFactory) published to the server's
broker; the after-photo is a real photograph (the street scene that ships with ultralytics) or,
where that package is absent, a JPEG drawn here.
"""

from __future__ import annotations

import importlib.util
import io
import os
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

if importlib.util.find_spec("playwright") is None and not os.environ.get("CI"):
    # In CI the import below fails the run instead: the browser tests must run there.
    pytest.skip(
        "the playwright package is missing (pip install -e '.[dev]')", allow_module_level=True
    )

from playwright.sync_api import Browser, Page, ViewportSize, expect
from sqlalchemy import select

from storage.tables import CaseEvidence, CaseTransition
from tests.browser.conftest import PASSWORD, LiveSite, screenshot_path

pytestmark = pytest.mark.browser

DESKTOP = ViewportSize(width=1440, height=1000)
PHONE = ViewportSize(width=390, height=844)


def sign_in(page: Page, site: LiveSite, path: str, username: str) -> None:
    page.goto(f"{site.url}{path}")
    expect(page).to_have_url(f"{site.url}/login?next={path.replace('/', '%2F')}")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    expect(page).to_have_url(f"{site.url}{path}")


def images_loaded(page: Page, selector: str) -> list[int]:
    """The natural widths of the images under ``selector`` (0: not loaded)."""
    widths: list[int] = page.eval_on_selector_all(
        f"{selector} img", "images => images.map(image => image.complete ? image.naturalWidth : 0)"
    )
    return widths


def after_photo(tmp_path: Path) -> Path:
    spec = importlib.util.find_spec("ultralytics")
    if spec is not None and spec.origin is not None:
        photo = Path(spec.origin).parent / "assets" / "bus.jpg"
        if photo.is_file():
            return photo
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (640, 480), (180, 190, 200))
    ImageDraw.Draw(image).rectangle((100, 200, 540, 470), fill=(90, 90, 90))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    path = tmp_path / "after.jpg"
    path.write_bytes(buffer.getvalue())
    return path


def test_dispatcher_sees_a_new_case_live_opens_its_evidence_and_transfers_it(
    browser: Browser, live_site: LiveSite
) -> None:
    # A browser on UTC: the console still shows the site's time (Asia/Shanghai).
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN", timezone_id="UTC")
    page = context.new_page()
    try:
        page.goto(f"{live_site.url}/console")
        expect(page.locator("#login-form")).to_be_visible()
        page.screenshot(path=screenshot_path("login"))
        sign_in(page, live_site, "/console", "desk")
        expect(page.locator("header .page-title")).to_have_text("指挥调度台")
        expect(page.locator("#live-status")).to_have_text("实时连接正常")

        # A violation published after the page loaded appears without a reload.
        event = live_site.edge.event()
        published = time.monotonic()
        live_site.publish(event)
        case = live_site.case_of(event)
        row = page.locator(f'#feed .feed-item[data-case-id="{case.id}"]').first
        expect(row).to_be_visible(timeout=5000)
        shown_after = time.monotonic() - published
        expect(row).to_contain_text("违法停车")
        site_hour = case.created_at.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%H")
        assert row.locator("time").inner_text().startswith(f"{site_hour}:")
        expect(page.locator(f'#cases tr[data-case-id="{case.id}"]')).to_be_visible()
        expect(page.locator(f'#sla li[data-case-id="{case.id}"]')).to_be_visible()
        assert shown_after < 5, f"the case took {shown_after:.1f} s to show"
        expect(page.locator('.camera-dot[data-camera-id="cam-a1"] circle')).to_be_visible()

        # Its evidence: the edge burnt the zone and box in, so nothing is drawn over a frame.
        row.locator("a.open-case").click()
        panel = page.locator(f'#panel .case-panel[data-case-id="{case.id}"]')
        expect(panel).to_be_visible()
        expect(panel.locator(".frame").first).to_be_visible()
        expect(panel.locator("svg.overlay")).to_have_count(0)
        page.wait_for_function(
            "() => [...document.querySelectorAll('#panel img')]"
            ".every(image => image.complete && image.naturalWidth > 0)"
        )
        assert all(width == 32 for width in images_loaded(page, "#panel"))
        expect(panel.locator(".case-department")).to_have_text("综合行政执法")
        page.screenshot(path=screenshot_path("console"), full_page=True)

        # Transfer it to property management, with a reason.
        form = panel.locator('form[data-action="transfer"]')
        form.locator("select[name=department]").select_option("property_management")
        form.locator("textarea").fill("小区内部道路，由物业先行处置")
        form.locator("button").click()
        expect(page.locator("#panel .case-department")).to_have_text("物业管理")
        expect(page.locator('#panel .timeline li[data-action="transfer"]')).to_contain_text(
            "小区内部道路"
        )
        stored = live_site.case(case.id)
        assert (stored.department, stored.state) == ("property_management", "dispatched")
        # The feed shows the transfer too (the console's own change, through the audit log).
        expect(
            page.locator(f'#feed .feed-item[data-case-id="{case.id}"]', has_text="转派")
        ).to_be_visible()

        page.goto(f"{live_site.url}/console/cases/{case.id}")
        expect(page.locator(".case-panel h2")).to_contain_text(f"#{case.id}")
        page.screenshot(path=screenshot_path("case"), full_page=True)

        page.click("#lang-en")
        expect(page.locator("header .page-title")).to_have_text(f"Case #{case.id}")
        expect(page.locator(".case-department")).to_have_text("Property management")
    finally:
        context.close()


def test_worker_on_a_phone_accepts_and_resolves_with_an_after_photo(
    browser: Browser, live_site: LiveSite, tmp_path: Path
) -> None:
    event = live_site.edge.event()
    live_site.publish(event)
    case = live_site.case_of(event)
    other = live_site.edge.event()
    live_site.publish(other)
    returned = live_site.case_of(other)
    context = browser.new_context(
        viewport=PHONE, locale="zh-CN", is_mobile=True, has_touch=True, device_scale_factor=2
    )
    page = context.new_page()
    try:
        sign_in(page, live_site, "/worker", "officer")
        item = page.locator(f'#queue .queue-item[data-case-id="{case.id}"]')
        expect(item).to_be_visible()
        expect(item).to_contain_text("违法停车")
        # Nothing spills sideways on a phone.
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.screenshot(path=screenshot_path("worker_queue"), full_page=True)

        item.locator("a").click()
        expect(page).to_have_url(f"{live_site.url}/worker/cases/{case.id}")
        page.click("button.action-accept")
        expect(page.locator(".worker-case")).to_have_attribute("data-state", "accepted")

        page.set_input_files("#after-photo", str(after_photo(tmp_path)))
        page.click("#upload-submit")
        photo = page.locator('.frame[data-label="after_photo"]')
        expect(photo).to_be_visible()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.frame[data-label=\"after_photo\"] img')]"
            ".every(image => image.complete && image.naturalWidth > 0)"
        )
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

        page.locator('form[data-action="resolve"] button').click()
        expect(page.locator(".worker-case")).to_have_attribute("data-state", "resolved")
        expect(page.locator(".worker-case h1")).to_contain_text("已办结待核查")
        page.screenshot(path=screenshot_path("worker_case"), full_page=True)

        with live_site.server.session_factory() as session:
            actions = list(
                session.scalars(
                    select(CaseTransition.action)
                    .where(CaseTransition.case_id == case.id)
                    .order_by(CaseTransition.seq)
                )
            )
            photos = session.scalars(
                select(CaseEvidence).where(
                    CaseEvidence.case_id == case.id, CaseEvidence.label == "after_photo"
                )
            ).all()
        assert actions[-3:] == ["accept", "attach", "resolve"]
        assert len(photos) == 1

        # The other case is not ours: returned to the command centre with a reason.
        page.goto(f"{live_site.url}/worker/cases/{returned.id}")
        page.click("button.action-accept")
        expect(page.locator(".worker-case")).to_have_attribute("data-state", "accepted")
        form = page.locator('form[data-action="return"]')
        form.locator("textarea").fill("非本部门职责：消防车道由消防处置")
        form.locator("button").click()
        expect(page.locator(".worker-case")).to_have_attribute("data-state", "returned")
        assert live_site.case(returned.id).state == "returned"
    finally:
        context.close()
