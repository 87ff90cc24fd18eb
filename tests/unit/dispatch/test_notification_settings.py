"""Notification settings: sane defaults, clear refusals, and no example secret in production."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from civicwatch.config import CivicwatchConfig
from dispatch.notification_settings import NotificationEvent, NotificationSettings
from tests.factories import make_registry

HOOK = {
    "department": "fire_rescue",
    "url": "https://119.example.gov.cn/hooks/civicwatch",
    "secret": "f1re-rescue-shared-k3y",
}


def test_defaults_match_the_documented_ones() -> None:
    settings = NotificationSettings.model_validate({"webhooks": [HOOK]})
    assert settings.mqtt.enabled
    assert settings.mqtt.qos == 1
    assert settings.topic("fire_rescue") == "civicwatch/v1/dispatch/fire_rescue/cases"
    retry = settings.retry
    assert (retry.base_seconds, retry.factor, retry.max_seconds, retry.max_attempts) == (
        10,
        2,
        3600,
        10,
    )
    assert (settings.timeout_seconds, settings.poll_seconds) == (5, 2)
    assert settings.webhooks[0].events == list(NotificationEvent)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"webhooks": [{**HOOK, "secret": "short"}]}, "webhooks.0.secret"),
        ({"webhooks": [{**HOOK, "url": "ftp://example.org/x"}]}, "URL scheme should be"),
        ({"webhooks": [{**HOOK, "department": "tax_office"}]}, "department"),
        ({"webhooks": [{**HOOK, "events": ["case.deleted"]}]}, "events"),
        ({"webhooks": [{**HOOK, "events": []}]}, "at least 1 item"),
        ({"webhooks": [HOOK, HOOK]}, "listed twice"),
        ({"mqtt": {"topic_template": "civicwatch/v1/dispatch/cases"}}, "must contain"),
        ({"mqtt": {"topic_template": "x/{department}/{site}"}}, "may only use"),
        ({"mqtt": {"topic_template": "x/{department}/#"}}, "wildcards"),
        ({"mqtt": {"qos": 0}}, "qos"),
        ({"retry": {"max_attempts": 0}}, "max_attempts"),
        ({"colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_refused_by_name(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        NotificationSettings.model_validate(change)
    assert problem in str(caught.value)


def _config(secret: str) -> CivicwatchConfig:
    return CivicwatchConfig.model_validate(
        {
            "environment": "production",
            "sites": make_registry().model_dump()["sites"],
            "server": {"notifications": {"webhooks": [{**HOOK, "secret": secret}]}},
        }
    )


def test_production_refuses_an_example_webhook_secret() -> None:
    with pytest.raises(ValidationError) as caught:
        _config("change-me-before-going-live")
    assert "server.notifications.webhooks[fire_rescue: https://119.example.gov.cn" in str(
        caught.value
    )
    assert _config("q8Jx2-real-random-secret").server.notifications.webhooks[0].secret


def test_existing_configs_load_without_a_notifications_section() -> None:
    config = CivicwatchConfig.model_validate({"sites": make_registry().model_dump()["sites"]})
    assert config.server.notifications.webhooks == []
