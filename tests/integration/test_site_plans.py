"""Site plans through the real app (TestClient) on a real database: an admin uploads a plan image
and puts cameras on it; everybody else is refused; a case's place reads both."""

from __future__ import annotations

import hashlib
import io
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import SecretStr
from sqlalchemy import Engine, select

from contracts.events import ViolationKind
from contracts.sites import SiteRegistry
from dispatch.accounts import AccountService
from dispatch.config import AccountSettings, ApiSettings, Role
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.web.settings import WebOptions
from dispatch.workflow import Workflow
from storage.database import SessionFactory
from storage.evidence_retention import EvidenceRetention
from storage.evidence_store import EvidenceStore
from storage.tables import CameraPlacement, Case, EvidenceDeletion, SitePlanImage, utcnow
from tests.factories import (
    API_TOKENS,
    CAMERA,
    FIRE_LANE_ZONE,
    SITE,
    EventFactory,
    make_ingest,
    migrated_database,
)

LIMIT = 256 * 1024
ADMIN = API_TOKENS["dispatcher"].model_copy(
    update={"name": "plan-admin", "token": SecretStr("admin-token-000001"), "role": Role.ADMIN}
)
TOKENS = {"admin": ADMIN, "dispatcher": API_TOKENS["dispatcher"], "fire": API_TOKENS["fire"]}


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who].token.get_secret_value()}"}


@dataclass
class Site:
    client: TestClient
    store: EvidenceStore
    sessions: SessionFactory
    fire_case: int


def _registry(registry: SiteRegistry) -> SiteRegistry:
    site = registry.sites[0]
    camera = site.gateways[0].cameras[0]
    zones = [z.model_copy(update={"building": "3号楼", "name": "消防通道"}) for z in camera.zones]
    gateway = site.gateways[0].model_copy(
        update={"cameras": [camera.model_copy(update={"zones": zones})]}
    )
    site = site.model_copy(
        update={
            "gateways": [gateway],
            "name": "示范小区",
            "address": "杭州市西湖区文三路 100 号",
            "lat": 30.28,
            "long": 120.13,
        }
    )
    return SiteRegistry(sites=[site, *registry.sites[1:]])


@pytest.fixture
def site(database_url: str, tmp_path: Path) -> Iterator[Site]:
    with migrated_database(database_url) as (_engine, sessions):
        rig = make_ingest(sessions, tmp_path / "evidence")
        rig.service.store(
            EventFactory().event(zone_id=FIRE_LANE_ZONE, kind=ViolationKind.FIRE_LANE_BLOCKING)
        )
        with sessions() as session:
            fire_case = session.scalars(select(Case.id)).one()
        accounts = AccountService(sessions, AccountSettings())
        accounts.create_user("plans", "plan-admin-password-1", Role.ADMIN)
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=rig.evidence_store,
                settings=ApiSettings(tokens=list(TOKENS.values())),
                registry=_registry(rig.registry),
                metrics_registry=rig.metrics.registry,
                workflow=Workflow(),
                web=WebOptions(attachment_max_bytes=LIMIT),
                accounts=accounts,
            )
        )
        with TestClient(app) as client:
            yield Site(client, rig.evidence_store, sessions, fire_case)


def image_bytes(fmt: str, size: tuple[int, int] = (300, 180)) -> bytes:
    image = Image.new("RGB", size, (235, 238, 242))
    for x in range(20, size[0] - 20, 60):  # buildings, so the encoder has something to keep
        image.paste((120, 130, 150), (x, 40, x + 40, 120))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def upload(
    site: Site, who: str, data: bytes, name: str = "plan.png", site_id: str = SITE
) -> httpx.Response:
    response: httpx.Response = site.client.put(
        f"/api/v1/sites/{site_id}/plan", headers=auth(who), files={"file": (name, data)}
    )
    return response


