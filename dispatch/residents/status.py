"""Status messages to residents through an SMS or messaging gateway (server.residents.
status_webhook_url), by the notification outbox.

``ResidentStatusPump`` tails the audit log (its own ``audit_cursors`` row, like the departments'
Notifier: the rows and the cursor move in one transaction) and, for each change a resident
cares about (dispatched, accepted, resolved, closed, a public reply, reopened, mediation), queues
one ``notifications`` row (event ``report.status``, department ``resident``) per report on the
case whose resident gave a phone AND agreed to be contacted. The stored payload carries no
phone: ``ResidentGateway.deliver`` (the sender's delivery for department ``resident``) reads the
number when it sends, so the outbox, its API and its logs never hold it; the gateway gets
``{tracking_code, state, message_zh, message_en, phone, tracking_url}``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.notifications.outbox import (
    Channel,
    DeliveryError,
    Now,
    pending_notification,
    post_json,
)
from dispatch.residents.codes import tracking_path
from dispatch.web.i18n import translator
from storage.audit import pump_all
from storage.database import SessionFactory
from storage.tables import (
    Case,
    CaseTransition,
    Notification,
    ResidentReport,
    utcnow,
)

log = logging.getLogger(__name__)

CURSOR_NAME = "resident-status"
RESIDENT_DEPARTMENT = "resident"  # the outbox rows' department: nobody's department
STATUS_EVENT = "report.status"
REPLY_CHARS = 300  # a public reply quoted in the message, at most
# audit action -> the state the resident is told
_STATE_OF_ACTION = {
    "dispatch": "dispatched",
    "accept": "accepted",
    "resolve": "resolved",
    "verify": "closed",
    "close": "closed",
    "reply": "reply",
    "reopen": "reopened",
    "mediate": "mediation",
}


def status_message(language: str, state: str, code: str, reply: str = "") -> str:
    t = translator(language)
    return t(f"resident_status.{state}", code=code, reply=reply[:REPLY_CHARS])


class ResidentStatusPump:
    """Audit log -> outbox rows for residents' gateway. Safe to run from several processes."""

    def __init__(
        self,
        session_factory: SessionFactory,
        webhook_url: str,
        public_url: str,
        clock: Now = utcnow,
        batch_size: int = 500,
    ) -> None:
        self._sessions = session_factory
        self._url = webhook_url
        self._public = public_url.rstrip("/")
        self._clock = clock
        self._batch_size = batch_size

    def pump_all(self) -> int:
        """Pump batch after batch until the log is drained; returns the rows written. The first
        run only places the cursor at the chain's head: history is not sent."""
        return pump_all(self._sessions, CURSOR_NAME, self._batch_size, self._rows_for)

    def _rows_for(self, session: Session, entries: Sequence[CaseTransition]) -> list[Notification]:
        wanted = [entry for entry in entries if _state_of(entry) is not None]
        if not wanted:
            return []
        case_ids = {entry.case_id for entry in wanted}
        merged: dict[int, int] = {
            int(case_id): int(target)
            for case_id, target in session.execute(
                select(Case.id, Case.duplicate_of).where(Case.duplicate_of.in_(case_ids))
            )
            if target is not None
        }
        reports: dict[int, list[ResidentReport]] = {}
        for report in session.scalars(
            select(ResidentReport)
            .where(
                ResidentReport.case_id.in_(case_ids | set(merged)),
                ResidentReport.phone.is_not(None),
                ResidentReport.contact_consent.is_(True),
            )
            .order_by(ResidentReport.id)
        ):
            # a report on a case merged into this one follows the case that lives on
            reports.setdefault(merged.get(report.case_id, report.case_id), []).append(report)
        now = self._clock()
        rows = []
        for entry in wanted:
            state = _state_of(entry)
            assert state is not None
            for report in reports.get(entry.case_id, []):
                if report.created_at > entry.at:
                    continue  # a later reporter is not told what happened before they reported
                rows.append(self._row(entry, report, state, now))
        return rows

    def _row(
        self, entry: CaseTransition, report: ResidentReport, state: str, now: datetime
    ) -> Notification:
        detail = entry.detail or {}
        code = report.tracking_code
        texts = {}
        for language, key in (("zh-CN", "body_zh"), ("en", "body_en")):
            reply = detail.get(key) if isinstance(detail.get(key), str) else entry.reason
            texts[language] = status_message(language, state, code, str(reply or ""))
        payload = {
            "event": STATUS_EVENT,
            "audit_seq": entry.seq,
            "tracking_code": code,
            "state": state,
            "message_zh": texts["zh-CN"],
            "message_en": texts["en"],
            "tracking_url": self._public + tracking_path(code),
        }
        return pending_notification(
            channel=Channel.WEBHOOK,
            department=RESIDENT_DEPARTMENT,
            target=self._url,
            event_type=STATUS_EVENT,
            case_id=entry.case_id,
            payload=payload,
            now=now,
        )


def _state_of(entry: CaseTransition) -> str | None:
    state = _STATE_OF_ACTION.get(entry.action or "")
    if state == "reply" and (entry.detail or {}).get("public") is not True:
        return None
    return state


class ResidentGateway:
    """The sender's delivery for department ``resident``: the JSON the gateway reads, the phone
    looked up as it is sent (and only while the resident's consent stands)."""

    def __init__(self, session_factory: SessionFactory, webhook_url: str) -> None:
        self._sessions = session_factory
        self._url = webhook_url

    def deliver(self, http: httpx.Client, target: str, payload: dict[str, Any]) -> None:
        if target != self._url:
            raise DeliveryError(f"{target} is not the residents' status gateway")
        code = str(payload.get("tracking_code", ""))
        with self._sessions() as session:
            report = session.scalar(
                select(ResidentReport).where(ResidentReport.tracking_code == code)
            )
            phone = report.phone if report is not None and report.contact_consent else None
        if phone is None:
            raise DeliveryError(f"report {code[:16]} has no phone to tell")
        body = {
            key: payload.get(key)
            for key in ("tracking_code", "state", "message_zh", "message_en", "tracking_url")
        } | {"phone": phone}
        post_json(http, target, body, "civicwatch-residents/1", STATUS_EVENT)
