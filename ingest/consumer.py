"""The MQTT side of ingest: a persistent session, a writer thread, acks only after the commit.

paho's network thread only queues what arrives (topic, payload, mid). One writer thread takes
batches (up to ``batch_max_messages``, or what came within ``batch_max_wait_ms``), stores each
batch in one transaction, then acknowledges the messages to the broker in the order they
arrived (MQTT wants PUBACKs in order) and then answers each gateway. While the database is
down or full nothing is acknowledged: the writer retries with backoff and the broker keeps the
messages meanwhile.

The answer to a gateway: one IngestAckBatch with all of the batch's acks for it, in arrival
order (split only past ACK_BATCH_MAX_ITEMS / ACK_BATCH_MAX_BYTES), when the gateway's latest
GatewayStatus said ``ack_batch: true``; one IngestAck per message otherwise. The default is
singles because every gateway reads them: an older gateway would count a batch as a bad ack,
settle nothing and resend forever. Only the gateway itself knows what it reads, so it says so
in its retained status (every worker subscribes to statuses, not shared, and gets the retained
one at subscribe); a gateway downgraded in place publishes a status without the flag on connect,
before its events, and is answered with singles from that batch on. A batch ack that reaches a
gateway that cannot read it costs only a resend, answered with ``duplicate``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from contracts.acks import IngestAck, batch_wire
from contracts.exemptions import DEFAULT_PLATE_CONFIDENCE_FLOOR
from contracts.mqtt import BrokerSettings, MqttSession, Subscriptions, process_client_id
from contracts.sites import SiteRegistry
from contracts.status import GatewayStatus
from contracts.topics import (
    VIOLATION_SUBSCRIPTION,
    ack_topic,
    parse_camera_topic,
)
from ingest.config import IngestSettings
from ingest.handler import ViolationHandler, is_transient
from ingest.metrics import IngestMetrics
from ingest.status_intake import parse_status
from ingest.store import IngestService
from ingest.subscriptions import ingest_subscriptions, shared
from ingest.validation import Refusal, RefusalReason
from ingest.verification import VerificationIntake, VerificationResultHook

log = logging.getLogger(__name__)

T = TypeVar("T")

_RETRY_FIRST_SECONDS = 0.5
_RETRY_MAX_SECONDS = 30.0
FAILING_AFTER = 3
"""Failed attempts in a row (transient retries, or batches that hit a bug) after which the
writer reports itself failing, and /readyz answers 503 with the reason."""


def violation_subscription(shared_group: str | None) -> str:
    """The violation filter; in a shared group the broker hands each message to one member."""
    return shared(VIOLATION_SUBSCRIPTION, shared_group)


@dataclass(frozen=True, slots=True)
class _Received:
    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int  # which connection brought it: a mid means nothing on another one

    @property
    def is_violation(self) -> bool:
        return self.topic.endswith("/violation")

    @property
    def is_verification(self) -> bool:
        return self.topic.endswith("/verify_result")


class _Stopping(Exception):  # noqa: N818 - control flow: the consumer is shutting down
    """Raised out of a retry loop when stop() was called; nothing of the batch is acked."""


class IngestConsumer:
    """Subscribes to violation and status topics and stores what arrives.

    Each message is acknowledged to the broker only after its transaction committed (or after
    it was refused for good), so a crash in between means the broker redelivers it.
    """

    def __init__(
        self,
        broker: BrokerSettings,
        settings: IngestSettings,
        service: IngestService,
        registry: SiteRegistry,
        metrics: IngestMetrics,
        client_id: str | None = None,
        on_verification_result: VerificationResultHook | None = None,
        plate_confidence_floor: float = DEFAULT_PLATE_CONFIDENCE_FLOOR,
    ) -> None:
        """``on_verification_result`` gets each valid camera verification answer (after its
        frame is filed); without it ingest does not subscribe to the answers.
        ``plate_confidence_floor``: server.exemptions' (the exemption check decides by it)."""
        self._broker = broker
        self._settings = settings
        self._service = service
        self._metrics = metrics
        self._registry = registry
        self._handler = ViolationHandler(
            service, registry, metrics, settings.max_payload_bytes, plate_confidence_floor
        )
        self._verifications = (
            VerificationIntake(
                registry,
                service.evidence_store,  # the same store the service writes
                on_verification_result,
                settings.max_payload_bytes,
            )
            if on_verification_result is not None
            else None
        )
        self._stopping = threading.Event()
        self._inbox: queue.SimpleQueue[_Received] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._connection = 0  # counts successful connects
        self._failures_in_a_row = 0
        self._last_failure = ""
        # (site, gateway) whose latest status said it reads IngestAckBatch; the writer's alone.
        self._batch_ack_gateways: set[tuple[str, str]] = set()
        # The composition root passes a stable id (the persistent session must outlive a
        # restart); without one, a per-process id at least never takes over another's session.
        self.client_id = client_id or settings.client_id or process_client_id("civicwatch-ingest")
        self._session = MqttSession(
            broker,
            self.client_id,
            subscriptions=self._subscriptions,
            session_expiry_seconds=settings.session_expiry_seconds,
            # Without it Mosquitto allows only max_inflight_messages (20 by default) unacked
            # messages to us, and acks come only after a commit: batches would be 20 long.
            receive_maximum=settings.receive_maximum,
            manual_ack=True,
            on_message=self._on_message,
            on_connected=self._on_connected,
            on_refused=self._on_refused,
            on_subscribe_refused=self._on_subscribe_refused,
            on_lost=self._on_lost,
        )
        self.ready = self._session.ready  # connected and subscribed

    @property
    def writer_problem(self) -> str | None:
        """Why the writer is failing, when its last FAILING_AFTER attempts or more all failed."""
        failures = self._failures_in_a_row
        if failures < FAILING_AFTER:
            return None
        return (
            f"ingest {self.client_id} cannot store: {self._last_failure} "
            f"({failures} failures in a row)"
        )

    def _failed(self, exc: Exception) -> None:
        self._failures_in_a_row += 1
        first_line = (str(exc).splitlines() or [""])[0]
        self._last_failure = f"{type(exc).__name__}: {first_line}"[:300]

    def _count_poison(self, answers: list[IngestAck | None]) -> None:
        """A batch whose messages the database all refused for good failed, as a whole: one
        poison message is its own fault, every message batch after batch is the writer's."""
        refused = [
            ack.reason
            for ack in answers
            if ack is not None and ack.reason.startswith(RefusalReason.STORE_FAILED)
        ]
        if refused and not any(ack is not None and ack.settled for ack in answers):
            self._failures_in_a_row += 1
            self._last_failure = f"every message refused, e.g. {refused[0]}"[:300]
        else:
            self._failures_in_a_row = 0

    def start(self) -> None:
        self._stopping.clear()
        self._service.refresh_missing_gauge()
        self._writer = threading.Thread(
            target=self._write_forever, name=f"ingest-writer-{self.client_id}", daemon=True
        )
        self._writer.start()
        self._session.start()

    def stop(self) -> None:
        """Disconnect and stop the writer; what was not yet acked is redelivered later."""
        self._stopping.set()
        if self._writer is not None:
            self._writer.join(timeout=30)
            self._writer = None
        self._session.stop()
        while True:  # unacked: the broker redelivers these to the session
            try:
                self._inbox.get_nowait()
            except queue.Empty:
                break

    def _subscriptions(self) -> Subscriptions:
        return ingest_subscriptions(
            self._registry, self._settings.shared_group, self._verifications is not None
        )

    def _on_refused(self, reason_code: ReasonCode) -> None:
        log.error(
            "broker %s:%d refused ingest: %s", self._broker.host, self._broker.port, reason_code
        )

    def _on_connected(self, topics: Subscriptions) -> None:
        self._connection += 1
        log.info(
            "ingest %s connected to %s:%d (%d filters, e.g. %s)",
            self.client_id,
            self._broker.host,
            self._broker.port,
            len(topics),
            topics[0][0],
        )

    def _on_subscribe_refused(self, failed: list[str]) -> None:
        log.error("broker refused ingest's subscriptions: %s", ", ".join(failed))

    def _on_lost(self, reason_code: ReasonCode) -> None:
        if not self._stopping.is_set():
            log.warning("ingest lost the broker (%s); reconnecting", reason_code)

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        # The network thread does no parsing and no database work: it only hands over.
        self._inbox.put(
            _Received(
                message.topic, bytes(message.payload), message.mid, message.qos, self._connection
            )
        )

    def _write_forever(self) -> None:
        while not self._stopping.is_set():
            batch = self._take_batch()
            if not batch:
                continue
            started = time.monotonic()
            self._metrics.events_received.inc(sum(1 for item in batch if item.is_violation))
            try:
                answers = self._settle(batch)
            except _Stopping:
                return
            except Exception as exc:  # a bug must not kill the writer, nor stall the batch
                log.exception("failed to handle a batch of %d messages", len(batch))
                self._metrics.store_failures.labels(kind="bug").inc()
                self._failed(exc)
                try:
                    answers = self._settle_alone(batch)
                except _Stopping:
                    return
            else:
                self._count_poison(answers)
            for received in batch:
                # After a reconnect the broker redelivers what the old connection did not ack;
                # acking an old mid on the new connection could settle a different message.
                if received.connection == self._connection:
                    self._session.ack(received.mid, received.qos)
            self._send_acks(batch, answers)
            self._metrics.batch_messages.observe(len(batch))
            self._metrics.batch_seconds.observe(time.monotonic() - started)

    def _take_batch(self) -> list[_Received]:
        try:
            first = self._inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self._settings.batch_max_wait_ms / 1000
        while len(batch) < self._settings.batch_max_messages:
            remaining = deadline - time.monotonic()
            try:
                batch.append(
                    self._inbox.get(timeout=remaining)
                    if remaining > 0
                    else self._inbox.get_nowait()
                )
            except queue.Empty:
                break
        return batch

    def _settle_alone(self, batch: list[_Received]) -> list[IngestAck | None]:
        """After a batch hit a bug: each message on its own, so only the one at fault is refused
        (store_failed); every message is settled, none left to stall the session."""
        answers: list[IngestAck | None] = []
        for item in batch:
            try:
                [answer] = self._settle([item])
            except _Stopping:
                raise
            except Exception as exc:
                log.exception("a message on %s cannot be handled; refusing it", item.topic)
                detail = f"{type(exc).__name__}: {exc}"[:400]
                self._handler.record_refusal(
                    item.topic, Refusal(RefusalReason.STORE_FAILED, detail)
                )
                answer = None
            answers.append(answer)
        return answers

    def _settle(self, batch: list[_Received]) -> list[IngestAck | None]:
        """Store the batch (retrying transient failures); the ack for each message, in order."""
        violations = [(item.topic, item.payload) for item in batch if item.is_violation]
        stored = iter(self._retrying(lambda: self._handler.handle_batch(violations)))
        answers: list[IngestAck | None] = []
        for item in batch:
            if item.is_violation:
                answers.append(next(stored))
                continue
            handle = self._handle_verification if item.is_verification else self._handle_status
            try:
                self._retrying(partial(handle, item))
            except _Stopping:
                raise
            except Exception as exc:  # the database refuses this status for good: drop it
                refusal = Refusal(RefusalReason.STORE_FAILED, f"{type(exc).__name__}: {exc}")
                self._handler.record_refusal(item.topic, refusal)
            answers.append(None)
        return answers

    def _retrying(self, attempt: Callable[[], T]) -> T:
        delay = _RETRY_FIRST_SECONDS
        while True:  # the database may be down or full: the broker keeps the messages meanwhile
            try:
                return attempt()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self._metrics.store_failures.labels(kind="transient").inc()
                self._failed(exc)
                log.error("cannot store now (%s); nothing acked, retry in %.1fs", exc, delay)
            if self._stopping.wait(delay):
                raise _Stopping
            delay = min(delay * 2, _RETRY_MAX_SECONDS)

    def _send_acks(self, batch: list[_Received], answers: list[IngestAck | None]) -> None:
        """Answer each gateway of a committed batch (its PUBACKs already sent): batched where it
        reads batches, its acks in arrival order; else one ack per message, as before."""
        batched: dict[tuple[str, str], list[IngestAck]] = {}
        for received, ack in zip(batch, answers, strict=True):
            if ack is None:
                continue
            claimed = parse_camera_topic(received.topic)
            if claimed is None:
                continue  # no gateway to answer
            gateway = (claimed.site_id, claimed.gateway_id)
            if gateway in self._batch_ack_gateways:
                batched.setdefault(gateway, []).append(ack)
            else:
                self._session.publish(ack_topic(*gateway), ack.to_wire(), qos=1)
        for gateway, acks in batched.items():
            for payload in batch_wire(acks):
                self._session.publish(ack_topic(*gateway), payload, qos=1)

    def publish(self, topic: str, payload: bytes) -> bool:
        """Publish at QoS 1 on ingest's connection (the server's requests to gateways).

        False when it was not sent (no connection now); the caller tries again later.
        """
        if not self._session.is_connected():
            return False
        info = self._session.publish(topic, payload, qos=1)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def _handle_verification(self, message: _Received) -> None:
        """One camera verification answer: a refusal is counted and logged, nothing stored."""
        if self._verifications is None:
            return
        try:
            self._verifications.handle(message.topic, message.payload)
        except Refusal as refusal:
            self._handler.record_refusal(message.topic, refusal)

    def _handle_status(self, message: _Received) -> None:
        if not message.payload:
            return  # a cleared retained message
        try:
            status = parse_status(message.topic, message.payload, self._registry)
        except Refusal as refusal:
            self._handler.record_refusal(message.topic, refusal)
            return
        if isinstance(status, GatewayStatus):
            self._service.record_gateway_status(status)
            gateway = (status.site_id, status.gateway_id)
            if status.ack_batch:
                self._batch_ack_gateways.add(gateway)
            else:
                self._batch_ack_gateways.discard(gateway)
        else:
            self._service.record_camera_status(status)
