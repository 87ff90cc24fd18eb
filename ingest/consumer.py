"""The MQTT side of ingest: a persistent session that acks each message only once it is stored."""

from __future__ import annotations

import logging
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from contracts.acks import IngestAck
from contracts.mqtt import BrokerSettings, make_client
from contracts.sites import SiteRegistry
from contracts.status import CameraStatus, GatewayStatus
from contracts.topics import (
    STATUS_SUBSCRIPTIONS,
    VIOLATION_SUBSCRIPTION,
    ack_topic,
    parse_camera_topic,
)
from ingest.config import IngestSettings
from ingest.handler import ViolationHandler
from ingest.metrics import IngestMetrics
from ingest.store import IngestService
from ingest.validation import Refusal, RefusalReason, describe_errors

log = logging.getLogger(__name__)

_RETRY_FIRST_SECONDS = 0.5
_RETRY_MAX_SECONDS = 30.0


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
    ) -> None:
        self._broker = broker
        self._settings = settings
        self._service = service
        self._metrics = metrics
        self._handler = ViolationHandler(service, registry, metrics, settings.max_payload_bytes)
        self._stopping = threading.Event()
        self.ready = threading.Event()  # connected and subscribed
        self._client = make_client(broker, settings.client_id)
        self._client.manual_ack_set(True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    def start(self) -> None:
        self._stopping.clear()
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self._settings.session_expiry_seconds
        self._client.connect_async(
            self._broker.host,
            self._broker.port,
            keepalive=self._broker.keepalive_seconds,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._stopping.set()
        self._client.disconnect()
        self._client.loop_stop()
        self.ready.clear()

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error(
                "broker %s:%d refused ingest: %s", self._broker.host, self._broker.port, reason_code
            )
            return
        # Subscribing here means a reconnect resubscribes.
        client.subscribe(
            [(VIOLATION_SUBSCRIPTION, 1), *((topic, 1) for topic in STATUS_SUBSCRIPTIONS)]
        )
        log.info("ingest connected to %s:%d", self._broker.host, self._broker.port)

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _mid: int,
        reason_codes: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        failed = [str(code) for code in reason_codes if code.is_failure]
        if failed:
            log.error("broker refused ingest's subscriptions: %s", ", ".join(failed))
            return
        self.ready.set()

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self.ready.clear()
        if not self._stopping.is_set():
            log.warning("ingest lost the broker (%s); reconnecting", reason_code)

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            if message.topic.endswith("/violation"):
                settled = self._handle_violation(message)
            else:
                settled = self._handle_status(message)
        except Exception:  # a bug must not kill the network loop; unacked, it comes back later
            log.exception("failed to handle a message on %s", message.topic)
            return
        if settled:
            client.ack(message.mid, message.qos)

    def _handle_violation(self, message: mqtt.MQTTMessage) -> bool:
        """True once the message is stored or refused for good; False leaves it to redelivery."""
        self._metrics.events_received.inc()
        payload = bytes(message.payload)
        delay = _RETRY_FIRST_SECONDS
        while True:  # the database may be down: retry, the broker queues for us meanwhile
            try:
                ack = self._handler.handle(message.topic, payload)
                break
            except (SQLAlchemyError, OSError) as exc:
                log.error(
                    "cannot store message from %s (%s); retry in %.1fs", message.topic, exc, delay
                )
            if self._stopping.wait(delay):
                return False
            delay = min(delay * 2, _RETRY_MAX_SECONDS)
        if ack is not None:
            self._send_ack(message.topic, ack)
        return True

    def _send_ack(self, topic: str, ack: IngestAck) -> None:
        claimed = parse_camera_topic(topic)
        if claimed is None:
            return  # no gateway to answer
        self._client.publish(ack_topic(claimed.site_id, claimed.gateway_id), ack.to_wire(), qos=1)

    def _handle_status(self, message: mqtt.MQTTMessage) -> bool:
        if not message.payload:
            return True  # a cleared retained message
        try:
            if parse_camera_topic(message.topic) is None:  # civicwatch/v1/{site}/{gateway}/status
                self._service.record_gateway_status(
                    GatewayStatus.model_validate_json(message.payload)
                )
            else:
                self._service.record_camera_status(
                    CameraStatus.model_validate_json(message.payload)
                )
        except ValidationError as exc:
            reason = (
                RefusalReason.MALFORMED_JSON
                if any(e["type"] == "json_invalid" for e in exc.errors())
                else RefusalReason.INVALID
            )
            self._handler.record_refusal(message.topic, Refusal(reason, describe_errors(exc)))
            return True
        except SQLAlchemyError as exc:
            log.error("cannot store status from %s: %s", message.topic, exc)
            return False
        return True
