"""Issue 12 end to end, in Chromium at a phone's size (390x844) on the real server (ingest from
a private Mosquitto, SQLite, the API under uvicorn; see conftest.py):

(a) a camera sees a car in the fire lane at 3号楼: ingest opens the case, dispatched to fire
    and rescue;
(b) a resident scans the poster at 3号楼 (a signed QR token) and reports the blocked fire lane
    with a real photo (../shared/data/images/street.png);
(c) the report JOINS the camera's open case (no second case), as the dispatcher's API says;
(d) the firefighter accepts and resolves it on the phone-sized case page (with an after-photo);
(e) the resident opens the tracking link and rates 不满意 with a comment;
(f) the case is back with the fire department's supervisor: reopened, escalation level 1,
    on the supervisor's case list (the API, signed in as the supervisor).

Screenshots: var/screenshots/story-*.png.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

if importlib.util.find_spec("playwright") is None and not os.environ.get("CI"):
    pytest.skip(
        "the playwright package is missing (pip install -e '.[dev]')", allow_module_level=True
    )

from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect
from pydantic import SecretStr
from sqlalchemy import select

from civicwatch.config import CivicwatchConfig, ServerSettings
from contracts.kinds import ViolationKind
from dispatch.config import AccountSettings, ApiSettings, Department, DevUser, Role
from dispatch.residents.tokens import QrSigner
from ingest.config import IngestSettings
from storage.tables import CaseTransition, ReportPhoto, ResidentReport
from tests.browser.conftest import PASSWORD, LiveSite, screenshot_path, serve_live_site
from tests.conftest import REPO_ROOT, MosquittoProcess
from tests.factories import FIRE_LANE_ZONE, make_registry

pytestmark = pytest.mark.browser

PHONE = ViewportSize(width=390, height=844)
PHOTO = REPO_ROOT.parent / "shared" / "data" / "images" / "street.png"
SECRET = b"story-test-qr-secret-0123456789abc"
BUILDING = "3号楼"
USERS = [
    DevUser(username="desk", password=SecretStr(PASSWORD), role=Role.DISPATCHER),
    DevUser(
        username="firefighter",
        password=SecretStr(PASSWORD),
        role=Role.WORKER,
        department=Department.FIRE_RESCUE,
    ),
    DevUser(
        username="firechief",
        password=SecretStr(PASSWORD),
        role=Role.SUPERVISOR,
        department=Department.FIRE_RESCUE,
    ),
]


@pytest.fixture
def story_site(tmp_path: Path, mosquitto: MosquittoProcess) -> Iterator[LiveSite]:
    """The demo site with its fire lane at 3号楼 (so a report there joins the camera's case),
    and the fire department's worker and supervisor as accounts."""
    registry = make_registry()
    site = registry.sites[0]
    gateway = site.gateways[0]
    camera = gateway.cameras[0]
    zones = [
        zone.model_copy(update={"building": BUILDING}) if zone.id == FIRE_LANE_ZONE else zone
        for zone in camera.zones
    ]
    camera = camera.model_copy(update={"zones": zones})
    sites = [
        site.model_copy(update={"gateways": [gateway.model_copy(update={"cameras": [camera]})]}),
        *registry.sites[1:],
    ]
    config = CivicwatchConfig(
        sites=sites,
        broker=mosquitto.settings,
        server=ServerSettings(
            database_url=f"sqlite:///{tmp_path / 'civicwatch.db'}",
            ingest=IngestSettings(
                client_id=f"ingest-story-{uuid.uuid4().hex[:8]}",
                evidence_dir=tmp_path / "evidence",
            ),
            api=ApiSettings(accounts=AccountSettings(dev_users=USERS)),
        ),
    )
    for live in serve_live_site(config, mosquitto):
        # The server as configured with a QR secret (this config names none).
        app = live.server.app
        app.state.api = dataclasses.replace(app.state.api, qr_secret=SECRET)
        yield live


def _phone(browser: Browser) -> BrowserContext:
    return browser.new_context(
        viewport=PHONE, locale="zh-CN", is_mobile=True, has_touch=True, device_scale_factor=2
    )


def _sign_in(page: Page, site: LiveSite, path: str, username: str) -> None:
    page.goto(f"{site.url}{path}")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    expect(page).to_have_url(f"{site.url}{path}")


def _errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if "Refused" in msg.text else None)
    return errors