@pytest.mark.parametrize(("fmt", "media_type"), [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_admin_uploads_a_plan_that_is_reencoded_stored_and_served_by_its_bytes(
    site: Site, fmt: str, media_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    original = image_bytes(fmt) + b"<script>trailing payload</script>"
    with caplog.at_level(logging.INFO, logger="dispatch.web.plan_pages"):
        response = upload(site, "admin", original, name="plan.txt")  # the name says nothing
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["content_type"], body["width"], body["height"]) == (media_type, 300, 180)
    stored = site.store.read(body["sha256"])
    assert hashlib.sha256(stored).hexdigest() == body["sha256"]
    assert b"trailing payload" not in stored  # re-encoded: only Pillow's pixels are kept
    assert "site plan of site-a uploaded by plan-admin" in caplog.text

    served = site.client.get(f"/console/plans/{SITE}", headers=auth("fire"))
    assert served.status_code == 200
    assert served.headers["content-type"] == media_type
    assert served.content == stored
    again = site.client.get(
        f"/console/plans/{SITE}", headers={**auth("fire"), "If-None-Match": served.headers["etag"]}
    )
    assert again.status_code == 304
    with site.sessions() as session:
        row = session.get(SitePlanImage, SITE)
        assert row is not None
        assert (row.uploaded_by, row.content_type) == ("plan-admin", media_type)


def test_a_second_upload_replaces_the_plan(site: Site) -> None:
    first = upload(site, "admin", image_bytes("PNG")).json()
    second = upload(site, "admin", image_bytes("JPEG", (200, 100))).json()
    assert first["sha256"] != second["sha256"]
    served = site.client.get(f"/console/plans/{SITE}", headers=auth("admin"))
    assert served.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"<html><script>alert(1)</script></html>", 415),  # not an image at all
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, 415),  # a PNG magic number and nothing behind it
        (image_bytes("PNG")[:200], 415),  # cut short: the header is fine, the pixels are not
        (image_bytes("GIF"), 415),  # an image, but not one we take
        (b"", 415),
    ],
)
def test_what_is_not_a_whole_jpeg_or_png_is_refused(site: Site, data: bytes, code: int) -> None:
    response = upload(site, "admin", data)
    assert response.status_code == code, response.text
    assert response.json()["detail"]
    with site.sessions() as session:
        assert session.get(SitePlanImage, SITE) is None


def test_an_oversized_plan_is_refused_before_it_is_stored(site: Site) -> None:
    big = image_bytes("PNG") + b"\x00" * (LIMIT + 1)
    response = upload(site, "admin", big)
    assert response.status_code == 413
    with site.sessions() as session:
        assert session.get(SitePlanImage, SITE) is None


def test_a_pixel_bomb_is_refused(site: Site) -> None:
    # A small file that claims 10000 x 10000 pixels (a blank image compresses to almost nothing).
    buffer = io.BytesIO()
    Image.new("1", (10000, 10000)).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < LIMIT
    response = upload(site, "admin", buffer.getvalue())
    assert response.status_code == 415
    assert "pixels" in response.json()["detail"]


@pytest.mark.parametrize("who", ["dispatcher", "fire"])
def test_only_an_admin_uploads_or_places(site: Site, who: str) -> None:
    assert upload(site, who, image_bytes("PNG")).status_code == 403
    placed = site.client.put(
        f"/api/v1/cameras/{CAMERA}/placement", headers=auth(who), json={"x": 0.5, "y": 0.5}
    )
    assert placed.status_code == 403
    assert (
        site.client.get("/admin/plans", headers=auth(who), follow_redirects=False).status_code
        == 303
    )


def test_unknown_site_or_camera_is_404(site: Site) -> None:
    assert upload(site, "admin", image_bytes("PNG"), site_id="nowhere").status_code == 404
    response = site.client.put(
        "/api/v1/cameras/nope/placement", headers=auth("admin"), json={"x": 0.5, "y": 0.5}
    )
    assert response.status_code == 404
    assert site.client.get("/console/plans/nowhere", headers=auth("admin")).status_code == 404
    # No upload and no config image: nothing to serve.
    assert site.client.get(f"/console/plans/{SITE}", headers=auth("admin")).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"x": 1.5, "y": 0.5},
        {"x": -0.1, "y": 0.5},
        {"x": 0.5},
        {"x": 0.5, "y": 0.5, "z": 1},
        {"x": "NaN", "y": 0.5},
    ],
)
def test_a_placement_off_the_plan_is_refused(site: Site, body: dict[str, object]) -> None:
    response = site.client.put(
        f"/api/v1/cameras/{CAMERA}/placement", headers=auth("admin"), json=body
    )
    assert response.status_code == 422


