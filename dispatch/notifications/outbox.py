"""The outbox's vocabulary: channels, delivery states, and the error a failed delivery raises."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

# What the parts ask for the current time (tests pass a fixed one).
Now = Callable[[], datetime]


class Channel(StrEnum):
    WEBHOOK = "webhook"
    MQTT = "mqtt"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class DeliveryError(Exception):
    """A delivery that did not happen; the text goes into ``last_error``."""
