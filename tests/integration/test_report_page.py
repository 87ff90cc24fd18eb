"""The resident's /report page, done page and tracking page through the real app (TestClient):
CSRF, refusals in the page's language, photos checked by bytes, public replies only, the
lookup limit and the first-load size."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from dispatch.config import ApiSettings, ReportRateLimits, ResidentSettings, RoutingSettings
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.residents.intake import IntakeDeps
from dispatch.residents.tiers import ResidentAwareRouter
from dispatch.residents.tokens import QrSigner
from dispatch.web.report_page import CSRF_COOKIE
from dispatch.workflow import Workflow
from storage.database import SessionFactory
from storage.tables import Case, CaseTransition, ReportPhoto, ResidentReport
from tests.factories import SITE, make_ingest, make_registry, migrated_database

SECRET = b"q" * 32
CODE = re.compile(r'id="tracking-code">([2-9A-HJ-NP-Z]{10})<')
FIRST_LOAD_BUDGET = 150 * 1024


@dataclass
class Page:
    client: TestClient
    sessions: SessionFactory


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    with migrated_database(f"sqlite:///{tmp_path / 'cw.db'}") as (_engine, sessions):
        rig = make_ingest(sessions, tmp_path / "evidence")
        registry = make_registry()
        routing = RoutingSettings()
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=rig.evidence_store,
                settings=ApiSettings(),
                registry=registry,
                metrics_registry=rig.metrics.registry,
                workflow=Workflow(),
                intake=IntakeDeps(
                    settings=ResidentSettings(),
                    registry=registry,
                    router=ResidentAwareRouter(routing, registry=registry),
                    routing=routing,
                    evidence_store=rig.evidence_store,
                ),
                qr_secret=SECRET,
            )
        )
        with TestClient(app) as client:
            yield Page(client, sessions)


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(out, "JPEG")
    return out.getvalue()


def csrf(page: Page, query: str = "") -> str:
    form = page.client.get(f"/report{query}")
    assert form.status_code == 200
    found = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert found
    assert page.client.cookies.get(CSRF_COOKIE) == found.group(1)
    return found.group(1)


def post(
    page: Page,
    token: str,
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
    query: str = "",
    **fields: str,
) -> httpx.Response:
    data = {"csrf": token, "category": "garbage", "site_id": SITE, "description": "bags"} | fields
    response: httpx.Response = page.client.post(
        f"/report{query}", data=data, files=files or [], follow_redirects=False
    )
    return response


def test_the_form_is_chinese_by_default_and_english_on_request(page: Page) -> None:
    chinese = page.client.get("/report")
    assert "反映问题" in chinese.text
    assert 'value="ebike_charging"' in chinese.text
    english = page.client.get("/report?lang=en")
    assert "Report a problem" in english.text
    assert "E-bike charging indoors" in english.text
    assert 'accept="image/jpeg,image/png"' in english.text
    assert "capture=" in english.text


def test_first_load_stays_under_150_kb_with_no_external_resources(page: Page) -> None:
    html = page.client.get("/report")
    assets = re.findall(r'(?:href|src)="([^"]+\.(?:css|js))"', html.text)
    assert assets == ["/static/report.css", "/static/report.js"]
    assert "http://" not in html.text
    assert "https://" not in html.text
    total = len(html.content) + sum(len(page.client.get(a).content) for a in assets)
    assert total <= FIRST_LOAD_BUDGET, total


def test_a_report_with_a_photo_gets_a_code_and_its_tracking_page(page: Page) -> None:
    token = csrf(page)
    sent = post(
        page,
        token,
        files=[("photos", ("p.jpg", jpeg(), "image/jpeg"))],
        phone="138 1234 1234",
        contact_consent="on",
    )
    assert sent.status_code == 303
    done = page.client.get(sent.headers["location"])
    code = CODE.search(done.text)
    assert code, done.text
    assert f'href="/report/t/{code.group(1)}"' in done.text
    with page.sessions() as session:
        report = session.scalars(select(ResidentReport)).one()
        assert report.tracking_code == code.group(1)
        assert report.channel == "web"
        assert report.contact_consent
        assert report.phone
        photos = session.scalars(select(ReportPhoto).where(ReportPhoto.report_id == report.id))
        assert len(list(photos)) == 1
    track = page.client.get(f"/report/t/{code.group(1)}")
    assert track.status_code == 200
    assert 'data-state="' in track.text
    assert "13812341234" not in track.text
    assert "1234" not in track.text.split("tracking-code")[0]


def test_without_the_csrf_cookie_the_post_is_refused(page: Page) -> None:
    token = csrf(page)
    page.client.cookies.clear()
    refused = post(page, token)
    assert refused.status_code == 403
    assert "表单已过期" in refused.text
    with page.sessions() as session:
        assert session.scalars(select(ResidentReport)).first() is None


def test_a_forged_csrf_field_is_refused(page: Page) -> None:
    csrf(page)
    assert post(page, "forged-token").status_code == 403


def test_a_text_file_named_jpg_is_refused_in_the_pages_language(page: Page) -> None:
    token = csrf(page, "?lang=en")
    refused = post(
        page,
        token,
        files=[("photos", ("p.jpg", b"just text, no picture", "image/jpeg"))],
        query="?lang=en",
    )
    assert refused.status_code == 422
    assert "Photo 1 is not a JPEG or PNG picture." in refused.text
    chinese = post(
        page, csrf(page, "?lang=zh-CN"), files=[("photos", ("p.jpg", b"text", "image/jpeg"))]
    )
    assert chinese.status_code == 422
    assert "Photo 1" not in chinese.text


def test_an_unknown_category_is_refused_not_crashing(page: Page) -> None:
    refused = post(page, csrf(page), category="bogus")
    assert refused.status_code == 422
    assert 'role="alert"' in refused.text


def test_script_in_the_description_is_shown_as_text(page: Page) -> None:
    sent = post(page, csrf(page), description="<script>alert(1)</script>")
    track = page.client.get(sent.headers["location"].replace("/report/done/", "/report/t/"))
    assert "<script>alert(1)</script>" not in track.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in track.text


def test_tracking_shows_public_replies_never_internal_notes(page: Page) -> None:
    # A neighbour dispute is a household matter: closed at once with a public guidance reply.
    sent = post(page, csrf(page), category="neighbour_dispute", description="dog barking")
    code = sent.headers["location"].rsplit("/", 1)[1]
    with page.sessions() as session:
        case = session.scalars(select(Case)).one()
        session.add(
            CaseTransition(
                case_id=case.id,
                from_state=case.state,
                to_state=case.state,
                actor="d",
                reason="SECRET internal note",
                at=case.created_at,
                action="note",
                detail={},
            )
        )
        session.add(
            CaseTransition(
                case_id=case.id,
                from_state=case.state,
                to_state=case.state,
                actor="d",
                reason="NOT PUBLIC reply",
                at=case.created_at,
                action="reply",
                detail={"public": False},
            )
        )
        session.commit()
    track = page.client.get(f"/report/t/{code}")
    assert 'data-state="closed"' in track.text
    assert "已办结" in track.text
    assert 'id="replies"' in track.text
    assert "SECRET" not in track.text
    assert "NOT PUBLIC" not in track.text


def test_an_unknown_code_is_not_found(page: Page) -> None:
    assert page.client.get("/report/t/ABCDEFGHJK").status_code == 404
    assert page.client.get("/report/t/not-a-code").status_code == 404


def test_lookups_are_rate_limited_per_address(page: Page) -> None:
    for _ in range(ReportRateLimits().lookups_per_address):
        assert page.client.get("/report/t/ABCDEFGHJK").status_code == 404
    limited = page.client.get("/report/t/ABCDEFGHJK")
    assert limited.status_code == 429
    assert "Retry-After" in limited.headers


def poster_token(building: str | None = "3号楼", secret: bytes = SECRET) -> str:
    return QrSigner(secret).sign(SITE, building, int(time.time()), kid="poster-7")


def test_a_qr_report_arrives_located_with_its_poster(page: Page) -> None:
    token = poster_token()
    form = page.client.get(f"/report?t={token}")
    assert form.status_code == 200
    assert 'id="located"' in form.text
    assert "3号楼" in form.text
    assert 'id="site"' not in form.text  # the place is locked, not offered
    found = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert found
    assert f'name="t" value="{token}"' in form.text  # the form carries the poster on
    # Whatever site the form claims, the poster's site and building are the report's.
    sent = post(page, found.group(1), t=token, site_id="site-b", building="9号楼")
    assert sent.status_code == 303
    with page.sessions() as session:
        report = session.scalars(select(ResidentReport)).one()
        assert report.channel == "qr"
        assert report.token_id == "poster-7"
        assert report.site_id == SITE
        assert report.building == "3号楼"


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda t: t[:-3] + ("AAA" if not t.endswith("AAA") else "BBB"), "forged"),
        (lambda t: "not-a-token", "garbled"),
        (lambda t: poster_token(secret=b"x" * 32), "forged"),
    ],
)
def test_a_bad_token_is_refused_with_a_reason_and_counted(
    page: Page, mangle: Callable[[str], str], reason: str
) -> None:
    form = page.client.get(f"/report?t={mangle(poster_token())}&lang=en")
    assert form.status_code == 400
    assert 'id="site"' in form.text  # the plain form, so the resident can still report
    assert "QR code" in form.text
    counted = page.client.app.state.api.metrics_registry.get_sample_value(  # type: ignore[attr-defined]
        "civicwatch_qr_token_refusals_total", {"reason": reason}
    )
    assert counted == 1


def test_a_forged_token_on_the_post_writes_nothing(page: Page) -> None:
    forged = poster_token(secret=b"x" * 32)
    refused = post(page, csrf(page), t=forged)
    assert refused.status_code == 400
    with page.sessions() as session:
        assert session.scalars(select(ResidentReport)).first() is None
