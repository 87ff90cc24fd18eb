"""One real app with every way a resident's report comes in: /report (and its QR posters),
Open311 POST requests.json, the hotline form and the tracking page; a real SQLite database and
evidence store; tight report limits so floods are cheap to provoke. Shared by
test_report_refusal_metrics.py and test_resident_hostile.py."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from dispatch.config import (
    ApiSettings,
    PhotoLimits,
    ReportRateLimits,
    ResidentSettings,
    RoutingSettings,
)
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.residents.intake import IntakeDeps
from dispatch.residents.integrations import add_integration
from dispatch.residents.tiers import ResidentAwareRouter
from dispatch.residents.tokens import QrSigner
from dispatch.workflow import Workflow
from storage.database import SessionFactory
from storage.evidence_store import EvidenceStore
from storage.tables import Case, CaseEvidence, ReportPhoto, ResidentReport
from tests.factories import API_TOKENS, SITE, make_registry, migrated_database

SECRET = b"h" * 32
LIMITS = ReportRateLimits(per_address=3, per_phone=2, per_token=2)
PHOTO_BYTES = 64 * 1024  # a small cap so "over the cap" is a small upload
PHOTO_PIXELS = 4_000_000
CSRF_VALUE = re.compile(r'name="csrf" value="([^"]+)"')
OPEN311 = "/open311/v2/requests.json"
HOTLINE = "/console/hotline"
REFUSALS = "civicwatch_report_refusals_total"


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKENS[who].token.get_secret_value()}"}


def jpeg(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(out, "JPEG")
    return out.getvalue()


def poster_token(building: str | None = "3号楼", secret: bytes = SECRET, at: int = 0) -> str:
    return QrSigner(secret).sign(SITE, building, at or int(time.time()), kid="poster-9")


@dataclass(frozen=True)
class Stored:
    """What a refusal must leave untouched."""

    reports: int
    photos: int
    evidence_rows: int
    cases: int
    files: int


@dataclass
class ResidentRig:
    client: TestClient
    sessions: SessionFactory
    metrics: CollectorRegistry
    evidence_dir: Path
    key: str

    # --- the four doors ------------------------------------------------------------------

    def csrf(self, query: str = "") -> str:
        form = self.client.get(f"/report{query}")
        found = CSRF_VALUE.search(form.text)
        assert found, form.text
        return found.group(1)

    def web(
        self,
        files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
        query: str = "",
        **fields: str,
    ) -> httpx.Response:
        data = {
            "csrf": self.csrf(query),
            "category": "garbage",
            "site_id": SITE,
            "description": "bags by the door",
        } | fields
        response: httpx.Response = self.client.post(
            f"/report{query}", data=data, files=files or [], follow_redirects=False
        )
        return response

    def open311(self, **fields: Any) -> httpx.Response:
        form: dict[str, Any] = {
            "api_key": self.key,
            "service_code": "garbage",
            "attribute[site_id]": SITE,
            "lat": "30.27",
            "long": "120.15",
            "description": "bags by the door",
        } | fields
        form = {name: value for name, value in form.items() if value is not None}
        response: httpx.Response = self.client.post(OPEN311, data=form)
        return response

    def hotline(self, **fields: Any) -> httpx.Response:
        call: dict[str, Any] = {
            "category": "garbage",
            "site_id": SITE,
            "description": "bags by the door",
        } | fields
        response: httpx.Response = self.client.post(HOTLINE, json=call, headers=auth("dispatcher"))
        return response

    # --- what they leave -----------------------------------------------------------------

    def stored(self) -> Stored:
        with self.sessions() as session:
            reports = session.scalar(select(func.count()).select_from(ResidentReport)) or 0
            photos = session.scalar(select(func.count()).select_from(ReportPhoto)) or 0
            rows = session.scalar(select(func.count()).select_from(CaseEvidence)) or 0
            cases = session.scalar(select(func.count()).select_from(Case)) or 0
        files = sum(1 for path in self.evidence_dir.rglob("*") if path.is_file())
        return Stored(reports, photos, rows, cases, files)

    def refusals(self, channel: str, code: str) -> float:
        value = self.metrics.get_sample_value(REFUSALS, {"channel": channel, "code": code})
        return value or 0.0

    def qr_refusals(self, reason: str) -> float:
        value = self.metrics.get_sample_value(
            "civicwatch_qr_token_refusals_total", {"reason": reason}
        )
        return value or 0.0


def resident_rig(tmp_path: Path) -> Iterator[ResidentRig]:
    """The rig, for a fixture to ``yield from``."""
    with migrated_database(f"sqlite:///{tmp_path / 'residents.db'}") as (_engine, sessions):
        registry = make_registry()
        routing = RoutingSettings()
        settings = ResidentSettings(
            limits=LIMITS, photos=PhotoLimits(max_bytes=PHOTO_BYTES, max_pixels=PHOTO_PIXELS)
        )
        evidence_dir = tmp_path / "evidence"
        intake = IntakeDeps(
            settings=settings,
            registry=registry,
            router=ResidentAwareRouter(routing, registry=registry),
            routing=routing,
            evidence_store=EvidenceStore(evidence_dir),
        )
        with sessions() as session:
            key = add_integration(session, "city-12345")
            session.commit()
        metrics = CollectorRegistry()
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=intake.evidence_store,
                settings=ApiSettings(tokens=list(API_TOKENS.values())),
                registry=registry,
                metrics_registry=metrics,
                workflow=Workflow(),
                intake=intake,
                residents=settings,
                qr_secret=SECRET,
            )
        )
        with TestClient(app) as client:
            yield ResidentRig(client, sessions, metrics, evidence_dir, key)
