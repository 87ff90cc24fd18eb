"""The warning stage on the server side: who is a repeat offender, counted across gateways.

A plate warned ``repeat_warnings`` (K) times in ``repeat_days`` (D) days on a site, at any of its
gateways, skips the warning from then on: the site's rule documents list it in
``RuleDocument.repeat_offenders`` (contracts.exemptions.warning_stage). A warning counts only if
the item's plate reading reached the document's confidence floor: a weak reading is never
linked as a repeat offender. Counted on each document build (every rule change, the sweep
leader's daily republish, a server start); between builds each gateway keeps its own count.

The ``owner`` channel: ``OwnerWarningPump`` and ``OwnerGateway`` message a registered owner
through the residents' SMS or messaging gateway, by the notification outbox.

``WarningTimeouts``: a warned item whose gateway never reported back (no ``complied``, no
``opened``) goes to the dispatchers' queue once its grace and a margin have passed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from contracts.announce import announcement_texts
from contracts.exemptions import MAX_PLATES, Rule, WarningChannel, WarningStageRule
from dispatch.notifications.outbox import (
    Channel,
    DeliveryError,
    pending_notification,
    post_json,
)
from storage.audit import chain_entries, pump_all
from storage.database import SessionFactory
from storage.tables import (
    Case,
    CaseState,
    CaseTransition,
    ExemptionRuleRow,
    Notification,
    RegistryVehicle,
    utcnow,
)

WARN_ACTION = "warn"
"""The audit action ingest writes when an item enters the warning stage."""
SILENCE_ACTION = "warning_timeout"
"""The audit action of a warned item handed to the dispatchers: its gateway never reported."""
SILENCE_WHY = "warning_gateway_silent"
SILENCE_ACTOR = "sla-sweep"  # the sweep leader's job: the console names it "deadline monitor"


def repeat_offenders(
    session: Session, site_id: str, rules: Sequence[Rule], at: datetime, floor: float
) -> list[str]:
    """Plates with at least K warnings in the last D days on the site, for any warning_stage
    rule of ``rules`` in force at ``at`` (sorted; at most MAX_PLATES)."""
    stages = {
        (rule.repeat_warnings, rule.repeat_days)
        for rule in rules
        if isinstance(rule, WarningStageRule) and rule.valid_at(at)
    }
    plates: set[str] = set()
    for warnings, days in sorted(stages):
        warned = func.count(func.distinct(Case.id))
        query = (
            select(Case.plate_text)
            .join(CaseTransition, CaseTransition.case_id == Case.id)
            .where(Case.site_id == site_id)
            .where(CaseTransition.action == WARN_ACTION)
            .where(CaseTransition.to_state == CaseState.WARNED.value)
            .where(CaseTransition.at >= at - timedelta(days=days), CaseTransition.at <= at)
            .where(Case.plate_text.is_not(None), Case.plate_confidence >= floor)
            .group_by(Case.plate_text)
            .having(warned >= warnings)
        )
        plates.update(plate for plate in session.scalars(query) if plate is not None)
    return sorted(plates)[:MAX_PLATES]


OWNER_CURSOR = "owner-warnings"
OWNER_DEPARTMENT = "owner"  # the outbox rows' department: nobody's department
OWNER_EVENT = "owner.warned"


class OwnerWarningPump:
    """Audit log -> outbox rows telling a registered owner their car was warned.

    For each ``warn`` entry (ingest: an item entered the warning stage) whose rule lists the
    ``owner`` channel, whose plate was read at or above the confidence floor and is in the
    site's vehicle registry, one ``notifications`` row (department ``owner``, event
    ``owner.warned``) for the SMS or messaging gateway (server.residents.status_webhook_url).
    The row holds no name and no phone: ``OwnerGateway.deliver`` looks the phone up as it sends.
    The cursor and the rows move in one transaction; the first run starts at the chain's head.
    """

    def __init__(
        self,
        session_factory: SessionFactory,
        webhook_url: str,
        floor: float,
        clock: Callable[[], datetime] = utcnow,
        batch_size: int = 500,
    ) -> None:
        self._sessions = session_factory
        self._url = webhook_url
        self._floor = floor
        self._clock = clock
        self._batch_size = batch_size

    def pump_all(self) -> int:
        """Pump batch after batch until the log is drained; returns the rows written. The first
        run only places the cursor at the chain's head: history is not sent."""
        return pump_all(self._sessions, OWNER_CURSOR, self._batch_size, self._rows_for)

    def _rows_for(self, session: Session, entries: Sequence[CaseTransition]) -> list[Notification]:
        wanted = [entry for entry in entries if entry.action == WARN_ACTION]
        if not wanted:
            return []
        cases = {
            case.id: case
            for case in session.scalars(
                select(Case).where(Case.id.in_({entry.case_id for entry in wanted}))
            )
        }
        rule_ids = {str((entry.detail or {}).get("rule_id", "")) for entry in wanted}
        stages: dict[str, WarningStageRule] = {}
        for row in session.scalars(
            select(ExemptionRuleRow).where(ExemptionRuleRow.id.in_(rule_ids))
        ):
            if row.body.get("type") == "warning_stage":
                stages[row.id] = WarningStageRule.model_validate(row.body)
        now = self._clock()
        rows = []
        for entry in wanted:
            case = cases.get(entry.case_id)
            stage = stages.get(str((entry.detail or {}).get("rule_id", "")))
            if case is None or stage is None or WarningChannel.OWNER not in stage.channels:
                continue
            plate, confidence = case.plate_text, case.plate_confidence
            if plate is None or confidence is None or confidence < self._floor:
                continue  # a weak reading never reaches anybody's phone
            registered = session.scalar(
                select(func.count())
                .select_from(RegistryVehicle)
                .where(RegistryVehicle.site_id == case.site_id, RegistryVehicle.plate == plate)
            )
            if not registered:
                continue
            place = case.location or case.zone_id
            texts = announcement_texts(plate, place, stage.grace_minutes)
            payload = {
                "event": OWNER_EVENT,
                "audit_seq": entry.seq,
                "site_id": case.site_id,
                "plate": plate,
                "grace_until": (entry.detail or {}).get("grace_until"),
                "message_zh": texts["zh-CN"],
                "message_en": texts["en"],
            }
            rows.append(
                pending_notification(
                    channel=Channel.WEBHOOK,
                    department=OWNER_DEPARTMENT,
                    target=self._url,
                    event_type=OWNER_EVENT,
                    case_id=case.id,
                    payload=payload,
                    now=now,
                )
            )
        return rows


