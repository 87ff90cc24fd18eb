"""Tunables of the console and worker view (kept apart so dispatch/http/deps.py can import them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WebOptions:
    """How the live feed polls and how large an uploaded after-photo may be."""

    feed_poll_seconds: float = 0.2  # the shared audit-log poller; an event shows well under 1 s
    feed_heartbeat_seconds: float = 15.0  # an SSE comment keeps proxies from closing the stream
    feed_catchup_limit: int = 1000  # entries replayed to a reconnecting console, at most
    attachment_max_bytes: int = 8 * 1024 * 1024
    # Charts lag this much, up to twice it while a background count runs; they cost a scan.
    stats_max_age_seconds: float = 15.0
