"""Settings for notifications to departments (webhooks, MQTT), kept free of server libraries:
the config loader imports them on gateways too (which have no server extra)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    field_validator,
    model_validator,
)

from contracts.mqtt import process_client_id
from dispatch.config import Department


class NotificationEvent(StrEnum):
    """What a department is told. A transfer tells both sides: the new department ``in``,
    the old one ``out``."""

    DISPATCHED = "case.dispatched"
    TRANSFERRED_IN = "case.transferred_in"
    TRANSFERRED_OUT = "case.transferred_out"
    ESCALATED = "case.escalated"
    REOPENED = "case.reopened"
    MERGED = "case.merged"
    PARKED = "case.parked"
    VERIFIED = "case.verified"
    CLOSED = "case.closed"


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookSettings(_Settings):
    """One department's HTTP endpoint. Several per department are fine (one row each)."""

    department: Department
    url: HttpUrl = Field(description="http(s) URL that receives a signed POST per event")
    secret: SecretStr = Field(min_length=16, description="HMAC-SHA256 key shared with the receiver")
    events: list[NotificationEvent] = Field(
        default_factory=lambda: list(NotificationEvent),
        min_length=1,
        description="which events this endpoint gets; default all",
    )

    @field_validator("url")
    @classmethod
    def _fits_the_column(cls, url: HttpUrl) -> HttpUrl:
        if len(str(url)) > 512:
            raise ValueError("webhook URL longer than 512 characters")
        return url


class MqttNotificationSettings(_Settings):
    enabled: bool = True
    topic_template: str = Field(
        default="civicwatch/v1/dispatch/{department}/cases",
        description="the topic per department; {department} is the department's id",
    )
    qos: Literal[1, 2] = 1
    client_id: str = Field(
        # Per process: a fixed default made two servers on one broker kick each other off.
        default_factory=lambda: process_client_id("civicwatch-notifier"),
        min_length=1,
        max_length=128,
        description="default civicwatch-notifier-{host}-{pid}-{random}; unique if set",
    )

    @field_validator("topic_template")
    @classmethod
    def _one_department_placeholder(cls, template: str) -> str:
        try:
            topic = template.format(department="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"topic_template may only use {{department}}: {exc}") from exc
        if "{department}" not in template:
            raise ValueError("topic_template must contain {department}")
        if "+" in topic or "#" in topic or not topic or len(topic) > 400:
            raise ValueError("topic_template must give a plain topic (no + or # wildcards)")
        return template


class RetrySettings(_Settings):
    base_seconds: float = Field(default=10.0, gt=0)
    factor: float = Field(default=2.0, ge=1)
    max_seconds: float = Field(default=3600.0, gt=0)
    max_attempts: int = Field(default=10, ge=1)


class NotificationSettings(_Settings):
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    mqtt: MqttNotificationSettings = Field(default_factory=MqttNotificationSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    timeout_seconds: float = Field(default=5.0, gt=0, le=120, description="per delivery")
    poll_seconds: float = Field(default=2.0, gt=0, description="how often pump and sender run")
    public_url: HttpUrl = Field(
        default=HttpUrl("http://127.0.0.1:8080"),
        description="where people reach this server: the links in each notification",
    )

    @model_validator(mode="after")
    def _unique_webhooks(self) -> NotificationSettings:
        seen: set[tuple[str, str]] = set()
        for hook in self.webhooks:
            key = (hook.department.value, str(hook.url))
            if key in seen:
                raise ValueError(f"webhook {hook.url} is listed twice for {hook.department}")
            seen.add(key)
        return self

    def topic(self, department: str) -> str:
        return self.mqtt.topic_template.format(department=department)
