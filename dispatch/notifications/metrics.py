"""Notification metrics: delivery attempts counted as they happen, the backlog at scrape time."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from dispatch.notifications.outbox import Channel, DeliveryStatus
from storage.database import SessionFactory
from storage.tables import Notification


class NotificationMetrics:
    """Delivery attempts by channel and outcome, counted by the sender."""

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
