"""MQTT connection settings both sides use, a client factory with the project's defaults, and
the one session helper every long-lived client is built on."""

from __future__ import annotations

import os
import re
import secrets
import socket
import ssl
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
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


Subscriptions = Sequence[tuple[str, int]]
"""Topic filters and their QoS."""

_REFUSALS_KEPT = 1024  # broker refusals of publishes no one waits for are dropped, oldest first
STOP_DRAIN_SECONDS = 5.0  # how long a stop waits for the broker to confirm what was published


@dataclass(frozen=True, slots=True)
class LastWill:
    """What the broker publishes for the client when its connection is lost, not closed."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class PublishError(Exception):
    """A publish the broker did not take or did not confirm; the text says why."""


def _no_subscriptions() -> Subscriptions:
    return ()


class MqttSession:
    """One MQTT v5 connection that keeps itself up: reconnects, subscribes again on every
    connect, tracks whether it is connected (and subscribed), and publishes.

    With ``session_expiry_seconds`` the session is persistent (clean_start=False): the broker
    keeps its subscriptions and queued QoS 1 messages while the client is away. Without it,
    the client starts clean on its first connect only (paho's default). The hooks run on paho's
    network thread; each client logs in its own words there.
    """

    def __init__(
        self,
        broker: BrokerSettings,
        client_id: str,
        *,
        subscriptions: Callable[[], Subscriptions] = _no_subscriptions,
        session_expiry_seconds: int | None = None,
        receive_maximum: int | None = None,
        will: LastWill | None = None,
        manual_ack: bool = False,
        on_message: Callable[[mqtt.MQTTMessage], None] | None = None,
        on_connected: Callable[[Subscriptions], None] | None = None,
        on_refused: Callable[[ReasonCode], None] | None = None,
        on_subscribe_refused: Callable[[list[str]], None] | None = None,
        on_lost: Callable[[ReasonCode], None] | None = None,
    ) -> None:
        """``subscriptions`` is asked on every connect; ``on_connected`` gets what was
        subscribed, before ``connected`` is set. ``receive_maximum`` caps the messages the
        broker sends unacknowledged (a persistent session's CONNECT only)."""
        self.broker = broker
        self.client_id = client_id
        self.connected = threading.Event()
        self.ready = threading.Event()  # connected and every subscription granted
        self._subscriptions = subscriptions
        self._session_expiry = session_expiry_seconds
        self._receive_maximum = receive_maximum
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_refused = on_refused
        self._on_subscribe_refused = on_subscribe_refused
        self._on_lost = on_lost
        self._lock = threading.Lock()
        self._refused: OrderedDict[int, str] = OrderedDict()  # mid -> the broker's reason
        self._unconfirmed: deque[mqtt.MQTTMessageInfo] = deque()  # QoS 1/2 publishes, in order
        self._client = make_client(broker, client_id)
        if manual_ack:
            self._client.manual_ack_set(True)
        if will is not None:
            self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self._client.on_connect = self._connect_answered
        self._client.on_subscribe = self._subscribe_answered
        self._client.on_disconnect = self._disconnected
        self._client.on_message = self._message_arrived
        self._client.on_publish = self._publish_answered

    def start(self) -> None:
        """Connect in the background; paho's thread reconnects whenever the connection drops."""
        broker = self.broker
        if self._session_expiry is None:
            self._client.connect_async(broker.host, broker.port, keepalive=broker.keepalive_seconds)
        else:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self._session_expiry
            if self._receive_maximum is not None:
                properties.ReceiveMaximum = self._receive_maximum
            self._client.connect_async(
                broker.host,
                broker.port,
                keepalive=broker.keepalive_seconds,
                clean_start=False,
                properties=properties,
            )
        self._client.loop_start()

    def stop(self, drain_seconds: float = STOP_DRAIN_SECONDS) -> None:
        """Wait (at most ``drain_seconds``) until the broker has confirmed this session's QoS 1
        and 2 publishes, then disconnect cleanly (no last will) and stop paho's thread.

        Why wait: closing a socket that still holds unread bytes (the broker's PUBACKs) makes
        the kernel reset the connection, and the broker then drops whatever of ours it had not
        read yet: the manual acks and the DISCONNECT sent just before. Once the broker has
        answered our last publish it has read everything sent before it. A message the broker
        sends us at the very moment of the stop can still cause that reset; what it drops is
        then redelivered to the persistent session, where idempotent handling settles it.
        """
        deadline = time.monotonic() + drain_seconds
        with self._lock:
            unconfirmed = list(self._unconfirmed)
            self._unconfirmed.clear()
        for info in unconfirmed:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._client.is_connected():
                break  # not connected: paho keeps them for a next connection that never comes
            try:
                info.wait_for_publish(remaining)
            except (RuntimeError, ValueError):
                continue  # paho never sent it (its rc says why); nothing to wait for
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()
        self.ready.clear()

    def is_connected(self) -> bool:
        """paho's own view of the connection, which it drops before the disconnect hook runs."""
        return self._client.is_connected()

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> mqtt.MQTTMessageInfo:
        """Hand a message to paho; its ``rc`` says whether paho took it."""
        return self._publish(topic, payload, qos, retain, properties)

    def _publish(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> mqtt.MQTTMessageInfo:
        """Publish, remembering a QoS 1/2 message until the broker confirms it (see stop)."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if qos > 0 and info.rc == mqtt.MQTT_ERR_SUCCESS:
            with self._lock:
                self._unconfirmed.append(info)
                while self._unconfirmed and self._unconfirmed[0].is_published():
                    self._unconfirmed.popleft()  # confirmations come mostly in order
        return info

    def publish_and_wait(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        timeout: float,
        properties: Properties | None = None,
    ) -> None:
        """Publish and wait for PUBACK (QoS 1) or PUBCOMP (QoS 2); raises PublishError."""
        if not self.connected.is_set():
            raise PublishError(
                f"not connected to the MQTT broker {self.broker.host}:{self.broker.port}"
            )
        info = self._publish(topic, payload, qos, properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise PublishError(f"MQTT publish failed: {mqtt.error_string(info.rc)}")
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise PublishError(f"MQTT publish failed: {exc}") from exc
        if not info.is_published():
            raise PublishError(f"no acknowledgement from the broker within {timeout:g}s")
        with self._lock:
            refused = self._refused.pop(info.mid, None)
        if refused is not None:
            raise PublishError(f"the broker refused the message: {refused}")

    def subscribe(self, topic: str, qos: int = 1) -> None:
        """Subscribe now, for a topic wanted for a while; ``subscriptions`` must list it too
        while it is wanted, so that a reconnect subscribes again. Not connected: nothing."""
        self._client.subscribe(topic, qos=qos)

    def unsubscribe(self, topic: str) -> None:
        self._client.unsubscribe(topic)

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a received message (with ``manual_ack``)."""
        self._client.ack(mid, qos)

    def _connect_answered(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            if self._on_refused is not None:
                self._on_refused(reason_code)
            return
        subscriptions = self._subscriptions()
        if subscriptions:  # subscribing here means every reconnect resubscribes
            client.subscribe(list(subscriptions))
        if self._on_connected is not None:
            self._on_connected(subscriptions)
        self.connected.set()
        if not subscriptions:
            self.ready.set()

    def _subscribe_answered(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _mid: int,
        reason_codes: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        failed = [str(code) for code in reason_codes if code.is_failure]
        if failed:
            if self._on_subscribe_refused is not None:
                self._on_subscribe_refused(failed)
            return
        self.ready.set()

    def _disconnected(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        self.connected.clear()
        self.ready.clear()
        if self._on_lost is not None:
            self._on_lost(reason_code)

    def _message_arrived(
        self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage
    ) -> None:
        if self._on_message is not None:
            self._on_message(message)

    def _publish_answered(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            with self._lock:
                self._refused[mid] = str(reason_code)
                while len(self._refused) > _REFUSALS_KEPT:
                    self._refused.popitem(last=False)
