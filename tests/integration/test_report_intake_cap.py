"""/report's intakes are capped per process: sixteen residents posting at once through the real
app (TestClient, SQLite, real photos checked by bytes) are all taken in, and no more than
``REPORTS_IN_FLIGHT`` intakes ever run at once (the rest wait in the event loop, not in 40
threads contending for the interpreter)."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from dispatch.config import ApiSettings, ReportRateLimits, ResidentSettings, RoutingSettings
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.residents.intake import IntakeDeps
from dispatch.residents.tiers import ResidentAwareRouter
from dispatch.web.report_page import REPORTS_IN_FLIGHT
from dispatch.workflow import Workflow
from storage.database import SessionFactory
from storage.tables import ResidentReport
from tests.factories import SITE, make_ingest, make_registry, migrated_database

RESIDENTS = 16


@pytest.fixture
def app_and_sessions(tmp_path: Path) -> Iterator[tuple[FastAPI, SessionFactory]]:
    with migrated_database(f"sqlite:///{tmp_path / 'cw.db'}") as (_engine, sessions):
        rig = make_ingest(sessions, tmp_path / "evidence")
        registry = make_registry()
        routing = RoutingSettings()
        settings = ResidentSettings(limits=ReportRateLimits(per_address=1000, per_phone=1000))
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=rig.evidence_store,
                settings=ApiSettings(),
                registry=registry,
                metrics_registry=rig.metrics.registry,
                workflow=Workflow(),
                intake=IntakeDeps(
                    settings=settings,
                    registry=registry,
                    router=ResidentAwareRouter(routing, registry=registry),
                    routing=routing,
                    evidence_store=rig.evidence_store,
                ),
                qr_secret=b"q" * 32,
            )
        )
        yield app, sessions


def _photo(seed: int) -> bytes:
    image = Image.effect_noise((1200, 900), 40 + seed).convert("RGB")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def test_a_burst_is_taken_in_a_few_at_a_time(
    app_and_sessions: tuple[FastAPI, SessionFactory],
) -> None:
    app, sessions = app_and_sessions
    photos = [_photo(seed) for seed in range(3)]
    peak = 0
    done = threading.Event()
    with TestClient(app) as client:
        form = client.get("/report")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token

        def watch() -> None:
            nonlocal peak
            while not done.is_set():
                limiter = getattr(app.state, "report_intake_limiter", None)
                if isinstance(limiter, anyio.CapacityLimiter):
                    peak = max(peak, int(limiter.borrowed_tokens))
                done.wait(0.001)

        def send(number: int) -> int:
            sent = client.post(
                "/report",
                data={
                    "csrf": token.group(1),
                    "category": "garbage",
                    "site_id": SITE,
                    "description": f"bags #{number}",
                },
                files=[
                    ("photos", (f"{n}.jpg", photo, "image/jpeg")) for n, photo in enumerate(photos)
                ],
                follow_redirects=False,
            )
            return int(sent.status_code)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            with ThreadPoolExecutor(RESIDENTS) as pool:
                answers = list(pool.map(send, range(RESIDENTS)))
        finally:
            done.set()
            watcher.join()
    assert answers == [303] * RESIDENTS
    limiter = app.state.report_intake_limiter
    assert limiter.total_tokens == REPORTS_IN_FLIGHT
    assert limiter.borrowed_tokens == 0
    assert 1 <= peak <= REPORTS_IN_FLIGHT, peak
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(ResidentReport)) == RESIDENTS
