"""The joint report counts the warning stage (先提醒后执法): warnings issued, warned and
complied, still there and sent to the department, and gateway silent, on the report's page, its
PDF and the headline the departments' webhooks carry. Real ingest, SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from contracts.events import Phase, WarningNotice
from dispatch.reports.period import Period, Scope
from dispatch.reports.service import ReportRequest, ReportService
from dispatch.warning_stage import WarningTimeouts
from storage.tables import utcnow
from tests.factories import SITE, EventFactory, IngestRig, make_ingest, migrated_database

GRACE = timedelta(minutes=5)


@pytest.fixture
def ingest(database_url: str, tmp_path: Path) -> Iterator[IngestRig]:
    with migrated_database(database_url) as (_engine, sessions):
        yield make_ingest(sessions, tmp_path / "evidence")


def warn(ingest: IngestRig, then: Phase | None) -> None:
    """One warned item, then ``then`` (complied, opened after the grace, or nothing)."""
    at = utcnow() - timedelta(hours=1)
    notice = WarningNotice(rule_id="warn", warned_at=at, grace_until=at + GRACE, announced=True)
    factory = EventFactory()
    warned = factory.event(Phase.WARNED, frames=1, at=at, warning=notice)
    events = [warned]
    if then is Phase.COMPLIED:
        events.append(factory.event(then, warned.violation_id, frames=1, at=at + GRACE / 2))
    elif then is Phase.OPENED:
        events.append(
            factory.event(then, warned.violation_id, frames=1, at=at + GRACE, warning=notice)
        )
    for event in events:
        ack = ingest.handler.handle(factory.topic, event.to_wire())
        assert ack is not None
        assert ack.outcome.value == "stored", ack


def pdf_text(pdf: bytes, folder: Path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext missing: run deploy/system-deps.sh")
    source = folder / "report.pdf"
    source.write_bytes(pdf)
    return subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(source), "-"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


def test_the_report_counts_warnings_issued_complied_escalated_and_silent(
    ingest: IngestRig, tmp_path: Path
) -> None:
    for then in (Phase.COMPLIED, Phase.COMPLIED, Phase.OPENED, None):
        warn(ingest, then)
    silent = WarningTimeouts(ingest.session_factory, timedelta(minutes=1), CollectorRegistry())
    assert silent.run() == 1
    now = utcnow()
    service = ReportService(
        ingest.session_factory, ingest.registry, clock=lambda: now + timedelta(days=40)
    )
    for language, words in (
        ("en", ["Warnings issued", "Warned, complied", "Gateway never reported back"]),
        ("zh-CN", ["发出提醒", "提醒后已驶离", "提醒后网关未回报"]),
    ):
        made = service.generate(
            ReportRequest(Period.MONTH, Scope.SITE, SITE, now.date(), language), "test"
        )
        w = made.figures.warnings
        assert (w.issued, w.complied, w.escalated, w.gateway_silent) == (4, 2, 1, 1)
        assert w.complied_share == pytest.approx(2 / 3)
        assert {key: made.headline[f"warnings_{key}"] for key in ("issued", "complied")} == {
            "issued": 4,
            "complied": 2,
        }
        assert made.headline["warnings_escalated"] == 1
        assert made.headline["warnings_gateway_silent"] == 1
        table = made.html.split('<table id="warnings">')[1].split("</table>")[0]
        assert [cell.split("<")[0] for cell in table.split('class="num">')[1:]] == [
            "4",
            "2",
            "1",
            "1",
            "66.7%",
        ]
        in_pdf = pdf_text(made.pdf, tmp_path).replace(" ", "").replace("\n", "")
        for word in words:
            assert word in table
            assert word.replace(" ", "") in in_pdf


def test_a_compliance_reported_after_the_timeout_counts_as_complied(ingest: IngestRig) -> None:
    at = utcnow() - timedelta(hours=1)
    notice = WarningNotice(rule_id="warn", warned_at=at, grace_until=at + GRACE, announced=True)
    factory = EventFactory()
    items = [factory.event(Phase.WARNED, frames=1, at=at, warning=notice) for _ in range(2)]
    for event in items:
        assert ingest.handler.handle(factory.topic, event.to_wire()) is not None
    silent = WarningTimeouts(ingest.session_factory, timedelta(minutes=1), CollectorRegistry())
    assert silent.run() == 2
    late = factory.event(
        Phase.COMPLIED, items[0].violation_id, frames=1, at=at + GRACE / 2, warning=notice
    )
    ack = ingest.handler.handle(factory.topic, late.to_wire())
    assert ack is not None
    assert ack.outcome.value == "stored", ack
    now = utcnow()
    service = ReportService(
        ingest.session_factory, ingest.registry, clock=lambda: now + timedelta(days=40)
    )
    made = service.generate(ReportRequest(Period.MONTH, Scope.SITE, SITE, now.date(), "en"), "test")
    w = made.figures.warnings
    assert (w.issued, w.complied, w.escalated, w.gateway_silent) == (2, 1, 0, 2)
