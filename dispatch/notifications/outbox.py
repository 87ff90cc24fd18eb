"""The outbox's vocabulary: channels, delivery states, a new pending row, and the error a failed
delivery raises."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

import httpx

from storage.tables import Notification

# What the parts ask for the current time (tests pass a fixed one).
Now = Callable[[], datetime]


class Channel(StrEnum):
    WEBHOOK = "webhook"
    MQTT = "mqtt"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


def pending_notification(
    *,
    channel: Channel,
    department: str,
    target: str,
    event_type: str,
    case_id: int | None,
    payload: dict[str, Any],
    now: datetime,
) -> Notification:
    """A new outbox row, due now, that the sender will deliver (and retry)."""
    return Notification(
        channel=channel.value,
        department=department,
        target=target,
        event_type=event_type,
        case_id=case_id,
        payload=payload,
        status=DeliveryStatus.PENDING.value,
        attempts=0,
        next_attempt_at=now,
        last_error="",
        created_at=now,
    )


class DeliveryError(Exception):
    """A delivery that did not happen; the text goes into ``last_error``."""


def post_json(
    http: httpx.Client, target: str, body: dict[str, Any], user_agent: str, event: str
) -> None:
    """POST ``body`` as UTF-8 JSON to a messaging gateway; any failure is a DeliveryError
    (the sender retries the row)."""
    try:
        response = http.post(
            target,
            content=json.dumps(body, ensure_ascii=False, sort_keys=True).encode(),
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": user_agent,
                "X-Civicwatch-Event": event,
            },
        )
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
    if not response.is_success:
        raise DeliveryError(f"HTTP {response.status_code}: {response.text[:200]}")
