"""The MQTT transport of notifications: one connection of its own, acknowledged publishes."""

from __future__ import annotations

import logging

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contracts.mqtt import BrokerSettings, MqttSession, PublishError
from dispatch.notifications.outbox import DeliveryError

log = logging.getLogger(__name__)


class MqttPublisher:
    """One MQTT connection of its own for notifications; publish() waits for the broker's ack."""

    def __init__(self, broker: BrokerSettings, client_id: str) -> None:
        self.client_id = client_id
        self._session = MqttSession(
            broker, client_id, on_refused=self._on_refused, on_lost=self._on_lost
        )
        self.connected = self._session.connected

    def start(self) -> None:
        self._session.start()

    def stop(self) -> None:
        self._session.stop()

    def publish(self, topic: str, body: bytes, qos: int, timeout: float, event: str) -> None:
        """Publish and wait for PUBACK (QoS 1) or PUBCOMP (QoS 2); raises DeliveryError."""
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ContentType = "application/json"
        properties.UserProperty = [("civicwatch-event", event)]
        try:
            self._session.publish_and_wait(topic, body, qos, timeout, properties)
        except PublishError as exc:
            raise DeliveryError(str(exc)) from exc

    def _on_refused(self, reason_code: ReasonCode) -> None:
        log.error("broker refused the notifier %s: %s", self.client_id, reason_code)

    def _on_lost(self, reason_code: ReasonCode) -> None:
        log.info("notifier %s disconnected: %s", self.client_id, reason_code)
