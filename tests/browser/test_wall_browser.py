"""The wall (大屏), a case's place and the site-plan admin page, in Chromium on the real server.

The site here has a name, an address, a building and coordinates, as the demo config does; the
fixture mirrors conftest.live_site with a firefighter and an admin among the users.
"""

from __future__ import annotations

import importlib.util
import io
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

if importlib.util.find_spec("playwright") is None and not os.environ.get("CI"):
    pytest.skip(
        "the playwright package is missing (pip install -e '.[dev]')", allow_module_level=True
    )

from playwright.sync_api import Browser, Page, ViewportSize, expect
from pydantic import SecretStr

from civicwatch.config import CivicwatchConfig, ServerSettings
from contracts.events import ViolationKind
from contracts.sites import PlanPosition
from dispatch.config import AccountSettings, ApiSettings, Department, DevUser, Role
from ingest.config import IngestSettings
from storage.tables import CameraPlacement, SitePlanImage
from tests.browser.conftest import PASSWORD, LiveSite, screenshot_path, serve_live_site
from tests.conftest import MosquittoProcess
from tests.factories import FIRE_LANE_ZONE, make_registry

pytestmark = pytest.mark.browser

WALL = ViewportSize(width=1920, height=1080)
PHONE = ViewportSize(width=390, height=844)
ADDRESS = "杭州市西湖区文三路 100 号"
USERS = [
    DevUser(username="desk", password=SecretStr(PASSWORD), role=Role.DISPATCHER),
    DevUser(username="admin", password=SecretStr(PASSWORD), role=Role.ADMIN),
    DevUser(
        username="firefighter",
        password=SecretStr(PASSWORD),
        role=Role.WORKER,
        department=Department.FIRE_RESCUE,
    ),
]


@pytest.fixture
def place_site(tmp_path: Path, mosquitto: MosquittoProcess) -> Iterator[LiveSite]:
    registry = make_registry()
    site = registry.sites[0]
    gateway = site.gateways[0]
    camera = gateway.cameras[0]
    zones = [
        z.model_copy(update={"name": "北门消防通道", "building": "3号楼"}) for z in camera.zones
    ]
    camera = camera.model_copy(update={"zones": zones, "plan_position": PlanPosition(x=0.3, y=0.4)})
    site = site.model_copy(
        update={
            "name": "示范小区",
            "address": ADDRESS,
            "street": "文新街道",
            "lat": 30.2800,
            "long": 120.1300,
            "gateways": [gateway.model_copy(update={"cameras": [camera]})],
        }
    )
    config = CivicwatchConfig(
        sites=[site, *registry.sites[1:]],
        broker=mosquitto.settings,
        server=ServerSettings(
            database_url=f"sqlite:///{tmp_path / 'civicwatch.db'}",
            ingest=IngestSettings(
                client_id=f"ingest-wall-{uuid.uuid4().hex[:8]}",
                evidence_dir=tmp_path / "evidence",
            ),
            api=ApiSettings(accounts=AccountSettings(dev_users=USERS)),
        ),
    )
    yield from serve_live_site(config, mosquitto)


def sign_in(page: Page, site: LiveSite, path: str, username: str) -> None:
    page.goto(f"{site.url}{path}")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    expect(page).to_have_url(f"{site.url}{path}")


def no_vertical_scroll(page: Page) -> bool:
    result: bool = page.evaluate(
        "() => document.documentElement.scrollHeight <= window.innerHeight"
        " && document.body.scrollHeight <= window.innerHeight"
    )
    return result


