"""The resident's /report page in Chromium at a phone's size (390x844) on the real server: a
real street photo sent with the report, the tracking code shown and its page opened; a text
file named .jpg refused in the page's language; script in the description shown as text.
Screenshots: var/screenshots/resident-*.png."""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from dispatch.residents.tokens import QrSigner
from storage.tables import ReportPhoto, ResidentReport
from tests.browser.conftest import LiveSite, screenshot_path
from tests.conftest import REPO_ROOT

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ViewportSize

PHOTO = REPO_ROOT.parent / "shared" / "data" / "images" / "street.png"  # e-bikes on a pavement
SECRET = b"browser-test-qr-secret-0123456789"
PHONE: ViewportSize = {"width": 390, "height": 844}


def test_a_resident_reports_from_a_qr_poster_with_a_real_photo_and_follows_it(
    browser: Browser, live_site: LiveSite
) -> None:
    assert PHOTO.is_file(), PHOTO
    page = browser.new_page(viewport=PHONE)
    errors: list[str] = []
    # Script errors and anything the security policy refused (the favicon's 404 is no error).
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if "Refused" in msg.text else None)
    # The server as configured with a QR secret (the live config names none).
    app = live_site.server.app
    app.state.api = dataclasses.replace(app.state.api, qr_secret=SECRET)
    site = live_site.server.app.state.api.registry.sites[0].id
    token = QrSigner(SECRET).sign(site, "3号楼", int(time.time()), kid="poster-b3")
    page.goto(f"{live_site.url}/report?t={token}")
    assert page.locator("h1").inner_text() == "反映问题"
    assert "3号楼" in page.locator("#located").inner_text()
    # Nothing overflows the phone's width (no sideways scrolling).
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.select_option("#category", "ebike_charging")
    page.fill("#description", "<script>alert(1)</script> 楼道里充电")
    page.set_input_files("#photos", str(PHOTO))
    page.screenshot(path=screenshot_path("resident-form"), full_page=True)
    page.click("#submit")
    page.wait_for_selector("#tracking-code")
    code = page.locator("#tracking-code").inner_text()
    assert re.fullmatch(r"[2-9A-HJ-NP-Z]{10}", code)
    page.screenshot(path=screenshot_path("resident-done"), full_page=True)
    page.click("#tracking-link")
    page.wait_for_selector("#state")
    assert page.locator("#tracking-code").inner_text() == code
    # The script arrived as text: shown, never run.
    assert "<script>alert(1)</script>" in page.locator("#description").inner_text()
    page.screenshot(path=screenshot_path("resident-track"), full_page=True)
    with live_site.server.session_factory() as session:
        report = session.scalars(
            select(ResidentReport).where(ResidentReport.tracking_code == code)
        ).one()
        assert report.category == "ebike_charging"
        assert (report.channel, report.token_id, report.building) == ("qr", "poster-b3", "3号楼")
        stored = session.scalars(select(ReportPhoto).where(ReportPhoto.report_id == report.id))
        assert len(list(stored)) == 1
    assert errors == []
    page.close()


def test_a_text_file_named_jpg_is_refused_in_english(
    browser: Browser, live_site: LiveSite, tmp_path: Path
) -> None:
    fake = tmp_path / "photo.jpg"
    fake.write_text("this is not a picture")
    page = browser.new_page(viewport=PHONE)
    page.goto(f"{live_site.url}/report?lang=en")
    page.fill("#description", "rubbish bags")
    page.set_input_files("#photos", str(fake))
    page.click("#submit")
    page.wait_for_selector("#report-error")
    assert page.locator("#report-error").inner_text() == "Photo 1 is not a JPEG or PNG picture."
    # What the resident typed is kept for another try.
    assert page.locator("#description").input_value() == "rubbish bags"
    with live_site.server.session_factory() as session:
        assert session.scalars(select(ResidentReport)).first() is None
    page.close()
