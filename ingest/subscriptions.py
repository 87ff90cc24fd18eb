"""What an ingest worker subscribes to: the topics of its own registry's gateways.

A deployment listens only to the gateways in its site registry. On a broker shared by two
deployments (staging and production) neither then receives, refuses and answers the other's
events, and an event of a gateway not (yet) registered waits in that gateway's outbox instead
of being refused: it arrives once the gateway is added.
"""

from __future__ import annotations

from contracts.sites import SiteRegistry
from contracts.topics import (
    ROOT,
    STATUS_SUBSCRIPTIONS,
    VERIFY_RESULT_CHANNEL,
    VERIFY_RESULT_SUBSCRIPTION,
    VIOLATION_SUBSCRIPTION,
)


def shared(topic: str, group: str | None) -> str:
    """In a shared group the broker hands each message to one member of the group."""
    return topic if group is None else f"$share/{group}/{topic}"


def ingest_subscriptions(
    registry: SiteRegistry, group: str | None, verification: bool
) -> list[tuple[str, int]]:
    """``(filter, QoS)`` pairs: violations (and verification answers) through ``group``, status
    to every worker (shared subscriptions get no retained messages; storing twice is harmless).

    A registry without gateways (a fresh install) listens to every gateway, so that what
    arrives is refused and counted rather than unseen.
    """
    prefixes = [
        f"{ROOT}/{site.id}/{gateway.id}" for site in registry.sites for gateway in site.gateways
    ]
    if not prefixes:
        violations = [VIOLATION_SUBSCRIPTION]
        statuses = list(STATUS_SUBSCRIPTIONS)
        answers = [VERIFY_RESULT_SUBSCRIPTION]
    else:
        violations = [f"{prefix}/+/violation" for prefix in prefixes]
        statuses = [f"{prefix}/{level}" for prefix in prefixes for level in ("status", "+/status")]
        answers = [f"{prefix}/+/{VERIFY_RESULT_CHANNEL}" for prefix in prefixes]
    topics = [shared(topic, group) for topic in violations] + statuses
    if verification:
        topics += [shared(topic, group) for topic in answers]
    return [(topic, 1) for topic in topics]
