"""MQTT connection settings both sides use, and a client factory with the project's defaults."""

from __future__ import annotations

import os
import re
import secrets
import socket
import ssl
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel, ConfigDict, Field, SecretStr


class TlsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


class BrokerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: TlsSettings | None = None
    keepalive_seconds: int = Field(default=30, ge=5, le=3600)


def host_name() -> str:
    """This machine's name, reduced to what is safe in a client id or a topic level."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", socket.gethostname()).strip("-")
    return name[:40] or "host"


def process_client_id(role: str) -> str:
    """A client id no other process has: ``{role}-{host}-{pid}-{random}``.

    For clients without persistent broker state (the notifier, a replay). The broker closes
    an old connection when a new one brings the same id, so two processes sharing a fixed id
    kick each other off in turn. A client with a persistent session needs an id that survives
    its restarts instead (ingest: civicwatch.server.resolve_ingest).
    """
    return f"{role}-{host_name()}-{os.getpid()}-{secrets.token_hex(3)}"


def make_client(settings: BrokerSettings, client_id: str) -> mqtt.Client:
    """An MQTT v5 client with callback API v2, credentials and TLS applied; not yet connected."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
    )
    if settings.username is not None:
        password = settings.password.get_secret_value() if settings.password else None
        client.username_pw_set(settings.username, password)
    if settings.tls is not None:
        client.tls_set(
            ca_certs=str(settings.tls.ca_file),
            certfile=str(settings.tls.cert_file) if settings.tls.cert_file else None,
            keyfile=str(settings.tls.key_file) if settings.tls.key_file else None,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(100)
    return client
