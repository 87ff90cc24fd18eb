"""The console and worker pages, stats and after-photo upload through the real app (TestClient)
over a real database holding cases ingested from generated events (tests/factories.py)."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from contracts.events import ViolationKind
from contracts.sites import PlanPosition, SiteRegistry
from contracts.stats import percentile
from dispatch.accounts import AccountService
from dispatch.config import AccountSettings, ApiSettings, Department, Role
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.web.settings import WebOptions
from dispatch.web.stats import StatsCache, compute_stats
from dispatch.workflow import Action, Command, Workflow, system_actor
from storage.tables import CameraStatusRow, Case, CaseEvidence, CaseTransition, Evidence
from tests.factories import (
    API_TOKENS,
    FIRE_LANE_ZONE,
    EventFactory,
    IngestRig,
    make_ingest,
    make_registry,
    migrated_database,
)

TOKENS = {who: API_TOKENS[who] for who in ("dispatcher", "law", "fire")}
UPLOAD_LIMIT = 64 * 1024


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who].token.get_secret_value()}"}


@dataclass
class Site:
    client: TestClient
    rig: IngestRig
    parking_id: int  # routed to law enforcement
    fire_id: int  # routed to fire and rescue


@contextmanager
def serve(
    database_url: str, tmp_path: Path, registry: SiteRegistry | None = None
) -> Iterator[Site]:
    with migrated_database(database_url) as (_engine, sessions):
        rig = make_ingest(sessions, tmp_path / "evidence")
        edge = EventFactory()
        rig.service.store(edge.event())
        rig.service.store(edge.event(zone_id=FIRE_LANE_ZONE, kind=ViolationKind.FIRE_LANE_BLOCKING))
        with sessions() as session:
            ids = {case.kind: case.id for case in session.scalars(select(Case))}
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=rig.evidence_store,
                settings=ApiSettings(tokens=list(TOKENS.values())),
                registry=registry or rig.registry,
                metrics_registry=rig.metrics.registry,
                workflow=Workflow(),
                web=WebOptions(attachment_max_bytes=UPLOAD_LIMIT),
                accounts=AccountService(sessions, AccountSettings()),
            )
        )
        with TestClient(app) as client:
            yield Site(client, rig, ids["illegal_parking"], ids["fire_lane_blocking"])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """The pages on SQLite."""
    with serve(f"sqlite:///{tmp_path / 'civicwatch.db'}", tmp_path) as served:
        yield served


@pytest.fixture
def any_site(database_url: str, tmp_path: Path) -> Iterator[Site]:
    """On SQLite and PostgreSQL: for the aggregate SQL and the upload, which must work on both."""
    with serve(database_url, tmp_path) as served:
        yield served


def jpeg(width: int = 40, height: int = 30, colour: tuple[int, int, int] = (10, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def png(width: int = 20, height: int = 10) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (0, 200, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


# --- sign-in and language ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/console", "/worker", "/console/cases/1", "/worker/cases/1", "/"]
)
def test_a_page_without_a_session_sends_you_to_login(site: Site, path: str) -> None:
    response = site.client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={path.replace('/', '%2F')}"


def test_the_api_still_answers_401_not_a_redirect(site: Site) -> None:
    assert site.client.get("/api/v1/stats").status_code == 401
    assert site.client.get("/api/v1/feed").status_code == 401


def test_pages_default_to_simplified_chinese(site: Site) -> None:
    page = site.client.get("/login")
    assert page.status_code == 200
    assert '<html lang="zh-CN">' in page.text
    assert "登录" in page.text
    console = site.client.get("/console", headers=auth("dispatcher")).text
    assert "指挥调度台" in console
    assert "违法停车" in console
    assert "占用消防通道" in console
    assert "已派遣" in console
    assert "illegal_parking" not in re.sub(r'"[^"]*"', "", console.split("<script")[0])


def test_lang_switch_sets_a_cookie_that_sticks(site: Site) -> None:
    client = site.client
    page = client.get("/login?lang=en")
    assert '<html lang="en">' in page.text
    assert "Sign in" in page.text
    assert "cw_lang=en" in page.headers["set-cookie"]
    again = client.get("/console", headers=auth("dispatcher"))  # the cookie, no query
    assert '<html lang="en">' in again.text
    assert "Illegal parking" in again.text
    assert "Dispatch console" in again.text
    back = client.get("/console?lang=zh-CN", headers=auth("dispatcher"))
    assert "违法停车" in back.text


def test_accept_language_does_not_pick_the_language(site: Site) -> None:
    """Chinese by default, as the README promises, even on a browser set up in English."""
    page = site.client.get("/login", headers={"Accept-Language": "en-GB,en;q=0.8"})
    assert '<html lang="zh-CN">' in page.text


def test_login_with_the_cookie_opens_the_console(site: Site) -> None:
    accounts = site.client.app.state.api.accounts  # type: ignore[attr-defined]
    accounts.create_user("desk01", "a-long-password-1", Role.DISPATCHER)
    response = site.client.post(
        "/api/v1/auth/login", json={"username": "desk01", "password": "a-long-password-1"}
    )
    assert response.status_code == 200
    page = site.client.get("/console")
    assert page.status_code == 200
    assert "desk01" in page.text


# --- roles and scope --------------------------------------------------------------------------


def test_worker_sees_only_their_departments_queue(site: Site) -> None:
    page = site.client.get("/worker", headers=auth("law"))
    assert page.status_code == 200
    assert f'data-case-id="{site.parking_id}"' in page.text
    assert f'data-case-id="{site.fire_id}"' not in page.text
    assert "综合行政执法" in page.text


def test_another_departments_case_page_is_not_found(site: Site) -> None:
    for path in (f"/worker/cases/{site.fire_id}", f"/console/cases/{site.fire_id}/panel"):
        assert site.client.get(path, headers=auth("law")).status_code == 404


def test_a_worker_opening_the_console_goes_to_the_worker_view(site: Site) -> None:
    response = site.client.get("/console", headers=auth("law"), follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/worker"
    response = site.client.get("/worker", headers=auth("dispatcher"), follow_redirects=False)
    assert response.headers["location"] == "/console"


def test_console_lists_both_departments_cases_and_the_sla_board(site: Site) -> None:
    page = site.client.get("/console", headers=auth("dispatcher")).text
    board = page.split('id="sla"')[1].split("</ol>")[0]
    # The fire lane's 30-minute SLA comes before parking's 120 minutes.
    assert board.index(f'data-case-id="{site.fire_id}"') < board.index(
        f'data-case-id="{site.parking_id}"'
    )
    assert "30分钟内到期" in board  # the fire lane case is due within 30 minutes
    assert 'class="camera-dot health-unknown"' in page


def test_the_panel_draws_nothing_over_frames_the_edge_burnt_the_box_into(site: Site) -> None:
    """The edge burns the zone and box in; an overlay sat a caption band's height off them."""
    panel = site.client.get(
        f"/console/cases/{site.parking_id}/panel", headers=auth("dispatcher")
    ).text
    assert 'class="frame-open"' in panel  # the frames are there, opening the lightbox
    assert "<polygon" not in panel
    assert '<rect class="box"' not in panel
    assert 'data-action="transfer"' in panel  # dispatched: the dispatcher may transfer it
    assert 'data-action="accept"' not in panel  # that is the department's
    assert "登记" in panel
    assert "派遣" in panel


