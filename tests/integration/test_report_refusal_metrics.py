"""civicwatch_report_refusals_total{channel, code}: every refused resident's report is counted
once, with the channel it came by (web, qr, hotline, open311, and the tracking page's lookups
as ``tracking``) and its ``report_*`` code, on the app's own registry (/metrics shows it);
an accepted report counts nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from dispatch.config import ReportRateLimits
from dispatch.http.app import create_app
from dispatch.residents.refusals import refusal_counter
from tests.integration.resident_rig import (
    REFUSALS,
    ResidentRig,
    auth,
    poster_token,
    resident_rig,
)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ResidentRig]:
    yield from resident_rig(tmp_path)


def test_each_channel_counts_its_refusals_by_code(rig: ResidentRig) -> None:
    fake = [("photos", ("p.jpg", b"%PDF-1.7 not a picture", "image/jpeg"))]
    assert rig.web(files=fake).status_code == 422
    assert rig.refusals("web", "report_photo_type") == 1
    assert rig.web(files=fake).status_code == 422
    assert rig.refusals("web", "report_photo_type") == 2

    qr = rig.web(t=poster_token(), description="")  # nothing said, no photo
    assert qr.status_code == 422
    assert rig.refusals("qr", "report_empty") == 1

    assert rig.open311(phone="call me maybe").status_code == 400
    assert rig.refusals("open311", "report_bad_phone") == 1

    hotline = rig.hotline(phone="call me")
    assert hotline.status_code == 422
    assert hotline.json()["code"] == "report_bad_phone"
    assert rig.refusals("hotline", "report_bad_phone") == 1
    assert rig.refusals("web", "report_bad_phone") == 0  # the channel is the report's own


def test_refusals_before_the_intake_are_counted_too(rig: ResidentRig) -> None:
    """A forged form, a bad poster token, a wrong integration key, a malformed body: refused
    before any report exists, and counted like the intake's own refusals."""
    assert rig.web(csrf="forged").status_code == 403
    assert rig.refusals("web", "report_csrf") == 1
    assert rig.web(t="not-a-token").status_code == 400
    assert rig.refusals("qr", "report_bad_token") == 1
    assert rig.web(category="x" * 65).status_code == 422  # over the form field's limit
    assert rig.refusals("web", "report_invalid_form") == 1

    assert rig.open311(api_key="wrong").status_code == 403
    assert rig.refusals("open311", "report_bad_key") == 1
    assert rig.open311(service_code="unicorns").status_code == 404
    assert rig.refusals("open311", "report_unknown_service") == 1
    assert rig.open311(lat="30.1", long=None).status_code == 400
    assert rig.refusals("open311", "report_half_point") == 1
    assert rig.open311(api_key=None).status_code == 400  # a required field missing
    assert rig.refusals("open311", "report_invalid_form") == 1

    malformed = rig.client.post(
        "/console/hotline",
        content=b'{"category": "garbage", ',
        headers={**auth("dispatcher"), "Content-Type": "application/json"},
    )
    assert malformed.status_code == 422
    assert rig.refusals("hotline", "report_invalid_form") == 1
    assert rig.stored().reports == 0


def test_an_accepted_report_counts_nothing(rig: ResidentRig) -> None:
    assert rig.web().status_code == 303
    assert rig.open311().status_code == 201
    assert rig.hotline().status_code == 200
    for channel in ("web", "qr", "hotline", "open311", "tracking"):
        for code in ("report_empty", "report_rate_limited", "report_bad_phone"):
            assert rig.refusals(channel, code) == 0


def test_the_tracking_pages_lookup_limit_is_counted(rig: ResidentRig) -> None:
    for _ in range(ReportRateLimits().lookups_per_address):
        assert rig.client.get("/report/t/ABCDEFGHJK").status_code == 404
    assert rig.refusals("tracking", "report_rate_limited") == 0
    limited = rig.client.get("/report/t/ABCDEFGHJK")
    assert limited.status_code == 429
    assert rig.refusals("tracking", "report_rate_limited") == 1
    assert rig.client.get("/report/done/ABCDEFGHJK").status_code == 429
    assert rig.refusals("tracking", "report_rate_limited") == 2


def test_the_lookup_limit_holds_across_api_workers(rig: ResidentRig) -> None:
    """Two apps on one database, as `civicwatch api --workers 2` runs them: the tracking
    lookups of one address count against one limit, whichever worker answers."""
    context = rig.client.app.state.api  # type: ignore[attr-defined]
    second = create_app(replace(context, metrics_registry=CollectorRegistry()))
    limit = ReportRateLimits().lookups_per_address
    with TestClient(second) as other:
        for n in range(limit):
            client = rig.client if n % 2 else other
            assert client.get("/report/t/ABCDEFGHJK").status_code == 404
        assert rig.client.get("/report/t/ABCDEFGHJK").status_code == 429
        limited = other.get("/report/t/ABCDEFGHJK")
        assert limited.status_code == 429
        assert 0 < int(limited.headers["Retry-After"]) <= 600


def test_floods_are_counted_per_channel_and_metrics_shows_them(rig: ResidentRig) -> None:
    for n in range(3):  # per_address = 3
        assert rig.open311(description=f"bin {n}").status_code == 201
    assert rig.open311(description="one more").status_code == 429
    assert rig.refusals("open311", "report_rate_limited") == 1
    text = rig.client.get("/metrics", headers=auth("dispatcher")).text
    assert f'{REFUSALS}{{channel="open311",code="report_rate_limited"}} 1.0' in text


def test_a_second_app_on_the_same_registry_counts_apart_instead_of_failing() -> None:
    registry = CollectorRegistry()
    first = refusal_counter(registry)
    second = refusal_counter(registry)
    second.labels(channel="web", code="report_empty").inc()
    assert first is not second
    assert registry.get_sample_value(REFUSALS, {"channel": "web", "code": "report_empty"}) is None
    first.labels(channel="web", code="report_empty").inc()
    assert registry.get_sample_value(REFUSALS, {"channel": "web", "code": "report_empty"}) == 1
