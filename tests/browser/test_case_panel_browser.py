"""The case page and the worker's case page in Chromium, for a case that has run an hour: the
first action is in view without scrolling on a 1920x1080 console and a 390x844 phone, the
evidence is a curated few with the rest on request, the lightbox zooms, steps and compares, and
a case of another department is a readable page in Chinese (see conftest.py for the server)."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
from datetime import timedelta

import pytest

if importlib.util.find_spec("playwright") is None and not os.environ.get("CI"):
    pytest.skip(
        "the playwright package is missing (pip install -e '.[dev]')", allow_module_level=True
    )

from PIL import Image, ImageDraw
from playwright.sync_api import Browser, FloatRect, Page, ViewportSize, expect

from contracts.events import CAPTION_HEIGHT, EvidenceLabel
from storage.tables import CaseEvidence, Evidence, ResponseTemplate, utcnow
from tests.browser.conftest import LiveSite, screenshot_path
from tests.browser.test_console_browser import sign_in

pytestmark = pytest.mark.browser

CONSOLE: ViewportSize = {"width": 1920, "height": 1080}
PHONE: ViewportSize = {"width": 390, "height": 844}
UPDATES = 60  # an update a minute for an hour, each with the latest view and a close-up
WIDTH, HEIGHT = 640, 360 + CAPTION_HEIGHT


def _picture(seed: int) -> bytes:
    """A camera-sized JPEG whose pixels (and so hash) depend on ``seed``."""
    image = Image.new("RGB", (WIDTH, HEIGHT), ((seed * 37) % 256, (seed * 91) % 256, 90))
    ImageDraw.Draw(image).rectangle((200, 150, 400, 300), outline=(255, 0, 0), width=3)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()


def _an_hour_of_updates(site: LiveSite) -> tuple[int, int]:
    """A case opened through the broker, then 60 update pairs filed as ingest files them."""
    event = site.edge.event()
    site.publish(event)
    case = site.case_of(event)
    store = site.server.evidence_store
    with site.server.session_factory() as session:
        for minute in range(1, UPDATES + 1):
            for offset, label in enumerate((EvidenceLabel.LATEST, EvidenceLabel.CLOSEUP)):
                data = _picture(minute * 2 + offset + 1000)
                sha256 = hashlib.sha256(data).hexdigest()
                store.put(data, sha256)
                at = case.opened_at + timedelta(minutes=minute)
                session.add(
                    Evidence(
                        sha256=sha256,
                        content_type="image/jpeg",
                        size=len(data),
                        width=WIDTH,
                        height=HEIGHT,
                        stored_at=at,
                    )
                )
                session.flush()
                session.add(
                    CaseEvidence(
                        case_id=case.id,
                        sha256=sha256,
                        label=label.value,
                        captured_at=at,
                        width=WIDTH,
                        height=HEIGHT,
                    )
                )
        session.commit()
    return case.id, len(event.evidence) + 2 * UPDATES


def _in_view(page: Page, selector: str) -> FloatRect:
    """The first match's box; asserts it lies wholly inside the viewport, unscrolled."""
    assert page.evaluate("window.scrollY") == 0
    box = page.locator(selector).first.bounding_box()
    assert box is not None, f"{selector} is not rendered"
    size = page.viewport_size
    assert size is not None
    assert box["y"] >= 0
    assert box["x"] >= 0
    assert box["y"] + box["height"] <= size["height"], f"{selector} is below the fold: {box}"
    assert box["x"] + box["width"] <= size["width"]
    return box


def test_the_first_action_is_in_view_on_the_console_and_the_phone(
    browser: Browser, live_site: LiveSite
) -> None:
    case_id, total = _an_hour_of_updates(live_site)

    desk = browser.new_page(viewport=CONSOLE)
    sign_in(desk, live_site, f"/console/cases/{case_id}", "desk")
    _in_view(desk, ".case-panel .actions form.action-form button[type=submit]")
    shown = desk.locator(".evidence .frame").count()
    assert shown <= 8, f"{shown} frames up front: the panel must curate"
    assert desk.locator(".evidence svg.overlay").count() == 0, "the box is burnt in: no overlay"
    desk.screenshot(path=screenshot_path("case-page-1920"))
    desk.close()

    phone = browser.new_page(viewport=PHONE, is_mobile=True, has_touch=True)
    sign_in(phone, live_site, f"/worker/cases/{case_id}", "officer")
    button = _in_view(phone, ".worker-case .actions form.action-form button[type=submit]")
    assert button["height"] >= 44, "a tap target on the phone"
    font = phone.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
    assert font >= 15
    phone.screenshot(path=screenshot_path("worker-case-390"))
    # "Show all" brings every frame in.
    phone.click("button.show-all-frames")
    expect(phone.locator(".evidence .frame")).to_have_count(total)
    phone.close()


