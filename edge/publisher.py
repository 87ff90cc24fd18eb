"""MQTT publishing from the outbox, and the ingest confirmations that settle it."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from contracts.acks import AckOutcome, AckTooLargeError, parse_acks
from contracts.event_frame import (
    FRAME_CONTENT_TYPE,
    decode_event,
    encode_event,
    encoding_of,
    is_event_frame,
)
from contracts.mqtt import BrokerSettings, LastWill, MqttSession, Subscriptions, process_client_id
from contracts.status import CameraStatus, GatewayState, GatewayStatus
from contracts.topics import (
    ack_topic,
    camera_status_topic,
    gateway_status_topic,
    rules_topic,
    site_plates_topic,
)
from edge.outbox import Outbox
from edge.rule_store import RuleStore
from edge.warning import Announcements

log = logging.getLogger(__name__)


class EdgePublisher:
    """Publishes due outbox messages at QoS 1; keeps running while the broker is away."""

    def __init__(
        self,
        broker: BrokerSettings,
        site_id: str,
        gateway_id: str,
        outbox: Outbox,
        resend_after_seconds: float,
        client_id_suffix: str = "",
        *,
        announces_gateway: bool = True,
        max_unconfirmed: int = 1000,
        rules: RuleStore | None = None,
        announcements: Announcements | None = None,
    ) -> None:
        """``announces_gateway=False`` (replay) leaves the gateway's status topic alone: a replay
        finishing must not mark a live gateway offline. ``max_unconfirmed`` caps what is out and
        not yet confirmed: after a long outage the backlog drains at ingest's pace instead of
        flooding the broker and being resent wholesale every resend interval."""
        self.site_id = site_id
        self.gateway_id = gateway_id
        self._outbox = outbox
        self._resend_after = resend_after_seconds
        self._max_unconfirmed = max_unconfirmed
        self._flush_lock = threading.Lock()
        self._status_topic = gateway_status_topic(site_id, gateway_id)
        self._ack_topic = ack_topic(site_id, gateway_id)
        # The signed rule document, retained on the gateway's rules topic: taken by ``rules``.
        self._rules = rules
        self._rules_topic = rules_topic(site_id, gateway_id)
        # The site's signed plates: subscribed only while a document waits for them.
        self._plates_topic = site_plates_topic(site_id)
        self._plates_subscribed = False
        self._plates_lock = threading.Lock()
        # The warning stage's announcements: QoS 1, not retained, on the announce topic.
        self._announcements = announcements
        self._broker = broker
        self.confirmed = 0
        self.rejected = 0
        self.bad_acks = 0
        role = f"civicwatch-edge-{gateway_id}{client_id_suffix}"
        # The live edge is one per gateway and owns its status and last will: a stable id lets
        # its restart take over a half-open old connection, whose will would otherwise mark
        # the gateway offline later. Others (replay) hold no state: one id per process.
        client_id = role if announces_gateway else process_client_id(role)
        self._announces_gateway = announces_gateway
        will = None
        if announces_gateway:
            offline = GatewayStatus(
                site_id=site_id, gateway_id=gateway_id, state=GatewayState.OFFLINE, ack_batch=True
            )
            will = LastWill(self._status_topic, offline.to_wire(), qos=1, retain=True)
        self._session = MqttSession(
            broker,
            client_id,
            subscriptions=self._subscriptions,
            will=will,
            on_message=self._on_message,
            on_connected=self._on_connected,
            on_refused=self._on_refused,
            on_lost=self._on_lost,
        )

    def _subscriptions(self) -> list[tuple[str, int]]:
        topics = [(self._ack_topic, 1)]
        if self._rules is not None:
            topics.append((self._rules_topic, 1))
            with self._plates_lock:
                self._plates_subscribed = self._rules.wanted_plates is not None
                if self._plates_subscribed:
                    topics.append((self._plates_topic, 1))
        return topics

    @property
    def connected(self) -> bool:
        return self._session.connected.is_set()

    def start(self) -> None:
        self._session.start()

    def _gateway_status(self, state: GatewayState) -> bytes:
        return GatewayStatus(
            site_id=self.site_id,
            gateway_id=self.gateway_id,
            state=state,
            at=datetime.now(UTC),
            outbox_pending=self._outbox.pending_count(),
            rules_version=self._rules.version if self._rules is not None else None,
            # This gateway reads IngestAckBatch: ingest may answer a whole batch in one message.
            ack_batch=True,
        ).to_wire()

    def _on_refused(self, reason_code: ReasonCode) -> None:
        log.warning("broker refused the connection: %s", reason_code)

    def _on_connected(self, _subscribed: Subscriptions) -> None:
        # Online before anything else goes out: flush_due waits for ``connected``.
        if self._announces_gateway:
            online = self._gateway_status(GatewayState.ONLINE)
            self._session.publish(self._status_topic, online, qos=1, retain=True)
        log.info("connected to %s:%s", self._broker.host, self._broker.port)

    def _on_lost(self, reason_code: ReasonCode) -> None:
        log.warning("disconnected from broker: %s", reason_code)

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        if message.topic == self._rules_topic:
            self._on_rules(bytes(message.payload))
            return
        if message.topic == self._plates_topic:
            self._on_plates(bytes(message.payload))
            return
        # A single IngestAck (every server) or an IngestAckBatch (servers since batched acks):
        # every item is validated before any is applied; a bad message is counted and logged
        # once, and settles nothing (what it meant to settle is resent and answered again).
        try:
            acks = parse_acks(bytes(message.payload))
        except AckTooLargeError as exc:
            self.bad_acks += 1
            log.warning("ignoring a bad ack on %s: %s", message.topic, exc)
            return
        except ValidationError as exc:
            self.bad_acks += 1
            log.warning(
                "ignoring a bad ack on %s: %s", message.topic, exc.errors(include_input=False)[:1]
            )
            return
        settled = (
            self._outbox.settle_many(acks) if len(acks) > 1 else [self._outbox.settle(acks[0])]
        )
        for ack, was_pending in zip(acks, settled, strict=True):
            if not was_pending:
                continue
            if ack.outcome is AckOutcome.REJECTED:
                self.rejected += 1
                log.error("ingest rejected message %s: %s", ack.message_id, ack.reason)
            else:
                self.confirmed += 1

    def _on_rules(self, payload: bytes) -> None:
        """A rule document: taken if it holds; the status then says which version runs."""
        if self._rules is None:
            return
        before = self._rules.version
        taken = self._rules.offer(payload) and self._rules.version != before
        self._taken(taken)

    def _on_plates(self, payload: bytes) -> None:
        """The site's signed plates, wanted by a document that waits for them."""
        if self._rules is None:
            return
        before = self._rules.version
        taken = self._rules.offer_plates(payload) and self._rules.version != before
        self._taken(taken)

    def _taken(self, taken: bool) -> None:
        """Say which version runs; follow the site's plates while a document waits for them."""
        if taken and self._announces_gateway:
            online = self._gateway_status(GatewayState.ONLINE)
            self._session.publish(self._status_topic, online, qos=1, retain=True)
        if self._rules is None:
            return
        wanted = self._rules.wanted_plates is not None
        with self._plates_lock:
            if wanted == self._plates_subscribed:
                return
            self._plates_subscribed = wanted
        if wanted:
            self._session.subscribe(self._plates_topic, qos=1)
        else:
            self._session.unsubscribe(self._plates_topic)

    def flush_due(self) -> int:
        """Publish what the outbox holds that is due; returns how many went to the client."""
        if not self.connected:
            return 0
        sent = 0
        with self._flush_lock:
            now = datetime.now(UTC)
            sent += self._announce(now)
            window = self._max_unconfirmed - self._outbox.in_flight_count(self._resend_after, now)
            if window <= 0:
                return 0
            for message in self._outbox.due(self._resend_after, now, limit=min(window, 50)):
                payload = message.payload
                if (
                    message.attempts
                    or (now - message.created_at).total_seconds() > self._resend_after
                ):
                    payload = _as_historical(payload)
                info = self._session.publish(
                    message.topic, payload, qos=1, properties=_properties_for(payload)
                )
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    break  # connection went away; the outbox keeps it for the next try
                self._outbox.mark_sent(message.message_id, now)
                sent += 1
        return sent

    def _announce(self, now: datetime) -> int:
        """Publish the waiting announcements; what the client would not take waits again."""
        if self._announcements is None:
            return 0
        due = self._announcements.drain(now)
        for index, announcement in enumerate(due):
            info = self._session.publish(self._announcements.topic, announcement.to_wire(), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self._announcements.requeue(due[index:])
                return index
            self._announcements.sent += 1
        return len(due)

    def publish_camera_status(self, status: CameraStatus) -> None:
        topic = camera_status_topic(status.site_id, status.gateway_id, status.camera_id)
        self._session.publish(topic, status.to_wire(), qos=1, retain=True)

    def wait_until_settled(self, timeout: float) -> bool:
        """Keep flushing until ingest confirmed every pending message, or the timeout passes."""
        deadline = time.monotonic() + timeout
        while True:
            self.flush_due()
            if self._outbox.pending_count() == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def stop(self) -> None:
        """Say offline (a clean shutdown is not a lost gateway) and disconnect."""
        if self.connected and self._announces_gateway:
            info = self._session.publish(
                self._status_topic, self._gateway_status(GatewayState.OFFLINE), qos=1, retain=True
            )
            # Lost the connection meanwhile: the broker publishes the last will instead.
            with contextlib.suppress(RuntimeError):
                info.wait_for_publish(timeout=2.0)
        self._session.stop()


def _as_historical(payload: bytes) -> bytes:
    """The same message (same message_id) marked as published late: a resend or a backlog.

    Kept in the encoding it was stored in (JSON or a binary frame)."""
    event = decode_event(payload)
    return encode_event(event.model_copy(update={"historical": True}), encoding_of(payload))


def _properties_for(payload: bytes) -> Properties | None:
    """A frame says what it is in MQTT 5's content type too (informative: ingest reads the
    magic bytes); JSON goes without properties, as before."""
    if not is_event_frame(payload):
        return None
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ContentType = FRAME_CONTENT_TYPE
    return properties