def test_times_show_in_the_sites_time_zone(site: Site) -> None:
    with site.rig.session_factory() as session:
        case = session.get(Case, site.parking_id)
        assert case is not None
        case.ack_due_at = datetime(2026, 5, 4, 23, 30, tzinfo=UTC)  # 07:30 next day in Shanghai
        session.commit()
    panel = site.client.get(f"/console/cases/{site.parking_id}/panel", headers=auth("dispatcher"))
    assert "2026-05-05 07:30" in panel.text


# --- after-photo upload -----------------------------------------------------------------------


def _accept(site: Site, case_id: int, who: str = "law") -> None:
    response = site.client.post(
        f"/api/v1/cases/{case_id}/actions", json={"action": "accept"}, headers=auth(who)
    )
    assert response.status_code == 200, response.text


def test_after_photo_is_stored_linked_and_audited(any_site: Site) -> None:
    _accept(any_site, any_site.parking_id)
    data = jpeg()
    response = any_site.client.post(
        f"/api/v1/cases/{any_site.parking_id}/attachments",
        files={"file": ("after.jpg", data, "image/jpeg")},
        headers=auth("law"),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    sha256 = hashlib.sha256(data).hexdigest()
    assert body["sha256"] == sha256
    assert body["label"] == "after_photo"
    assert (body["width"], body["height"]) == (40, 30)
    assert any_site.rig.evidence_store.read(sha256) == data
    with any_site.rig.session_factory() as session:
        link = session.scalars(select(CaseEvidence).where(CaseEvidence.sha256 == sha256)).one()
        assert (link.case_id, link.label) == (any_site.parking_id, "after_photo")
        entry = session.scalars(
            select(CaseTransition).order_by(CaseTransition.seq.desc()).limit(1)
        ).one()
        assert entry.action == "attach"
        assert entry.detail["sha256"] == sha256
    image = any_site.client.get(f"/api/v1/evidence/{sha256}", headers=auth("law"))
    assert image.status_code == 200
    assert image.content == data
    page = any_site.client.get(f"/worker/cases/{any_site.parking_id}", headers=auth("law")).text
    assert "处置后照片" in page


def test_a_png_after_photo_is_accepted_with_its_size(site: Site) -> None:
    _accept(site, site.parking_id)
    response = site.client.post(
        f"/api/v1/cases/{site.parking_id}/attachments",
        files={"file": ("after.png", png(), "image/png")},
        headers=auth("law"),
    )
    assert response.status_code == 201, response.text
    assert (response.json()["width"], response.json()["height"]) == (20, 10)


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (b"GIF89a" + b"\0" * 100, 415, "only JPEG and PNG"),
        (b"", 415, "empty"),
        (b"\xff\xd8\xff" + b"\0" * (UPLOAD_LIMIT), 413, "larger than"),
        (b"\xff\xd8\xff\xe0\x00\x10garbage-without-a-frame", 415, "JPEG"),
    ],
)
def test_bad_uploads_are_refused_and_nothing_is_stored(
    site: Site, data: bytes, status: int, reason: str
) -> None:
    _accept(site, site.parking_id)
    with site.rig.session_factory() as session:
        before = (
            len(session.scalars(select(Evidence)).all()),
            len(session.scalars(select(CaseTransition)).all()),
        )
    response = site.client.post(
        f"/api/v1/cases/{site.parking_id}/attachments",
        files={"file": ("x.bin", data, "application/octet-stream")},
        headers=auth("law"),
    )
    assert response.status_code == status
    assert reason in response.json()["detail"]
    with site.rig.session_factory() as session:
        after = (
            len(session.scalars(select(Evidence)).all()),
            len(session.scalars(select(CaseTransition)).all()),
        )
    assert after == before
    refused = site.client.get("/metrics").text
    assert "civicwatch_attachments_refused_total" in refused