def test_a_residents_report_joins_the_camera_case_is_resolved_rated_and_reopened(
    browser: Browser, story_site: LiveSite
) -> None:
    assert PHOTO.is_file(), PHOTO
    site = story_site

    # (a) the camera's case
    # Seen now: a report joins a case seen within the merge window.
    event = site.edge.event(
        zone_id=FIRE_LANE_ZONE, kind=ViolationKind.FIRE_LANE_BLOCKING, at=datetime.now(UTC)
    )
    site.publish(event)
    camera_case = site.case_of(event)
    assert camera_case.department == Department.FIRE_RESCUE.value
    assert camera_case.state == "dispatched"

    # (b) the resident, from the poster at 3号楼, with a real photo
    resident = _phone(browser)
    page = resident.new_page()
    errors = _errors(page)
    token = QrSigner(SECRET).sign(camera_case.site_id, BUILDING, int(time.time()), kid="b3")
    page.goto(f"{site.url}/report?t={token}")
    expect(page.locator("#located")).to_contain_text(BUILDING)
    page.select_option("#category", ViolationKind.FIRE_LANE_BLOCKING.value)
    page.fill("#description", "消防通道被一辆白色轿车堵住了")
    page.set_input_files("#photos", str(PHOTO))
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=screenshot_path("story-report"), full_page=True)
    page.click("#submit")
    expect(page.locator("#tracking-code")).to_have_text(re.compile(r"^[2-9A-HJ-NP-Z]{10}$"))
    code = page.locator("#tracking-code").inner_text()
    tracking_url = page.locator("#tracking-link").get_attribute("href")
    assert tracking_url

    # (c) it joined the camera's case: the dispatcher's API shows one case, with the report
    with site.server.session_factory() as session:
        report = session.scalars(
            select(ResidentReport).where(ResidentReport.tracking_code == code)
        ).one()
        assert (report.case_id, report.joined, report.channel) == (camera_case.id, True, "qr")
        assert (
            len(
                session.scalars(select(ReportPhoto).where(ReportPhoto.report_id == report.id)).all()
            )
            == 1
        )
    desk = browser.new_context()
    desk_page = desk.new_page()
    _sign_in(desk_page, site, "/console", "desk")
    listed = desk_page.request.get(
        f"{site.url}/api/v1/cases?kind={ViolationKind.FIRE_LANE_BLOCKING.value}"
    )
    assert listed.ok, listed.text()
    assert [case["id"] for case in listed.json()] == [camera_case.id]
    timeline = desk_page.request.get(f"{site.url}/api/v1/cases/{camera_case.id}")
    assert timeline.ok
    assert code in timeline.text()  # the report's audit entry names its tracking code
    desk.close()

    # (d) the firefighter accepts and resolves it on the phone
    fire = _phone(browser)
    worker = fire.new_page()
    worker_errors = _errors(worker)
    _sign_in(worker, site, "/worker", "firefighter")
    item = worker.locator(f'#queue .queue-item[data-case-id="{camera_case.id}"]')
    expect(item).to_be_visible()
    item.locator("a").click()
    expect(worker).to_have_url(f"{site.url}/worker/cases/{camera_case.id}")
    worker.click("button.action-accept")
    expect(worker.locator(".worker-case")).to_have_attribute("data-state", "accepted")
    worker.set_input_files("#after-photo", str(PHOTO))
    worker.click("#upload-submit")
    expect(worker.locator('.frame[data-label="after_photo"]')).to_be_visible()
    worker.locator('form[data-action="resolve"] button').click()
    expect(worker.locator(".worker-case")).to_have_attribute("data-state", "resolved")
    assert worker.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    worker.screenshot(path=screenshot_path("story-firefighter"), full_page=True)
    fire.close()
    assert site.case(camera_case.id).state == "resolved"

    # (e) the resident follows the link and is not satisfied
    page.goto(f"{site.url}{tracking_url}")
    expect(page.locator("#state")).to_have_attribute("data-state", "resolved")
    page.get_by_test_id("rating-unsatisfied").check()
    page.get_by_test_id("rating-comment").fill("车还在，消防通道仍然堵着")
    page.screenshot(path=screenshot_path("story-rating"), full_page=True)
    page.get_by_test_id("rating-submit").click()
    expect(page.locator("#rated")).to_have_attribute("data-rating", "dissatisfied")
    page.screenshot(path=screenshot_path("story-rated"), full_page=True)
    assert errors == []
    assert worker_errors == []
    resident.close()

    # (f) back with the fire department's supervisor: reopened, escalation level 1, listed
    reopened = site.case(camera_case.id)
    assert reopened.state not in {"resolved", "closed"}
    assert reopened.department == Department.FIRE_RESCUE.value
    assert reopened.escalation_level == 1
    with site.server.session_factory() as session:
        reopen = session.scalars(
            select(CaseTransition)
            .where(CaseTransition.case_id == camera_case.id, CaseTransition.action == "reopen")
            .order_by(CaseTransition.seq)
        ).all()
        assert len(reopen) == 1
        assert "车还在" in (reopen[0].reason or "")
    chief = browser.new_context()
    chief_page = chief.new_page()
    _sign_in(chief_page, site, "/console", "firechief")
    mine = chief_page.request.get(f"{site.url}/api/v1/cases?state={reopened.state}")
    assert mine.ok, mine.text()
    assert camera_case.id in [case["id"] for case in mine.json()]
    chief.close()