def test_wall_at_1920x1080_shows_counts_without_scrolling_and_updates_when_a_case_arrives(
    browser: Browser, place_site: LiveSite
) -> None:
    for _ in range(3):
        place_site.publish(place_site.edge.event())
    fire = place_site.edge.event(zone_id=FIRE_LANE_ZONE, kind=ViolationKind.FIRE_LANE_BLOCKING)
    place_site.publish(fire)
    place_site.case_of(fire)
    context = browser.new_context(viewport=WALL, locale="zh-CN", timezone_id="UTC")
    page = context.new_page()
    try:
        sign_in(page, place_site, "/wall?kiosk=1", "desk")
        expect(page.locator("header.top")).to_be_hidden()  # kiosk
        open_count = page.locator('[data-count="open"] .n')
        expect(open_count).to_have_text("4")
        expect(page.locator("#wall-live")).to_have_class("wall-live live")
        # Fire lanes on top.
        expect(page.locator("#wall-urgent li").first).to_have_class("wall-case fire", timeout=5000)
        assert no_vertical_scroll(page), "the wall scrolls at 1920x1080"
        # Readable from 4 m: numbers at least 28 px, text at least 20 px, chart labels too.
        sizes = page.evaluate(
            """() => ({
              number: parseFloat(getComputedStyle(document.querySelector('.tile .n')).fontSize),
              label: parseFloat(getComputedStyle(document.querySelector('.tile .l')).fontSize),
              place: parseFloat(
                getComputedStyle(document.querySelector('.wall-case-place')).fontSize),
              chart: Math.min(...[...document.querySelectorAll('.wall-charts svg.chart text')]
                .map(t => t.getBoundingClientRect().height)),
            })"""
        )
        assert sizes["number"] >= 28
        assert sizes["label"] >= 20
        assert sizes["place"] >= 20
        assert sizes["chart"] >= 20, sizes  # a glyph's box: the type is at least this big
        page.screenshot(path=screenshot_path("wall"))

        arriving = place_site.edge.event()
        place_site.publish(arriving)
        case = place_site.case_of(arriving)
        expect(open_count).to_have_text("5", timeout=5000)
        expect(page.locator(f'#wall-sla [data-case-id="{case.id}"]')).to_have_count(1)
        assert no_vertical_scroll(page)

        # With the header (no kiosk), still no scrolling.
        page.goto(f"{place_site.url}/wall")
        expect(page.locator("header.top")).to_be_visible()
        expect(open_count).to_have_text("5")
        assert no_vertical_scroll(page), "the wall scrolls at 1920x1080 with its header"
    finally:
        context.close()


def test_firefighter_phone_page_shows_the_address_and_a_navigation_link(
    browser: Browser, place_site: LiveSite
) -> None:
    fire = place_site.edge.event(zone_id=FIRE_LANE_ZONE, kind=ViolationKind.FIRE_LANE_BLOCKING)
    place_site.publish(fire)
    case = place_site.case_of(fire)
    context = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True)
    page = context.new_page()
    try:
        sign_in(page, place_site, f"/worker/cases/{case.id}", "firefighter")
        place = page.locator("section.place")
        expect(place.locator(".place-compound")).to_have_text("示范小区")
        expect(place.locator(".place-address")).to_have_text(ADDRESS)
        expect(place.locator(".place-building")).to_have_text("3号楼")
        expect(place.locator(".place-zone")).to_contain_text("北门消防通道")
        amap = place.locator("a.place-amap")
        expect(amap).to_be_visible()
        href = amap.get_attribute("href") or ""
        assert href.startswith("https://uri.amap.com/marker?position=120.1")
        expect(place.locator("a.place-geo")).to_have_attribute("href", "geo:30.280000,120.130000")
        expect(place.locator(".place-marker circle.place-dot")).to_have_count(1)
        page.screenshot(path=screenshot_path("worker-case-place"))
    finally:
        context.close()


def _plan_png() -> bytes:
    # A simple site plan: two buildings and a road, drawn here rather than committed as a binary.
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (1000, 600), (244, 246, 249))
    draw = ImageDraw.Draw(image)
    draw.rectangle((80, 80, 380, 260), fill=(190, 200, 215), outline=(90, 100, 120), width=4)
    draw.rectangle((560, 300, 900, 520), fill=(190, 200, 215), outline=(90, 100, 120), width=4)
    draw.rectangle((0, 420, 1000, 470), fill=(210, 210, 210))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_admin_uploads_a_plan_and_places_a_camera_by_clicking(
    browser: Browser, place_site: LiveSite, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.png"
    plan.write_bytes(_plan_png())
    context = browser.new_context(viewport=WALL, locale="en")
    page = context.new_page()
    try:
        sign_in(page, place_site, "/admin/plans", "admin")
        section = page.locator('.site-plan-admin[data-site-id="site-a"]')
        section.locator('input[type="file"]').set_input_files(str(plan))
        section.locator('form.plan-upload button[type="submit"]').click()
        expect(section.locator("svg.plan image")).to_have_count(1, timeout=5000)
        with place_site.server.session_factory() as session:
            assert session.get(SitePlanImage, "site-a") is not None
        # Click three quarters across, half way down.
        svg = section.locator("svg.plan")
        box = svg.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.5)
        deadline = time.monotonic() + 5
        row = None
        while row is None and time.monotonic() < deadline:
            with place_site.server.session_factory() as session:
                row = session.get(CameraPlacement, "cam-a1")
            time.sleep(0.05)
        assert row is not None, "the click placed no camera"
        assert row.x == pytest.approx(0.75, abs=0.02)
        assert row.y == pytest.approx(0.5, abs=0.02)
        # The page reloads with the dot where it was put.
        dot = section.locator('.camera-dot[data-camera-id="cam-a1"] circle')
        expect(dot).to_have_attribute("cx", f"{row.x * 1000}", timeout=5000)
        page.screenshot(path=screenshot_path("plan-admin"))
    finally:
        context.close()
