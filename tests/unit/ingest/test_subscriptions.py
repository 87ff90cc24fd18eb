"""Ingest subscribes to its own gateways' topics, shared where one worker must handle each."""

from __future__ import annotations

from contracts.sites import SiteConfig, SiteRegistry
from ingest.subscriptions import ingest_subscriptions
from tests.factories import GATEWAY, OTHER_GATEWAY, OTHER_SITE, SITE, make_registry


def test_filters_name_each_registered_gateway() -> None:
    filters = [topic for topic, _qos in ingest_subscriptions(make_registry(), "g", True)]
    assert filters == [
        f"$share/g/civicwatch/v1/{SITE}/{GATEWAY}/+/violation",
        f"$share/g/civicwatch/v1/{OTHER_SITE}/{OTHER_GATEWAY}/+/violation",
        f"civicwatch/v1/{SITE}/{GATEWAY}/status",
        f"civicwatch/v1/{SITE}/{GATEWAY}/+/status",
        f"civicwatch/v1/{OTHER_SITE}/{OTHER_GATEWAY}/status",
        f"civicwatch/v1/{OTHER_SITE}/{OTHER_GATEWAY}/+/status",
        f"$share/g/civicwatch/v1/{SITE}/{GATEWAY}/+/verify_result",
        f"$share/g/civicwatch/v1/{OTHER_SITE}/{OTHER_GATEWAY}/+/verify_result",
    ]


def test_without_gateways_everything_is_heard_and_refused() -> None:
    empty = SiteRegistry(sites=[SiteConfig(id=SITE)])  # a site, its gateways not yet added
    filters = [topic for topic, _qos in ingest_subscriptions(empty, None, False)]
    assert filters == [
        "civicwatch/v1/+/+/+/violation",
        "civicwatch/v1/+/+/status",
        "civicwatch/v1/+/+/+/status",
    ]
