"""Notifications to departments: signed webhooks and a per-department MQTT topic, via an outbox.

The audit log is the source. A ``Notifier`` tails it (``audit_cursors`` row "notifications") and,
for each entry a department must hear about, writes ``notifications`` rows in the same
transaction that moves the cursor: a crash either keeps both or neither, so a restart neither
repeats nor skips an entry. A ``NotificationSender`` then delivers due rows, retrying with
exponential backoff and jitter; rows that run out of attempts stay ``failed`` until a dispatcher
retries them (``POST /api/v1/notifications/{id}/retry``).

Webhook requests are signed: ``X-Civicwatch-Signature: sha256=HEX`` where HEX is the
HMAC-SHA256, keyed with the webhook's secret, of ``f"{X-Civicwatch-Timestamp}.{body}"``
(docs/notifications.md shows how a receiver checks it).
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import logging
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import httpx
import paho.mqtt.client as mqtt
from fastapi import APIRouter, FastAPI, HTTPException, Query, status
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contracts.mqtt import BrokerSettings, make_client
from dispatch.api import RowIdPath, SessionDep
from dispatch.auth import PrincipalDep
from dispatch.config import SCOPED_ROLES, Department, Role
from dispatch.notification_settings import NotificationEvent, NotificationSettings
from dispatch.workflow import Action, Actor
from storage.audit import HEAD_ID
from storage.database import SessionFactory
from storage.tables import AuditCursor, AuditHead, Case, CaseTransition, Notification, utcnow

log = logging.getLogger(__name__)

CURSOR_NAME = "notifications"
Clock = Callable[[], datetime]


# Audit actions that concern the case's (current) department, and the event each becomes.
_EVENT_OF_ACTION = {
    Action.DISPATCH.value: NotificationEvent.DISPATCHED,
    Action.ESCALATE.value: NotificationEvent.ESCALATED,
    Action.REOPEN.value: NotificationEvent.REOPENED,
    Action.MERGE.value: NotificationEvent.MERGED,
    Action.PARK.value: NotificationEvent.PARKED,
    Action.VERIFY.value: NotificationEvent.VERIFIED,
    Action.CLOSE.value: NotificationEvent.CLOSED,
}
_ASSIGNING_ACTIONS = (Action.DISPATCH.value, Action.TRANSFER.value)


class Channel(StrEnum):
    WEBHOOK = "webhook"
    MQTT = "mqtt"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class DeliveryError(Exception):
    """A delivery that did not happen; the text goes into ``last_error``."""


# --- the pump: audit log -> outbox -------------------------------------------------------------


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
        clock: Clock = utcnow,
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
        return self._pump_batch()[0]

    def pump_all(self) -> int:
        """Pump batch after batch until the log is drained (the scheduled job: it catches up
        after downtime or a burst in one run); returns the rows written."""
        total = 0
        while True:
            written, entries = self._pump_batch()
            total += written
            if entries < self._batch_size:
                return total

    def _pump_batch(self) -> tuple[int, int]:
        """One transaction: (notification rows written, audit entries read)."""
        try:
            with self._sessions.begin() as session:
                return self._pump(session)
        except IntegrityError:  # another process placed the cursor first; the next run goes on
            log.info("notification cursor was created concurrently")
            return 0, 0

    def cursor(self) -> int | None:
        """The last audit seq handled; None before the first run."""
        with self._sessions() as session:
            return session.scalar(select(AuditCursor.seq).where(AuditCursor.name == CURSOR_NAME))

    def _pump(self, session: Session) -> tuple[int, int]:
        # A write first: PostgreSQL locks the row, SQLite takes its write lock, so two pumps
        # never hand out the same entries.
        locked = session.execute(
            update(AuditCursor)
            .where(AuditCursor.name == CURSOR_NAME)
            .values(seq=AuditCursor.seq)
            .execution_options(synchronize_session=False)
        )
        cursor = session.get(AuditCursor, CURSOR_NAME) if getattr(locked, "rowcount", 0) else None
        if cursor is None:
            head = session.scalar(select(AuditHead.seq).where(AuditHead.id == HEAD_ID))
            session.add(AuditCursor(name=CURSOR_NAME, seq=int(head or 0)))
            log.info("notifications start after audit entry %d", head or 0)
            return 0, 0
        entries = session.scalars(
            select(CaseTransition)
            .where(CaseTransition.seq > cursor.seq)
            .order_by(CaseTransition.seq)
            .limit(self._batch_size)
        ).all()
        if not entries:
            return 0, 0
        rows = self._rows_for(session, entries)
        session.add_all(rows)
        cursor.seq = int(entries[-1].seq or cursor.seq)
        return len(rows), len(entries)

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
            return Notification(
                channel=channel.value,
                department=told.department,
                target=target,
                event_type=told.event.value,
                case_id=case_id,
                payload=payload,
                status=DeliveryStatus.PENDING.value,
                attempts=0,
                next_attempt_at=now,
                last_error="",
                created_at=now,
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


# --- delivery ----------------------------------------------------------------------------------


def canonical_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact UTF-8 JSON with sorted keys."""
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256(secret, f"{timestamp}.{body}")."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