def test_upload_rules_follow_the_workflow_and_the_department(site: Site) -> None:
    files = {"file": ("after.jpg", jpeg(), "image/jpeg")}
    url = f"/api/v1/cases/{site.parking_id}/attachments"
    assert site.client.post(url, files=files, headers=auth("fire")).status_code == 404
    assert site.client.post(url, files=files, headers=auth("dispatcher")).status_code == 403
    # Not accepted yet: an after-photo belongs to a case being handled.
    assert site.client.post(url, files=files, headers=auth("law")).status_code == 409
    _accept(site, site.parking_id)
    assert site.client.post(url, files=files, headers=auth("law")).status_code == 201
    again = site.client.post(url, files=files, headers=auth("law"))
    assert again.status_code == 409
    assert "already" in again.json()["detail"]


def test_cookie_uploads_need_the_csrf_header(site: Site) -> None:
    accounts = site.client.app.state.api.accounts  # type: ignore[attr-defined]
    accounts.create_user("officer01", "a-long-password-2", Role.WORKER, Department.LAW_ENFORCEMENT)
    login = site.client.post(
        "/api/v1/auth/login", json={"username": "officer01", "password": "a-long-password-2"}
    )
    assert login.status_code == 200
    url = f"/api/v1/cases/{site.parking_id}/actions"
    assert site.client.post(url, json={"action": "accept"}).status_code == 403
    headers = {"X-Requested-With": "civicwatch"}
    assert site.client.post(url, json={"action": "accept"}, headers=headers).status_code == 200
    upload = f"/api/v1/cases/{site.parking_id}/attachments"
    files = {"file": ("after.jpg", jpeg(), "image/jpeg")}
    assert site.client.post(upload, files=files).status_code == 403
    assert site.client.post(upload, files=files, headers=headers).status_code == 201