def test_the_lightbox_zooms_steps_compares_and_closes(
    browser: Browser, live_site: LiveSite
) -> None:
    case_id, _total = _an_hour_of_updates(live_site)
    page = browser.new_page(viewport=CONSOLE)
    sign_in(page, live_site, f"/console/cases/{case_id}", "desk")
    lightbox = page.locator(".case-panel .lightbox")
    expect(lightbox).to_be_hidden()

    page.locator("a.frame-open").first.click()
    expect(lightbox).to_be_visible()
    image = lightbox.locator(".lb-pane[data-pane='0'] img")
    first = image.get_attribute("src")
    page.wait_for_function(
        "() => document.querySelector('.lb-pane img').naturalWidth > 0", timeout=5000
    )
    assert lightbox.get_attribute("data-scale") == "1"

    lightbox.locator(".lb-zoom-in").click()
    assert float(lightbox.get_attribute("data-scale") or 0) == pytest.approx(1.5)
    # The wheel zooms in further around the pointer.
    box = image.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -400)
    page.wait_for_function("() => Number(document.querySelector('.lightbox').dataset.scale) > 1.5")
    zoomed = image.bounding_box()
    assert zoomed is not None
    assert zoomed["width"] > box["width"] * 1.4, "the picture is drawn larger"
    # Dragging pans a zoomed picture.
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 80, box["y"] + box["height"] / 2 + 40)
    page.mouse.up()
    panned = image.bounding_box()
    assert panned is not None
    assert panned["x"] == pytest.approx(zoomed["x"] + 80, abs=2)

    page.keyboard.press("0")
    assert lightbox.get_attribute("data-scale") == "1"
    page.keyboard.press("ArrowRight")
    assert image.get_attribute("src") != first
    page.keyboard.press("ArrowLeft")
    assert image.get_attribute("src") == first

    page.keyboard.press("c")  # before / after: the first frame beside the latest
    panes = lightbox.locator(".lb-pane img")
    expect(lightbox.locator(".lb-pane[data-pane='1']")).to_be_visible()
    before, after = panes.nth(0).get_attribute("src"), panes.nth(1).get_attribute("src")
    assert before == first
    assert after != before
    page.screenshot(path=screenshot_path("lightbox-compare"))

    page.keyboard.press("Escape")
    expect(lightbox).to_be_hidden()


def test_another_departments_case_is_a_readable_page_in_chinese(
    browser: Browser, live_site: LiveSite
) -> None:
    event = live_site.edge.event()  # illegal parking: law enforcement's
    live_site.publish(event)
    case = live_site.case_of(event)
    page = browser.new_page(viewport=PHONE)
    path = f"/worker/cases/{case.id}"
    sign_in_path = f"{live_site.url}/login?next={path.replace('/', '%2F')}"
    page.goto(f"{live_site.url}{path}")
    expect(page).to_have_url(sign_in_path)
    page.fill("#username", "keeper")  # property management
    page.fill("#password", "browser-test-password")
    page.click("#login-submit")
    expect(page.locator(".error-card h1")).to_have_text("找不到该页面")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert "detail" not in (page.text_content("body") or "")
    page.click("#error-home")
    expect(page).to_have_url(f"{live_site.url}/worker")


def test_a_dispatcher_picks_a_response_template_and_assigns_a_person(
    browser: Browser, live_site: LiveSite
) -> None:
    event = live_site.edge.event()  # illegal parking: law enforcement's
    live_site.publish(event)
    case = live_site.case_of(event)
    body = "已通知车主限时驶离消防通道"
    with live_site.server.session_factory() as session:
        session.add(
            ResponseTemplate(
                name="限时驶离",
                body=body,
                department="law_enforcement",
                created_by="admin",
                updated_at=utcnow(),
            )
        )
        session.commit()
    page = browser.new_page(viewport=CONSOLE)
    sign_in(page, live_site, f"/console/cases/{case.id}", "desk")

    note = page.locator('.case-panel form[data-action="note"]')
    picker = note.locator("select.template-picker")
    expect(picker).to_be_visible()
    picker.select_option(label="限时驶离")
    expect(note.locator("textarea[name=reason]")).to_have_value(body)

    assign = page.locator('.case-panel form[data-action="assign"]')
    people = assign.locator("select[name=assignee]")
    expect(people.locator('option[value="officer"]')).to_have_count(1)
    people.select_option("officer")
    assign.locator("button[type=submit]").click()
    expect(page.locator(".case-panel .case-assignee")).to_have_text("officer")
    assert live_site.case(case.id).assignee == "officer"


def test_the_consoles_panel_shows_the_first_action_in_view(
    browser: Browser, live_site: LiveSite
) -> None:
    case_id, _total = _an_hour_of_updates(live_site)
    page = browser.new_page(viewport=CONSOLE)
    sign_in(page, live_site, "/console", "desk")
    page.locator(f'#cases a.open-case[data-case-id="{case_id}"]').click()
    panel = page.locator(f'#panel .case-panel[data-case-id="{case_id}"]')
    expect(panel).to_be_visible()
    button = panel.locator(".actions form.action-form button[type=submit]").first
    box = button.bounding_box()
    assert box is not None
    # In view as the console shows it (console.js brings the panel to the top; nobody scrolls).
    assert box["y"] >= 0
    assert box["y"] + box["height"] <= CONSOLE["height"], f"below the fold: {box}"
    assert panel.locator(".evidence .frame").count() <= 8
    page.screenshot(path=screenshot_path("console-panel-1920"))
