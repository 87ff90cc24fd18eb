"""A council member on a phone (Chromium at 390x844) on the real server: signs in and lands on
/council, opens the site's consultation, proposes a resolution, votes for it; the tally shows
the vote against the quorum, in Chinese, and nothing overflows the screen's width.
Screenshot: var/screenshots/council-voted.png."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect
from pydantic import SecretStr
from sqlalchemy import select

from civicwatch.config import CivicwatchConfig, ServerSettings
from contracts.events import ViolationKind
from dispatch.config import AccountSettings, ApiSettings, DevUser, Role
from dispatch.residents.intake import ReportSubmission, submit_report
from ingest.config import IngestSettings
from storage.tables import CaseTransition, Consultation, ConsultationVote
from tests.browser.conftest import PASSWORD, LiveSite, screenshot_path, serve_live_site
from tests.conftest import MosquittoProcess
from tests.factories import SITE, make_registry

if TYPE_CHECKING:
    from playwright.sync_api import Browser

COUNCIL = DevUser(username="council", password=SecretStr(PASSWORD), role=Role.COUNCIL, site_id=SITE)


@pytest.fixture
def council_site(tmp_path: Path, mosquitto: MosquittoProcess) -> Iterator[LiveSite]:
    config = CivicwatchConfig(
        sites=make_registry().sites,
        broker=mosquitto.settings,
        server=ServerSettings(
            database_url=f"sqlite:///{tmp_path / 'council.db'}",
            ingest=IngestSettings(
                client_id=f"ingest-council-{uuid.uuid4().hex[:8]}",
                evidence_dir=tmp_path / "evidence",
            ),
            api=ApiSettings(accounts=AccountSettings(dev_users=[COUNCIL])),
        ),
    )
    yield from serve_live_site(config, mosquitto)


def _consultation(site: LiveSite) -> int:
    intake = site.server.app.state.api.intake
    assert intake is not None
    with site.server.session_factory() as session:
        receipt = submit_report(
            session,
            ReportSubmission(
                category=ViolationKind.GARBAGE,
                site_id=SITE,
                building="1号楼",
                description="<b>垃圾</b>堆在单元门口三天了",
                client_address="198.51.100.9",
            ),
            deps=intake,
        )
        session.commit()
        return session.scalars(
            select(Consultation.id).where(Consultation.case_id == receipt.case_id)
        ).one()


def test_a_council_member_proposes_and_votes_on_a_phone(
    browser: Browser, council_site: LiveSite
) -> None:
    consultation_id = _consultation(council_site)
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if "Refused" in msg.text else None)
    page.goto(f"{council_site.url}/login")
    page.fill("#username", "council")
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    expect(page).to_have_url(f"{council_site.url}/council")
    item = page.locator(f'a[href="/council/{consultation_id}"]')
    expect(item).to_contain_text("垃圾")
    item.click()
    expect(page).to_have_url(f"{council_site.url}/council/{consultation_id}")
    expect(page.locator(".council-facts")).to_contain_text("<b>垃圾</b>堆在单元门口")
    expect(page.locator("#council-left")).to_contain_text("剩余 71 小时")
    page.fill("#council-propose textarea[name=body]", "物业今天清运，并在1号楼张贴告示")
    page.click("#council-propose button[type=submit]")
    proposal = page.locator(".council-post.kind-proposal")
    expect(proposal).to_contain_text("物业今天清运")
    expect(proposal.locator(".council-tally")).to_contain_text("赞成 0")
    proposal.locator("button.vote-for").click()
    expect(page.locator(".council-post.kind-proposal .council-tally")).to_contain_text("赞成 1")
    expect(page.locator(".council-post.kind-proposal .council-quorum")).to_contain_text("3")
    expect(page.locator(".council-post.kind-proposal .council-my-vote")).to_contain_text("赞成")
    expect(page.locator(".council-post.kind-proposal button.vote-for")).to_be_disabled()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide on a 390px phone"
    page.screenshot(path=screenshot_path("council-voted"), full_page=True)
    with council_site.server.session_factory() as session:
        vote = session.scalars(select(ConsultationVote)).one()
        assert (vote.voter, vote.choice) == ("council", "for")
        actions = session.scalars(select(CaseTransition.action)).all()
        assert "consult_propose" in actions
        assert "consult_vote" in actions
    assert not errors, errors
