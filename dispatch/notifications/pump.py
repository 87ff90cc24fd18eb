"""The pump: audit log -> outbox (see the package docstring for why one transaction)."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.notification_settings import NotificationEvent, NotificationSettings
from dispatch.notifications.outbox import Channel, Now, pending_notification
from dispatch.workflow import Action
from storage.audit import pump_all, pump_batch
from storage.database import SessionFactory
from storage.tables import AuditCursor, Case, CaseTransition, Notification, utcnow

log = logging.getLogger(__name__)

CURSOR_NAME = "notifications"


# Audit actions that concern the case's (current) department, and the event each becomes.
_EVENT_OF_ACTION = {
    Action.DISPATCH.value: NotificationEvent.DISPATCHED,
    Action.ESCALATE.value: NotificationEvent.ESCALATED,
    Action.REOPEN.value: NotificationEvent.REOPENED,
    Action.MERGE.value: NotificationEvent.MERGED,
    Action.PARK.value: NotificationEvent.PARKED,
    Action.VERIFY.value: NotificationEvent.VERIFIED,
    Action.CLOSE.value: NotificationEvent.CLOSED,
    # a resident's mediation request hands a household matter to property management
    Action.MEDIATE.value: NotificationEvent.DISPATCHED,
}
_ASSIGNING_ACTIONS = (Action.DISPATCH.value, Action.TRANSFER.value)


@dataclass(frozen=True)
class _Told:
    department: str
    event: NotificationEvent


class Notifier:
    """Turns audit entries into notification rows (the outbox). Safe to run from several
    processes: the cursor row is locked for the transaction."""

    def __init__(
        self,
        session_factory: SessionFactory,
        settings: NotificationSettings,
        clock: Now = utcnow,
        batch_size: int = 500,
    ) -> None:
        self._sessions = session_factory
        self._settings = settings
        self._clock = clock
        self._batch_size = batch_size

    def pump(self) -> int:
        """Handle the entries after the cursor (one batch); returns the rows written.

        The first run only places the cursor at the chain's head: history is not re-sent.
        """
        return pump_batch(self._sessions, CURSOR_NAME, self._batch_size, self._rows_for)[0]

    def pump_all(self) -> int:
        """Pump batch after batch until the log is drained (the scheduled job: it catches up
        after downtime or a burst in one run); returns the rows written."""
        return pump_all(self._sessions, CURSOR_NAME, self._batch_size, self._rows_for)

    def cursor(self) -> int | None:
        """The last audit seq handled; None before the first run."""
        with self._sessions() as session:
            return session.scalar(select(AuditCursor.seq).where(AuditCursor.name == CURSOR_NAME))

    def _rows_for(self, session: Session, entries: Sequence[CaseTransition]) -> list[Notification]:
        wanted = [entry for entry in entries if _concerns_departments(entry.action)]
        if not wanted:
            return []
        case_ids = {entry.case_id for entry in wanted}
        cases = {
            case.id: case for case in session.scalars(select(Case).where(Case.id.in_(case_ids)))
        }
        assigned = _assignments(session, case_ids, int(wanted[-1].seq or 0))
        now = self._clock()
        rows: list[Notification] = []
        for entry in wanted:
            case = cases.get(entry.case_id)
            if case is None:
                continue
            department = _department_as_of(assigned.get(case.id), entry, case)
            for told in _who_hears(entry, department):
                payload = self._payload(entry, case, told, department)
                rows.extend(self._notifications(told, case.id, payload, now))
        return rows

    def _notifications(
        self, told: _Told, case_id: int, payload: dict[str, Any], now: datetime
    ) -> Iterable[Notification]:
        def row(channel: Channel, target: str) -> Notification:
            return pending_notification(
                channel=channel,
                department=told.department,
                target=target,
                event_type=told.event.value,
                case_id=case_id,
                payload=payload,
                now=now,
            )

        for hook in self._settings.webhooks:
            if hook.department.value == told.department and told.event in hook.events:
                yield row(Channel.WEBHOOK, str(hook.url))
        if self._settings.mqtt.enabled:
            yield row(Channel.MQTT, self._settings.topic(told.department))

    def _payload(
        self, entry: CaseTransition, case: Case, told: _Told, department: str | None
    ) -> dict[str, Any]:
        base = str(self._settings.public_url).rstrip("/")
        detail = entry.detail or {}
        payload: dict[str, Any] = {
            "event": told.event.value,
            "audit_seq": entry.seq,
            "action": entry.action,
            "occurred_at": entry.at.isoformat(),
            "actor": entry.actor,
            "reason": entry.reason,
            "case": {
                "id": case.id,
                "kind": case.kind,
                "state": entry.to_state,
                "department": department,
                "tier": case.tier,
                "priority": case.priority,
                "escalation_level": detail.get("level", case.escalation_level),
                "deadlines": {
                    "acknowledge": _iso(case.ack_due_at),
                    "resolve": _iso(case.sla_due_at),
                },
                "overdue": case.overdue,
                "location": {
                    "site_id": case.site_id,
                    "gateway_id": case.gateway_id,
                    "camera_id": case.camera_id,
                    "zone_id": case.zone_id,
                    "zone_kind": case.zone_kind,
                    "location": case.location,
                },
                "plate": case.plate_text,
                "duplicate_of": detail.get("duplicate_of", case.duplicate_of),
                "opened_at": case.opened_at.isoformat(),
            },
            "links": {
                "api": f"{base}/api/v1/cases/{case.id}",
                "console": f"{base}/console/cases/{case.id}",
                "worker": f"{base}/worker/cases/{case.id}",
            },
        }
        if entry.action == Action.TRANSFER.value:
            payload["case"]["previous_department"] = detail.get("from_department")
        elif entry.action == Action.ESCALATE.value:
            # The SLA sweep says which deadline passed and who now hears (supervisor, head).
            payload["escalation"] = {key: detail.get(key) for key in ("level", "deadline", "to")}
        return payload


def _concerns_departments(action: str) -> bool:
    return action in _EVENT_OF_ACTION or action == Action.TRANSFER.value


def _assignments(
    session: Session, case_ids: set[int], up_to_seq: int
) -> dict[int, list[tuple[int, str]]]:
    """Each case's (seq, department) of every dispatch and transfer up to ``up_to_seq``."""
    rows = session.execute(
        select(CaseTransition.case_id, CaseTransition.seq, CaseTransition.detail)
        .where(
            CaseTransition.case_id.in_(case_ids),
            CaseTransition.action.in_(_ASSIGNING_ACTIONS),
            CaseTransition.seq <= up_to_seq,
        )
        .order_by(CaseTransition.seq)
    )
    found: dict[int, list[tuple[int, str]]] = {}
    for case_id, seq, detail in rows:
        department = (detail or {}).get("department")
        if department:
            found.setdefault(case_id, []).append((int(seq), str(department)))
    return found


def _department_as_of(
    assigned: list[tuple[int, str]] | None, entry: CaseTransition, case: Case
) -> str | None:
    """The case's department when ``entry`` was written: a later transfer must not redirect an
    older event. Falls back to the case's department for entries without the history."""
    if assigned:
        seqs = [seq for seq, _ in assigned]
        at = bisect.bisect_right(seqs, int(entry.seq or 0))
        if at:
            return assigned[at - 1][1]
    return case.department


def _who_hears(entry: CaseTransition, department: str | None) -> list[_Told]:
    detail = entry.detail or {}
    if entry.action == Action.TRANSFER.value:
        told = []
        if department:
            told.append(_Told(department, NotificationEvent.TRANSFERRED_IN))
        previous = detail.get("from_department")
        if previous and previous != department:
            told.append(_Told(str(previous), NotificationEvent.TRANSFERRED_OUT))
        return told
    if department is None:  # never dispatched (e.g. a new case closed as a false alarm)
        return []
    return [_Told(department, _EVENT_OF_ACTION[entry.action])]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
