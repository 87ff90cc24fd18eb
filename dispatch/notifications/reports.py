"""The analysis report's delivery: one outbox row per department webhook, so the report reaches
each department with the same retries and signatures as a case event.

The payload carries the period, the place, the headline figures and links to the report; the
report itself (HTML, PDF) stays on the server behind sign-in. Every configured webhook gets it:
the report is the departments' joint one. (``WebhookSettings.events`` has no member for it yet,
so an endpoint cannot opt out; see docs/reports.md.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from dispatch.notification_settings import NotificationSettings
from dispatch.notifications.outbox import Channel, Now, pending_notification
from storage.database import SessionFactory
from storage.tables import utcnow

REPORT_EVENT = "analysis.report"


@dataclass(frozen=True)
class ReportNotice:
    """What the departments are told about one stored report."""

    report_id: int
    period: str
    scope: str
    scope_id: str
    place_name: str
    first_day: date
    last_day: date
    language: str
    generated_at: datetime
    headline: dict[str, Any]


def report_payload(notice: ReportNotice, settings: NotificationSettings) -> dict[str, Any]:
    base = str(settings.public_url).rstrip("/")
    page = f"{base}/console/reports/{notice.report_id}"
    return {
        "event": REPORT_EVENT,
        "report": {
            "id": notice.report_id,
            "period": notice.period,
            "scope": notice.scope,
            "scope_id": notice.scope_id,
            "place": notice.place_name,
            "first_day": notice.first_day.isoformat(),
            "last_day": notice.last_day.isoformat(),
            "language": notice.language,
            "generated_at": notice.generated_at.isoformat(),
            "headline": notice.headline,
            "url": page,
            "pdf_url": f"{page}.pdf",
        },
    }


def enqueue_report(
    sessions: SessionFactory,
    settings: NotificationSettings,
    notice: ReportNotice,
    clock: Now = utcnow,
) -> int:
    """Write one pending outbox row per webhook; the sender delivers them. Returns the rows."""
    now = clock()
    payload = report_payload(notice, settings)
    rows = [
        pending_notification(
            channel=Channel.WEBHOOK,
            department=hook.department.value,
            target=str(hook.url),
            event_type=REPORT_EVENT,
            case_id=None,
            payload=payload,
            now=now,
        )
        for hook in settings.webhooks
    ]
    if rows:
        with sessions.begin() as session:
            session.add_all(rows)
    return len(rows)
