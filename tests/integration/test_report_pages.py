"""The reports page through the real app (TestClient) on a real database: a dispatcher generates a
report, reads it as stored and downloads its PDF; bad choices come back as one line in the page's
language; a worker is turned away."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from bench.report_seed import STREET, seed_month, seed_registry
from dispatch.accounts import AccountService
from dispatch.config import AccountSettings, ApiSettings
from dispatch.http.app import create_app
from dispatch.http.deps import ApiContext
from dispatch.web.reports_page import REPORT_POLICY
from dispatch.workflow import Workflow
from storage.evidence_store import EvidenceStore
from tests.factories import API_TOKENS, migrated_database


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKENS[who].token.get_secret_value()}"}


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    registry = seed_registry()
    with migrated_database(database_url) as (_engine, sessions):
        seed_month(sessions, registry, date(2026, 5, 1), 300)
        app = create_app(
            ApiContext(
                session_factory=sessions,
                evidence_store=EvidenceStore(tmp_path / "evidence"),
                settings=ApiSettings(tokens=list(API_TOKENS.values())),
                registry=registry,
                metrics_registry=CollectorRegistry(),
                workflow=Workflow(),
                accounts=AccountService(sessions, AccountSettings()),
            )
        )
        with TestClient(app) as test_client:
            yield test_client


def generate(client: TestClient, lang: str = "zh-CN", **form: str) -> httpx.Response:
    fields = {"period": "month", "place": "site:compound-east", "day": "2026-05-10"} | form
    response: httpx.Response = client.post(
        f"/console/reports?lang={lang}",
        data=fields,
        headers=auth("dispatcher"),
        follow_redirects=False,
    )
    return response


def test_a_dispatcher_generates_a_report_reads_it_and_downloads_the_pdf(
    client: TestClient,
) -> None:
    made = generate(client, place=f"street:{STREET}")
    assert made.status_code == 303, made.text
    page = made.headers["location"]
    assert re.fullmatch(r"/console/reports/\d+", page)

    shown = client.get(page, headers=auth("dispatcher"))
    assert shown.status_code == 200
    assert shown.headers["content-security-policy"] == REPORT_POLICY
    assert "鼓楼街道 社情研判月报（2026-05-01 至 2026-05-31）" in shown.text
    assert shown.text.count("data:image/png;base64,") >= 5  # the charts travel inside
    assert "<script" not in shown.text

    pdf = client.get(f"{page}.pdf", headers=auth("dispatcher"))
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert "attachment" in pdf.headers["content-disposition"]
    assert pdf.content.startswith(b"%PDF")

    listed = client.get("/console/reports", headers=auth("dispatcher"))
    assert listed.status_code == 200
    assert f'href="{page}.pdf"' in listed.text


@pytest.mark.parametrize(
    ("form", "zh", "en"),
    [
        ({"period": "fortnight"}, "周期“fortnight”无效", 'Unknown period "fortnight"'),
        ({"place": "street:nowhere"}, "没有小区属于街道“nowhere”", "No compound belongs to"),
        ({"place": "city:x"}, "范围无效", "Unknown kind of place"),
        ({"day": "2026-02-30"}, "不是日期", "is not a date"),
        ({"day": "<script>alert(1)</script>"}, "不是日期", "is not a date"),
        ({"day": date.today().isoformat()}, "尚未结束", "has not ended yet"),
        ({"language": "fr"}, "不支持语言“fr”", 'Unsupported language "fr"'),
    ],
)
def test_a_bad_choice_is_one_line_in_the_page_language(
    client: TestClient, form: dict[str, str], zh: str, en: str
) -> None:
    for lang, words in (("zh-CN", zh), ("en", en)):
        refused = generate(client, lang, **form)
        assert refused.status_code == 400
        found = re.search(
            r'<p id="report-error"[^>]*>(.*?)</p>',
            refused.text,
            re.S,
        )
        assert found is not None
        line = found.group(1)
        assert "\n" not in line
        assert words in line.replace("&#34;", '"').replace("&quot;", '"'), line
        assert "<script>" not in refused.text


def test_a_worker_may_not_read_or_make_reports(client: TestClient) -> None:
    made = generate(client)
    page = made.headers["location"]
    law = auth("law")
    assert client.get("/console/reports", headers=law, follow_redirects=False).status_code == 303
    assert client.get(page, headers=law).status_code == 403
    assert client.get(f"{page}.pdf", headers=law).status_code == 403
    refused = client.post(
        "/console/reports",
        data={"period": "week", "place": "site:compound-east", "day": "2026-05-04"},
        headers=law,
    )
    assert refused.status_code == 403
    assert client.get("/console/reports/99999", headers=auth("dispatcher")).status_code == 404
