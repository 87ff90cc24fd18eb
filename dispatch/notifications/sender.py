"""Delivery: signed webhook posts and MQTT publishes of due outbox rows, with retries."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from dispatch.notification_settings import NotificationSettings
from dispatch.notifications.metrics import NotificationMetrics
from dispatch.notifications.outbox import Channel, DeliveryError, DeliveryStatus, Now
from dispatch.notifications.publisher import MqttPublisher
from storage.database import SessionFactory
from storage.tables import Notification, utcnow

log = logging.getLogger(__name__)


Delivery = Callable[[httpx.Client, str, dict[str, Any]], None]
"""Sends one row's payload to its target over the sender's client; raises DeliveryError."""


def canonical_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact UTF-8 JSON with sorted keys."""
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256(secret, f"{timestamp}.{body}")."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


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
        clock: Now = utcnow,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
        batch_size: int = 20,
        deliveries: Mapping[str, Delivery] | None = None,
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
        # Webhook rows of a "department" that is none (the residents' status gateway): its own
        # delivery (dispatch/residents/status.py), over this client.
        self._deliveries = dict(deliveries or {})

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
            if job.channel == Channel.WEBHOOK.value and job.department in self._deliveries:
                self._deliveries[job.department](
                    self._http, job.target, {**job.payload, "delivery_id": job.id}
                )
            elif job.channel == Channel.WEBHOOK.value:
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