# --- stats ------------------------------------------------------------------------------------


def test_stats_are_scoped_to_the_department(any_site: Site) -> None:
    everything = any_site.client.get("/api/v1/stats", headers=auth("dispatcher")).json()
    assert everything["per_kind"] == {"illegal_parking": 1, "fire_lane_blocking": 1}
    assert sum(day["cases"] for day in everything["days"]) == 2
    assert len(everything["days"]) == 14
    mine = any_site.client.get("/api/v1/stats", headers=auth("law")).json()
    assert mine["per_department"] == {"law_enforcement": 1}
    assert mine["per_kind"] == {"illegal_parking": 1}
    charts = any_site.client.get("/console", headers=auth("dispatcher")).text.split("charts-card")[
        1
    ]
    assert charts.count('<svg class="chart"') == 3  # per day, department, kind; nothing closed
    assert "违法停车</text>" in charts
    assert "消防救援</text>" in charts


def test_time_to_close_and_days_in_the_site_time_zone(any_site: Site) -> None:
    sessions = any_site.rig.session_factory
    now = datetime(2026, 5, 10, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
    with sessions() as session:
        parking = session.get(Case, any_site.parking_id)
        fire = session.get(Case, any_site.fire_id)
        assert parking is not None
        assert fire is not None
        # 23:30 UTC on the 8th is 07:30 on the 9th in Shanghai: it counts on the 9th.
        parking.created_at = datetime(2026, 5, 8, 23, 30, tzinfo=UTC)
        parking.closed_at = parking.created_at + timedelta(minutes=90)
        fire.created_at = datetime(2026, 5, 8, 15, 0, tzinfo=UTC)  # 23:00 on the 8th
        fire.closed_at = fire.created_at + timedelta(minutes=20)
        session.commit()
        stats = compute_stats(session, None, "Asia/Shanghai", now)
    counts = {day.day.isoformat(): day.cases for day in stats.days}
    assert counts["2026-05-09"] == 1
    assert counts["2026-05-08"] == 1
    assert stats.days[-1].day.isoformat() == "2026-05-10"
    by_kind = {row.key: row for row in stats.close_time_by_kind}
    assert by_kind["illegal_parking"].median_minutes == 90.0
    assert by_kind["fire_lane_blocking"].p90_minutes == 20.0


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.5) == 0.0
    assert percentile([5.0], 0.9) == 5.0
    assert percentile([float(n) for n in range(1, 11)], 0.5) == 5.0
    assert percentile([float(n) for n in range(1, 11)], 0.9) == 9.0


def test_escalated_and_overdue_cases_are_marked_on_the_board(any_site: Site) -> None:
    with any_site.rig.session_factory() as session:
        case = session.get(Case, any_site.parking_id)
        assert case is not None
        case.sla_due_at = datetime.now(UTC) - timedelta(minutes=5)
        case.overdue = True
        Workflow().apply(
            session,
            case,
            Command(Action.ESCALATE, detail={"level": 1}),
            system_actor("sla"),
        )
        session.commit()
    board = any_site.client.get("/console/fragments/sla", headers=auth("dispatcher")).text
    item = board.split(f'data-case-id="{any_site.parking_id}"')[0].rsplit("<li", 1)[1]
    assert "overdue" in item
    assert "已升级至主管" in board
    assert "已超时" in board