class OwnerGateway:
    """The sender's delivery for department ``owner``: the phone looked up as it is sent (a
    plate removed from the registry meanwhile is not told)."""

    def __init__(self, session_factory: SessionFactory, webhook_url: str) -> None:
        self._sessions = session_factory
        self._url = webhook_url

    def deliver(self, http: httpx.Client, target: str, payload: dict[str, Any]) -> None:
        if target != self._url:
            raise DeliveryError(f"{target} is not the owners' messaging gateway")
        site_id, plate = str(payload.get("site_id", "")), str(payload.get("plate", ""))
        with self._sessions() as session:
            phone = session.scalar(
                select(RegistryVehicle.phone).where(
                    RegistryVehicle.site_id == site_id, RegistryVehicle.plate == plate
                )
            )
        if not phone:
            raise DeliveryError("the plate is no longer in the registry")
        body = {
            key: payload.get(key) for key in ("plate", "grace_until", "message_zh", "message_en")
        } | {"phone": phone}
        post_json(http, target, body, "civicwatch-owners/1", OWNER_EVENT)


class WarningTimeouts:
    """Warned items whose gateway never reported back go to the dispatchers' queue.

    A gateway that dies, or loses its outbox, during a warning's grace never sends
    ``complied`` or ``opened``: the item would stay ``warned`` forever. Once ``grace_until`` +
    ``margin`` has passed, :meth:`run` moves it to ``new`` (registered, no department): there
    is no "after" frame, so nobody knows whether the car stayed, and enforcing on the warning
    alone would break 先提醒后执法. A dispatcher looks (camera, patrol) and dispatches or closes.
    Each move is one audit entry (``warning_timeout``, why ``warning_gateway_silent``) and one
    count of ``civicwatch_warning_timeouts_total``. Run by the sweep leader only (the
    scheduler's guard); the conditional UPDATE makes a second run, or a second server, a no-op.
    """

    def __init__(
        self,
        session_factory: SessionFactory,
        margin: timedelta,
        registry: CollectorRegistry,
        batch_size: int = 200,
    ) -> None:
        if margin <= timedelta(0):
            raise ValueError("the margin after the grace must be positive")
        self._sessions = session_factory
        self._margin = margin
        self._batch_size = batch_size
        self.timeouts = PromCounter(
            "civicwatch_warning_timeouts",
            "Warned items sent to the dispatchers because their gateway never reported back",
            registry=registry,
        )

    def run(self, now: datetime | None = None) -> int:
        """Hand every silent warned item to the dispatchers; returns how many were moved."""
        now = now or utcnow()
        moved = 0
        after_id = 0
        while True:
            with self._sessions.begin() as session:
                rows = session.execute(
                    select(Case.id, CaseTransition.detail)
                    .join(CaseTransition, CaseTransition.case_id == Case.id)
                    .where(Case.state == CaseState.WARNED.value, Case.id > after_id)
                    .where(CaseTransition.action == WARN_ACTION)
                    .order_by(Case.id)
                    .limit(self._batch_size)
                ).all()
                entries = []
                for case_id, detail in rows:
                    facts = _silent_facts(detail or {}, now, self._margin)
                    if facts is None:
                        continue
                    # Only a case still warned moves: ingest (a late report) or another run won.
                    result = session.execute(
                        update(Case)
                        .where(Case.id == case_id, Case.state == CaseState.WARNED.value)
                        .values(state=CaseState.NEW.value)
                        .execution_options(synchronize_session=False)
                    )
                    if getattr(result, "rowcount", 0) == 1:
                        entries.append(_silence_entry(case_id, facts, now))
                session.add_all(CaseTransition(**row) for row in chain_entries(session, entries))
            moved += len(entries)
            self.timeouts.inc(len(entries))
            if len(rows) < self._batch_size:
                break
            after_id = rows[-1][0]
        return moved


def _silent_facts(
    detail: dict[str, Any], now: datetime, margin: timedelta
) -> dict[str, Any] | None:
    """The warning's facts when its grace + ``margin`` has passed at ``now``; else None."""
    text = detail.get("grace_until")
    if not isinstance(text, str):
        return None  # not a warning this stage wrote: leave it to a person
    grace_until = datetime.fromisoformat(text)
    if now < grace_until + margin:
        return None
    facts = {key: detail[key] for key in ("rule_id", "warned_at") if key in detail}
    return facts | {
        "why": SILENCE_WHY,
        "grace_until": text,
        "margin_minutes": margin.total_seconds() / 60,
    }


def _silence_entry(case_id: int, facts: dict[str, Any], at: datetime) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "action": SILENCE_ACTION,
        "from_state": CaseState.WARNED.value,
        "to_state": CaseState.NEW.value,
        "actor": SILENCE_ACTOR,
        "reason": "gateway never reported back after the warning",
        "at": at,
        "detail": facts,
    }