def test_placement_moves_the_dot_and_the_cases_place(site: Site) -> None:
    response = site.client.put(
        f"/api/v1/cameras/{CAMERA}/placement", headers=auth("admin"), json={"x": 0.25, "y": 0.75}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "camera_id": CAMERA,
        "site_id": SITE,
        "x": 0.25,
        "y": 0.75,
        "placed_by": "plan-admin",
    }
    with site.sessions() as session:
        row = session.get(CameraPlacement, CAMERA)
        assert row is not None
        assert (row.x, row.y) == (0.25, 0.75)
    page = site.client.get("/admin/plans", headers=auth("admin"))
    assert page.status_code == 200
    assert f'data-camera-id="{CAMERA}"' in page.text
    assert 'cx="250.0" cy="450.0"' in page.text  # 0.25 x 1000, 0.75 x 600
    assert "3号楼" in page.text  # no image: the building is drawn from the config

    removed = site.client.delete(f"/api/v1/cameras/{CAMERA}/placement", headers=auth("admin"))
    assert removed.status_code == 204
    with site.sessions() as session:
        assert session.get(CameraPlacement, CAMERA) is None


def test_openapi_lists_the_plan_routes(site: Site) -> None:
    paths = site.client.get("/openapi.json").json()["paths"]
    assert "put" in paths["/api/v1/sites/{site_id}/plan"]
    assert {"put", "delete"} <= set(paths["/api/v1/cameras/{camera_id}/placement"])


def test_a_signed_in_admins_upload_needs_the_csrf_header(site: Site) -> None:
    """A form another site posts carries the admin's cookie but never the header."""
    login = site.client.post(
        "/api/v1/auth/login", json={"username": "plans", "password": "plan-admin-password-1"}
    )
    assert login.status_code == 200, login.text
    files = {"file": ("plan.png", image_bytes("PNG"))}
    forged = site.client.put(f"/api/v1/sites/{SITE}/plan", files=files)
    assert forged.status_code == 403
    moved = site.client.put(f"/api/v1/cameras/{CAMERA}/placement", json={"x": 0.1, "y": 0.1})
    assert moved.status_code == 403
    with site.sessions() as session:
        assert session.get(SitePlanImage, SITE) is None
        assert session.get(CameraPlacement, CAMERA) is None
    sent = site.client.put(
        f"/api/v1/sites/{SITE}/plan", files=files, headers={"X-Requested-With": "civicwatch"}
    )
    assert sent.status_code == 200, sent.text


def test_a_plan_uploaded_while_retention_removes_the_same_image_keeps_its_bytes(
    site: Site,
) -> None:
    """The same image, queued for deletion (its earlier row gone), uploaded again as the plan
    while the retention job is paused between its re-check and the removal of those bytes
    (its ``on_remove`` seam): the upload waits for the job (storage.evidence_guard) and then
    writes the bytes anew. Without the lock the upload found the old file (put is a no-op),
    committed its row in the window, and the job then deleted the bytes the row names."""
    data = image_bytes("PNG")
    first = upload(site, "admin", data).json()["sha256"]
    upload(site, "admin", image_bytes("JPEG", (200, 100)))  # replaced: no row names it now
    with site.sessions() as session:  # as the retention job's first step queues a removed image
        session.add(EvidenceDeletion(sha256=first, queued_at=utcnow()))
        session.commit()
        engine = session.get_bind()
    assert isinstance(engine, Engine)
    paused, resume = threading.Event(), threading.Event()

    def pause(sha256: str) -> None:
        if sha256 == first:
            paused.set()
            assert resume.wait(30), "the test never resumed the job"

    job = EvidenceRetention(site.sessions, engine, site.store, None, packs=False, on_remove=pause)
    errors: list[BaseException] = []
    answers: list[httpx.Response] = []

    def remove() -> None:
        try:
            job.delete_bytes()
        except BaseException as exc:  # raised again below
            errors.append(exc)

    remover = threading.Thread(target=remove, daemon=True)
    remover.start()
    assert paused.wait(30), "the job never reached the image's bytes"
    uploader = threading.Thread(target=lambda: answers.append(upload(site, "admin", data)))
    uploader.daemon = True
    uploader.start()
    uploader.join(1.0)
    uploaded_in_window = not uploader.is_alive()
    resume.set()
    remover.join(30)
    uploader.join(30)
    assert not errors
    assert answers
    assert answers[0].status_code == 200, answers[0].text

    assert answers[0].json()["sha256"] == first
    assert (
        site.store.read(first)
        == site.client.get(f"/console/plans/{SITE}", headers=auth("admin")).content
    )
    assert not uploaded_in_window, "the plan's row committed while its bytes were being removed"
