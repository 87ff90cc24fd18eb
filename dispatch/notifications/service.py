"""The notification parts the server runs, wired together."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from contracts.mqtt import BrokerSettings
from dispatch.notification_settings import NotificationSettings
from dispatch.notifications.metrics import NotificationMetrics
from dispatch.notifications.outbox import Now
from dispatch.notifications.publisher import MqttPublisher
from dispatch.notifications.pump import Notifier
from dispatch.notifications.sender import Delivery, NotificationSender
from storage.database import SessionFactory
from storage.tables import utcnow


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
    clock: Now = utcnow,
    deliveries: Mapping[str, Delivery] | None = None,
) -> Notifications:
    """Wire the pump, the sender and (when MQTT notifications are on) their MQTT client."""
    metrics = NotificationMetrics(registry)
    publisher = MqttPublisher(broker, settings.mqtt.client_id) if settings.mqtt.enabled else None
    return Notifications(
        settings=settings,
        notifier=Notifier(session_factory, settings, clock),
        sender=NotificationSender(
            session_factory, settings, publisher, metrics, clock, deliveries=deliveries
        ),
        publisher=publisher,
        metrics=metrics,
    )