class MqttPublisher:
    """One MQTT connection of its own for notifications; publish() waits for the broker's ack."""

    def __init__(self, broker: BrokerSettings, client_id: str) -> None:
        self._broker = broker
        self.client_id = client_id
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self._refused: dict[int, str] = {}  # mid -> the broker's failure reason
        self._client = make_client(broker, client_id)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish

    def start(self) -> None:
        self._client.connect_async(
            self._broker.host, self._broker.port, keepalive=self._broker.keepalive_seconds
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()

    def publish(self, topic: str, body: bytes, qos: int, timeout: float, event: str) -> None:
        """Publish and wait for PUBACK (QoS 1) or PUBCOMP (QoS 2); raises DeliveryError."""
        if not self.connected.is_set():
            raise DeliveryError(
                f"not connected to the MQTT broker {self._broker.host}:{self._broker.port}"
            )
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ContentType = "application/json"
        properties.UserProperty = [("civicwatch-event", event)]
        info = self._client.publish(topic, body, qos=qos, properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise DeliveryError(f"MQTT publish failed: {mqtt.error_string(info.rc)}")
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise DeliveryError(f"MQTT publish failed: {exc}") from exc
        if not info.is_published():
            raise DeliveryError(f"no acknowledgement from the broker within {timeout:g}s")
        with self._lock:
            refused = self._refused.pop(info.mid, None)
        if refused is not None:
            raise DeliveryError(f"the broker refused the message: {refused}")

    def _on_connect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("broker refused the notifier %s: %s", self.client_id, reason_code)
            return
        self.connected.set()

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self.connected.clear()
        log.info("notifier %s disconnected: %s", self.client_id, reason_code)

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            with self._lock:
                self._refused[mid] = str(reason_code)


class NotificationMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.deliveries = Counter(
            "civicwatch_notifications",
            "Notification delivery attempts by channel and outcome (delivered, retry, failed)",
            ["channel", "outcome"],
            registry=self.registry,
        )


class NotificationBacklogCollector(Collector):
    """Pending and failed notifications, read from the database at scrape time."""

    def __init__(self, session_factory: SessionFactory) -> None:
        self._sessions = session_factory

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily(
            "civicwatch_notifications_outstanding",
            "Notifications not delivered yet (pending) or given up on (failed)",
            labels=["channel", "status"],
        )
        outstanding = (DeliveryStatus.PENDING.value, DeliveryStatus.FAILED.value)
        with self._sessions() as session:
            rows = session.execute(
                select(Notification.channel, Notification.status, func.count())
                .where(Notification.status.in_(outstanding))
                .group_by(Notification.channel, Notification.status)
            )
            counts = {(channel, state): count for channel, state, count in rows}
        for channel in Channel:
            for state in outstanding:
                gauge.add_metric([channel.value, state], counts.get((channel.value, state), 0))
        yield gauge


@dataclass(frozen=True)
class _Job:
    id: int
    channel: str
    department: str
    target: str
    event_type: str
    payload: dict[str, Any]


@dataclass
class SendReport:
    delivered: int = 0
    retried: int = 0
    failed: int = 0


class NotificationSender:
    """Delivers due notifications. Rows are claimed (their next attempt pushed past the send
    time) before sending, so a second sender or an overlapping run does not send them twice."""

    def __init__(
        self,
        session_factory: SessionFactory,
        settings: NotificationSettings,
        publisher: MqttPublisher | None = None,
        metrics: NotificationMetrics | None = None,
        clock: Clock = utcnow,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
        batch_size: int = 20,
    ) -> None:
        self._sessions = session_factory
        self._settings = settings
        self._publisher = publisher
        self._metrics = metrics or NotificationMetrics()
        self._clock = clock
        self._rng = rng or random.Random()
        self._batch_size = batch_size
        self._http = httpx.Client(
            timeout=settings.timeout_seconds, transport=transport, follow_redirects=False
        )
        self._webhooks = {(h.department.value, str(h.url)): h for h in settings.webhooks}

    def close(self) -> None:
        self._http.close()

    def run(self) -> SendReport:
        """Deliver every notification due now, a batch at a time."""
        report = SendReport()
        while True:
            jobs = self._claim()
            for job in jobs:
                self._deliver(job, report)
            if len(jobs) < self._batch_size:
                return report

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failure: exponential, capped, half of it jitter."""
        retry = self._settings.retry
        try:
            delay = min(retry.max_seconds, retry.base_seconds * retry.factor ** (attempts - 1))
        except OverflowError:  # a large factor to a large power: long past the cap anyway
            delay = retry.max_seconds
        return timedelta(seconds=delay / 2 + self._rng.uniform(0, delay / 2))

    def _claim(self) -> list[_Job]:
        now = self._clock()
        lease = timedelta(seconds=self._settings.timeout_seconds * (self._batch_size + 1) + 30)
        due = (
            select(Notification.id)
            .where(
                Notification.status == DeliveryStatus.PENDING.value,
                Notification.next_attempt_at <= now,
            )
            .order_by(Notification.next_attempt_at, Notification.id)
            .limit(self._batch_size)
        )
        with self._sessions.begin() as session:
            claimed = session.execute(
                update(Notification)
                .where(
                    Notification.id.in_(due),
                    Notification.status == DeliveryStatus.PENDING.value,
                    Notification.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + lease)
                .returning(
                    Notification.id,
                    Notification.channel,
                    Notification.department,
                    Notification.target,
                    Notification.event_type,
                    Notification.payload,
                )
                .execution_options(synchronize_session=False)
            ).all()
        return sorted((_Job(*row) for row in claimed), key=lambda job: job.id)

    def _deliver(self, job: _Job, report: SendReport) -> None:
        body = canonical_body({**job.payload, "delivery_id": job.id})
        try:
            if job.channel == Channel.WEBHOOK.value:
                self._post(job, body)
            elif job.channel == Channel.MQTT.value:
                self._publish(job, body)
            else:
                raise DeliveryError(f"unknown channel {job.channel!r}")
        except DeliveryError as exc:
            self._record_failure(job, str(exc), report)
        else:
            self._record_success(job, report)

    def _post(self, job: _Job, body: bytes) -> None:
        hook = self._webhooks.get((job.department, job.target))
        if hook is None:
            raise DeliveryError(f"no webhook {job.target} is configured for {job.department}")
        timestamp = str(int(self._clock().timestamp()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "civicwatch-notifications/1",
            "X-Civicwatch-Event": job.event_type,
            "X-Civicwatch-Delivery": str(job.id),
            "X-Civicwatch-Timestamp": timestamp,
            "X-Civicwatch-Signature": sign(hook.secret.get_secret_value(), timestamp, body),
        }
        try:
            response = self._http.post(job.target, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"timed out after {self._settings.timeout_seconds:g}s") from exc
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise DeliveryError(f"HTTP {response.status_code}: {response.text[:200]}")

    def _publish(self, job: _Job, body: bytes) -> None:
        if self._publisher is None:
            raise DeliveryError("MQTT notifications are not started on this server")
        self._publisher.publish(
            job.target,
            body,
            self._settings.mqtt.qos,
            self._settings.timeout_seconds,
            job.event_type,
        )

    def _record_success(self, job: _Job, report: SendReport) -> None:
        now = self._clock()
        with self._sessions.begin() as session:
            row = session.get(Notification, job.id)
            if row is None:
                return
            row.attempts += 1
            row.status = DeliveryStatus.DELIVERED.value
            row.delivered_at = now
            row.last_error = ""
        report.delivered += 1
        self._metrics.deliveries.labels(job.channel, "delivered").inc()

    def _record_failure(self, job: _Job, error: str, report: SendReport) -> None:
        now = self._clock()
        with self._sessions.begin() as session:
            row = session.get(Notification, job.id)
            if row is None:
                return
            row.attempts += 1
            row.last_error = error[:2000]
            if row.attempts >= self._settings.retry.max_attempts:
                row.status = DeliveryStatus.FAILED.value
                row.next_attempt_at = now  # not the claim's lease: a retry starts from here
                outcome = "failed"
                report.failed += 1
            else:
                row.next_attempt_at = now + self.backoff(row.attempts)
                outcome = "retry"
                report.retried += 1
            attempts = row.attempts
        self._metrics.deliveries.labels(job.channel, outcome).inc()
        log.warning(
            "notification %d (%s to %s) attempt %d: %s%s",
            job.id,
            job.channel,
            job.target,
            attempts,
            error,
            "; giving up" if outcome == "failed" else "",
        )


@dataclass
class Notifications:
    """The notification parts the server runs: pump, sender and the MQTT connection."""

    settings: NotificationSettings
    notifier: Notifier
    sender: NotificationSender
    publisher: MqttPublisher | None = None
    metrics: NotificationMetrics = field(default_factory=NotificationMetrics)

    def start(self) -> None:
        # On a first start this places the cursor now, so no case ingested from here on waits
        # for (and is skipped by) the first scheduled pump.
        self.notifier.pump()
        if self.publisher is not None:
            self.publisher.start()

    def stop(self) -> None:
        if self.publisher is not None:
            self.publisher.stop()
        self.sender.close()


def build_notifications(
    session_factory: SessionFactory,
    settings: NotificationSettings,
    broker: BrokerSettings,
    registry: CollectorRegistry | None = None,
    clock: Clock = utcnow,
) -> Notifications:
    """Wire the pump, the sender and (when MQTT notifications are on) their MQTT client."""
    metrics = NotificationMetrics(registry)
    publisher = MqttPublisher(broker, settings.mqtt.client_id) if settings.mqtt.enabled else None
    return Notifications(
        settings=settings,
        notifier=Notifier(session_factory, settings, clock),
        sender=NotificationSender(session_factory, settings, publisher, metrics, clock),
        publisher=publisher,
        metrics=metrics,
    )


# --- the API -----------------------------------------------------------------------------------


class NotificationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    channel: Channel
    department: str
    target: str = Field(description="the webhook URL or MQTT topic")
    event_type: str
    case_id: int | None
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]


def install_notifications(app: FastAPI, scrape_registry: CollectorRegistry) -> None:
    """Add the notifications API and the backlog gauge (``scrape_registry`` is read by
    /metrics)."""
    router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])
    readers = frozenset({Role.ADMIN, Role.DISPATCHER, Role.SUPERVISOR, Role.WORKER})
    retriers = frozenset({Role.ADMIN, Role.DISPATCHER})

    def visible(session: Session, principal: Actor, notification_id: int) -> Notification:
        row = session.get(Notification, notification_id)
        if row is None or (
            principal.role in SCOPED_ROLES and row.department != principal.department
        ):
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"notification {notification_id} not found"
            )
        return row

    def require_reader(principal: PrincipalDep) -> None:
        if principal.role not in readers:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"{principal.role} may not read notifications"
            )

    @router.get(
        "",
        response_model=list[NotificationPublic],
        responses={403: {"description": "integration tokens read no notifications"}},
    )
    def list_notifications(
        session: SessionDep,
        principal: PrincipalDep,
        status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
        department: Department | None = None,
        channel: Channel | None = None,
        case_id: int | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[Notification]:
        """Newest first. Department roles see their own department's only."""
        require_reader(principal)
        query = select(Notification)
        if principal.role in SCOPED_ROLES:
            query = query.where(Notification.department == principal.department)
        filters: dict[Any, Any] = {
            Notification.status: status_,
            Notification.department: department,
            Notification.channel: channel,
            Notification.case_id: case_id,
        }
        for column, value in filters.items():
            if value is not None:
                query = query.where(column == value)
        query = query.order_by(Notification.id.desc()).limit(limit).offset(offset)
        return list(session.scalars(query))

    @router.get(
        "/{notification_id}",
        response_model=NotificationPublic,
        responses={403: {"description": "integration"}, 404: {"description": "not found"}},
    )
    def get_notification(
        notification_id: RowIdPath, session: SessionDep, principal: PrincipalDep
    ) -> Notification:
        require_reader(principal)
        return visible(session, principal, notification_id)

    @router.post(
        "/{notification_id}/retry",
        response_model=NotificationPublic,
        responses={
            403: {"description": "only dispatchers and admins retry"},
            404: {"description": "not found"},
            409: {"description": "only a failed notification can be retried"},
        },
    )
    def retry_notification(
        notification_id: RowIdPath, session: SessionDep, principal: PrincipalDep
    ) -> Notification:
        """A failed notification back to pending, due now, with a fresh set of attempts."""
        row = visible(session, principal, notification_id)  # 404 before 403: leak nothing
        if principal.role not in retriers:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"{principal.role} may not retry notifications"
            )
        if row.status != DeliveryStatus.FAILED.value:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"notification {notification_id} is {row.status}: only failed ones are retried",
            )
        row.status = DeliveryStatus.PENDING.value
        row.attempts = 0
        row.next_attempt_at = utcnow()
        session.commit()
        log.info("notification %d retried by %s", notification_id, principal.name)
        return row

    app.include_router(router)
    scrape_registry.register(NotificationBacklogCollector(app.state.api.session_factory))
