"""The composed server's scheduler runs the analysis reports: its job makes each due report once
and puts one `analysis.report` row per department webhook into the outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import HttpUrl, SecretStr
from sqlalchemy import select

from civicwatch.config import CivicwatchConfig, ServerSettings
from civicwatch.server import build_server
from dispatch.config import Department
from dispatch.notification_settings import (
    MqttNotificationSettings,
    NotificationSettings,
    WebhookSettings,
)
from dispatch.notifications.reports import REPORT_EVENT
from dispatch.reports.period import Period, last_finished
from dispatch.reports.service import CHECK_SECONDS, DUE_AT
from ingest.config import IngestSettings
from storage.tables import AnalysisReport, Notification
from tests.factories import make_registry, start_from_migrated_template


def test_the_scheduler_job_makes_due_reports_once_and_queues_them_for_the_webhooks(
    tmp_path: Path,
) -> None:
    config = CivicwatchConfig(
        sites=make_registry().sites,
        server=ServerSettings(
            database_url=f"sqlite:///{tmp_path / 'server.db'}",
            ingest=IngestSettings(client_id="ingest-report-test", evidence_dir=tmp_path / "ev"),
            notifications=NotificationSettings(
                webhooks=[
                    WebhookSettings(
                        department=Department.PUBLIC_SECURITY,
                        url=HttpUrl("https://police.example/civicwatch"),
                        secret=SecretStr("police-secret-0001"),
                    )
                ],
                mqtt=MqttNotificationSettings(enabled=False),
            ),
        ),
    )
    start_from_migrated_template(config.server.database_url)
    server = build_server(config)  # built, not started: the job is run by hand below
    job = server.scheduler.get_job("analysis-reports")
    assert job is not None
    assert job.trigger.interval.total_seconds() == CHECK_SECONDS

    job.func()
    job.func()  # nothing is due twice

    with server.session_factory() as session:
        reports = session.scalars(select(AnalysisReport)).all()
        queued = session.scalars(select(Notification)).all()
    # two sites (no street in this config), each its last week and last month, unless it is
    # before 06:00 on the Monday or the 1st that ended it
    due = sorted(
        (site, period.value) for site in ("site-a", "site-b") for period in Period if _due(period)
    )
    assert due
    assert sorted((r.scope_id, r.period) for r in reports) == due
    assert len(queued) == len(due)
    assert {(n.event_type, n.department, n.target, n.status) for n in queued} == {
        (REPORT_EVENT, "public_security", "https://police.example/civicwatch", "pending")
    }
    assert {n.payload["report"]["id"] for n in queued} == {r.id for r in reports}
    server.engine.dispose()


def _due(period: Period) -> bool:
    zone = ZoneInfo("Asia/Shanghai")
    now = datetime.now(UTC)
    local = now.astimezone(zone)
    ended = last_finished(period, now, zone)
    return not (local.date() == ended.next_first_day and local.time() < DUE_AT)
