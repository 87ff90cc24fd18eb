"""Open311 GeoReport v2 POST requests.json over the real app, a real SQLite database and the
real residents' intake: the spec's fields and answer, its error shape and statuses, the
service_notice's language, integration keys (CLI included) and hostile input."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from civicwatch.cli import main
from civicwatch.exit_codes import EXIT_ACCOUNT
from dispatch.config import ApiSettings, ReportRateLimits, ResidentSettings, RoutingSettings
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.residents.intake import IntakeDeps
from dispatch.residents.integrations import (
    add_integration,
    list_integrations,
    revoke_integration,
    verify_key,
)
from dispatch.residents.tiers import ResidentAwareRouter
from dispatch.workflow import Workflow
from storage.database import SessionFactory
from storage.evidence_store import EvidenceStore
from storage.tables import Case, IntegrationKey, ResidentReport
from tests.factories import API_TOKENS, SITE, make_registry, migrated_database

REPO_ROOT = Path(__file__).resolve().parents[2]
URL = "/open311/v2/requests.json"
PHONE = "13812341234"


@dataclass
class Rig:
    client: TestClient
    sessions: SessionFactory
    key: str

    def post(self, lang: str | None = None, **fields: Any) -> Response:
        form: dict[str, Any] = {
            "api_key": self.key,
            "service_code": "ebike_charging",
            "attribute[site_id]": SITE,
            "attribute[building]": "5号楼",
            "lat": "30.27",
            "long": "120.15",
            "description": "e-bikes charging in the corridor",
        } | fields
        form = {name: value for name, value in form.items() if value is not None}
        params = {"lang": lang} if lang else None
        response: Response = self.client.post(URL, data=form, params=params)
        return response


def _error(response: Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, list)
    assert len(body) == 1
    assert set(body[0]) == {"code", "description"}
    assert body[0]["code"] == status
    assert body[0]["description"]
    return str(body[0]["description"])


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with migrated_database(f"sqlite:///{tmp_path / 'post.db'}") as (_engine, sessions):
        registry = make_registry()
        routing = RoutingSettings()
        settings = ResidentSettings(limits=ReportRateLimits(per_address=4, per_phone=50))
        intake = IntakeDeps(
            settings=settings,
            registry=registry,
            router=ResidentAwareRouter(routing, registry=registry),
            routing=routing,
            evidence_store=EvidenceStore(tmp_path / "evidence"),
        )
        with sessions() as session:
            key = add_integration(session, "city-12345")
            session.commit()
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=intake.evidence_store,
                settings=ApiSettings(tokens=list(API_TOKENS.values())),
                registry=registry,
                metrics_registry=CollectorRegistry(),
                workflow=Workflow(),
                intake=intake,
                residents=settings,
            )
        )
        with TestClient(app) as client:
            yield Rig(client, sessions, key)


def test_post_files_a_routed_report_and_answers_in_the_specs_shape(rig: Rig) -> None:
    response = rig.post(
        phone=PHONE,
        media_url="https://city.example/photo/1.jpg",
        account_id="acct-7",
        email="someone@example.com",
        first_name="Li",
        last_name="Wei",
        device_id="dev-1",
        **{"attribute[unit]": "2单元", "attribute[contact_consent]": "true"},
    )
    assert response.status_code == 201, response.text
    [created] = response.json()
    assert set(created) == {"service_request_id", "service_notice", "account_id"}
    code = created["service_request_id"]
    assert len(code) == 10
    assert created["account_id"] == "acct-7"
    assert "消防救援" in created["service_notice"]
    assert code in created["service_notice"]
    with rig.sessions() as session:
        report = session.scalars(select(ResidentReport)).one()
        assert report.tracking_code == code
        assert (report.channel, report.submitted_by) == ("open311", "city-12345")
        assert (report.phone, report.contact_consent) == (PHONE, True)
        assert (report.building, report.unit) == ("5号楼", "2单元")
        assert "media_url: https://city.example/photo/1.jpg" in report.description
        assert "someone@example.com" not in report.description  # accepted, never stored
        case = session.get(Case, report.case_id)
        assert case is not None
        assert (case.source, case.department, case.state) == (
            "open311",
            "fire_rescue",
            "dispatched",
        )

    # The tracking code reads back as the case, without the reporter's phone.
    token = API_TOKENS["dispatcher"].token.get_secret_value()
    read = rig.client.get(
        f"/open311/v2/requests/{code}.json", headers={"Authorization": f"Bearer {token}"}
    )
    assert read.status_code == 200, read.text
    assert read.json()[0]["service_code"] == "ebike_charging"
    assert "：" not in read.json()[0]["description"]  # no empty camera and zone names
    assert read.json()[0]["address_id"] == SITE
    assert PHONE not in read.text
    assert "1234" not in read.text.replace(str(case.id), "")

    # A second report of the same problem joins the case; the notice says so, in English here.
    again = rig.post(lang="en", phone="13912345678")
    assert again.status_code == 201, again.text
    notice = again.json()[0]["service_notice"]
    assert notice.startswith("Report ")
    assert f"joined case {case.id}" in notice


def test_every_refusal_is_the_specs_error_list_with_the_right_status(rig: Rig) -> None:
    assert "api_key" in _error(rig.post(api_key=None), 400)
    assert "service_code" in _error(rig.post(service_code=None), 400)
    _error(rig.post(api_key="cw311_" + "x" * 43), 403)
    _error(rig.post(api_key="not even a key"), 403)
    assert "parking_on_the_moon" in _error(rig.post(service_code="parking_on_the_moon"), 404)
    _error(rig.post(lat=None, long=None), 400)  # no location at all
    _error(rig.post(long=None), 400)  # half a point
    _error(rig.post(lat="91"), 400)
    _error(rig.post(**{"attribute[site_id]": None}), 400)
    _error(rig.post(**{"attribute[site_id]": "nowhere"}), 400)
    _error(rig.post(media_url="file:///etc/passwd"), 400)
    _error(rig.post(phone="call me maybe"), 400)
    _error(rig.post(description="x" * 30_000), 400)
    _error(rig.post(description="nul \x00 inside"), 400)
    _error(rig.post(description="", media_url=None), 400)  # says nothing
    english = _error(rig.post(lang="en", api_key="wrong"), 403)
    assert english == "api_key is unknown or revoked"
    assert _error(rig.post(api_key="wrong"), 403) == "api_key 无效或已吊销"
    with rig.sessions() as session:
        assert session.scalars(select(ResidentReport)).all() == []


def test_script_in_text_is_stored_as_text_and_never_echoed(rig: Rig) -> None:
    script = "<script>alert(1)</script>"
    response = rig.post(description=script, **{"attribute[unit]": "<b>1</b>"})
    assert response.status_code == 201, response.text
    assert "<script" not in response.text
    with rig.sessions() as session:
        assert session.scalars(select(ResidentReport.description)).one() == script


def test_a_revoked_key_is_refused_and_a_flood_gets_429_with_retry_after(rig: Rig) -> None:
    for n in range(4):  # per_address = 4: the integration is the address
        assert rig.post(service_code="garbage", description=f"bin {n}").status_code == 201
    flood = rig.post(service_code="garbage", description="one more")
    _error(flood, 429)
    assert int(flood.headers["Retry-After"]) > 0
    with rig.sessions() as session:
        revoke_integration(session, "city-12345")
        session.commit()
    _error(rig.post(), 403)
    with rig.sessions() as session:
        assert verify_key(session, rig.key) is None
        row = session.get(IntegrationKey, "city-12345")
        assert row is not None
        assert rig.key not in row.key_sha256


def test_cli_adds_lists_and_revokes_integrations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    database = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("CIVICWATCH_DATABASE_URL", database)
    config = ["--config", str(REPO_ROOT / "configs" / "example.yaml")]
    assert main(["integrations", "add", "city-hotline", *config]) == 0
    key = capsys.readouterr().out.splitlines()[-1]
    assert main(["integrations", "add", "city-hotline", *config]) == EXIT_ACCOUNT
    assert main(["integrations", "add", "Bad Name!", *config]) == EXIT_ACCOUNT
    assert main(["integrations", "revoke", "ghost", *config]) == EXIT_ACCOUNT
    err = capsys.readouterr().err
    assert "exists" in err
    assert "no integration named 'ghost'" in err
    with migrated_database(database) as (_engine, sessions), sessions() as session:
        assert verify_key(session, key) == "city-hotline"
    assert main(["integrations", "revoke", "city-hotline", *config]) == 0
    capsys.readouterr()
    assert main(["integrations", "list", *config]) == 0
    assert capsys.readouterr().out.startswith("city-hotline\trevoked\t")
    with migrated_database(database) as (_engine, sessions), sessions() as session:
        assert verify_key(session, key) is None
        assert [i.name for i in list_integrations(session)] == ["city-hotline"]
