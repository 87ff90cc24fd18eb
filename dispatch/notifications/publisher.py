"""The MQTT transport of notifications: one connection of its own, acknowledged publishes."""

from __future__ import annotations

import logging
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contracts.mqtt import BrokerSettings, make_client
from dispatch.notifications.outbox import DeliveryError

log = logging.getLogger(__name__)


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
