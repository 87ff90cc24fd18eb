"""The reports page uses the configured plate confidence floor (ApiContext, from
server.exemptions.plate_confidence_floor), not the default: on the same month, a floor above
the seeded readings (0.95) leaves the page with no repeat plates. SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from bench.report_seed import seed_month, seed_registry
from contracts.exemptions import DEFAULT_PLATE_CONFIDENCE_FLOOR
from contracts.sites import SiteRegistry
from dispatch.config import ApiSettings
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.workflow import Workflow
from storage.database import SessionFactory
from storage.evidence_store import EvidenceStore
from tests.factories import API_TOKENS, migrated_database

DISPATCHER = {"Authorization": f"Bearer {API_TOKENS['dispatcher'].token.get_secret_value()}"}


def repeat_plate_rows(
    sessions: SessionFactory, registry: SiteRegistry, tmp_path: Path, floor: float
) -> int:
    app = create_app(
        ApiContext(
            session_factory=sessions,
            evidence_store=EvidenceStore(tmp_path / "evidence"),
            settings=ApiSettings(tokens=list(API_TOKENS.values())),
            registry=registry,
            metrics_registry=CollectorRegistry(),
            workflow=Workflow(),
            plate_confidence_floor=floor,
        )
    )
    with TestClient(app) as client:
        made = client.post(
            "/console/reports?lang=en",
            data={"period": "month", "place": "site:compound-east", "day": "2026-05-10"},
            headers=DISPATCHER,
            follow_redirects=False,
        )
        assert made.status_code == 303, made.text
        shown = client.get(made.headers["location"], headers=DISPATCHER)
    table = re.search(r'<table id="repeat-plates">(.*?)</table>', shown.text, re.S)
    assert table is not None
    return table.group(1).count('href="/console/cases/')


def test_a_floor_above_the_readings_leaves_no_repeat_plates(
    database_url: str, tmp_path: Path
) -> None:
    registry = seed_registry()
    with migrated_database(database_url) as (_engine, sessions):
        seed_month(sessions, registry, date(2026, 5, 1), 300)
        default = repeat_plate_rows(sessions, registry, tmp_path, DEFAULT_PLATE_CONFIDENCE_FLOOR)
        strict = repeat_plate_rows(sessions, registry, tmp_path, 0.99)
    assert default > 0
    assert strict == 0