def test_camera_health_on_the_site_plan_image(tmp_path: Path) -> None:
    plan = tmp_path / "plan.png"
    plan.write_bytes(png(200, 120))
    registry = make_registry()
    site = registry.sites[0]
    gateway = site.gateways[0]
    camera = gateway.cameras[0].model_copy(update={"plan_position": PlanPosition(x=0.25, y=0.5)})
    placed = site.model_copy(
        update={
            "plan_image": str(plan),
            "gateways": [gateway.model_copy(update={"cameras": [camera]})],
        }
    )
    registry = SiteRegistry(sites=[placed, *registry.sites[1:]])
    with serve(f"sqlite:///{tmp_path / 'plan.db'}", tmp_path, registry) as served:
        now = datetime.now(UTC)
        with served.rig.session_factory() as session:
            session.add(
                CameraStatusRow(
                    camera_id=camera.id,
                    site_id=site.id,
                    gateway_id=gateway.id,
                    health="offline",
                    at=now,
                    received_at=now,
                    problems=["offline"],
                )
            )
            session.commit()
        page = served.client.get("/console", headers=auth("dispatcher")).text
        plan_svg = page.split(f'data-site-id="{site.id}"')[1].split("</figure>")[0]
        assert f'<image href="/console/plans/{site.id}"' in plan_svg
        dot = plan_svg.split(f'data-camera-id="{camera.id}"')[0].rsplit("<g", 1)[1]
        assert "health-offline" in dot
        assert '<circle cx="250.0" cy="300.0"' in plan_svg  # 0.25 and 0.5 of 1000 x 600
        assert "离线" in plan_svg
        assert "无画面" in plan_svg
        image = served.client.get(f"/console/plans/{site.id}", headers=auth("dispatcher"))
        assert image.status_code == 200
        assert image.content == plan.read_bytes()
        assert image.headers["content-type"] == "image/png"
        assert (
            served.client.get("/console/plans/site-b", headers=auth("dispatcher")).status_code
            == 404
        )
        # site-b has no plan position for its camera: listed beside the plan instead.
        other = page.split('data-site-id="site-b"')[1].split("</figure>")[0]
        assert 'class="unplaced"' in other


def test_stats_are_cached_for_their_max_age(tmp_path: Path) -> None:
    """Charts cost a scan: within max_age a second ask is served from the cache; after it, the
    figures are counted again (a real SQLite database with real ingested cases)."""
    now = [0.0]
    cache = StatsCache(max_age_seconds=15, clock=lambda: now[0])
    with migrated_database(f"sqlite:///{tmp_path}/db.sqlite") as (_engine, sessions):
        rig = make_ingest(sessions, tmp_path / "evidence")
        events = EventFactory()
        rig.service.store(events.event())
        with sessions() as session:
            first = cache.get(session, None, "Asia/Shanghai")
            assert sum(first.per_kind.values()) == 1
            rig.service.store(
                events.event(kind=ViolationKind.FIRE_LANE_BLOCKING, zone_id=FIRE_LANE_ZONE)
            )
            now[0] = 14.0
            assert cache.get(session, None, "Asia/Shanghai") is first
            now[0] = 15.5
            recounted = cache.get(session, None, "Asia/Shanghai")
            assert sum(recounted.per_kind.values()) == 2
            assert recounted.computed_at >= first.computed_at
            scoped = cache.get(session, "fire_rescue", "Asia/Shanghai")
            assert scoped is not recounted  # a department's figures are kept apart


def test_an_upload_declared_too_large_is_refused_before_its_body_is_read(site: Site) -> None:
    """The size guard answers from Content-Length; the route never runs, nothing is stored."""
    _accept(site, site.parking_id)
    with site.rig.session_factory() as session:
        before = len(session.scalars(select(Evidence)).all())
    huge = b"\xff\xd8\xff" + b"\0" * (UPLOAD_LIMIT + 128 * 1024)
    response = site.client.post(
        f"/api/v1/cases/{site.parking_id}/attachments",
        files={"file": ("huge.jpg", huge, "image/jpeg")},
        headers=auth("law"),
    )
    assert response.status_code == 413
    assert f"at most {UPLOAD_LIMIT} bytes" in response.json()["detail"]
    with site.rig.session_factory() as session:
        assert len(session.scalars(select(Evidence)).all()) == before
    metrics = site.client.get("/metrics").text
    assert 'civicwatch_attachments_refused_total{reason="too_large"} 1.0' in metrics
