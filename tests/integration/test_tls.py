"""MQTT over TLS with a locally generated CA, through the product's own client factory.

deploy/mosquitto/make-certs.sh makes the CA and the broker certificate with the openssl CLI;
the broker runs deploy/mosquitto/mosquitto.conf (the dynamic-security plugin, its file made by
make-dynsec.sh) with its commented TLS listener switched on.
Clients are built by contracts.mqtt.make_client from BrokerSettings.tls, as the edge and ingest
build theirs.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from pydantic import SecretStr

from contracts.mqtt import BrokerSettings, TlsSettings, make_client
from contracts.topics import ROOT, violation_topic
from tests.conftest import free_port
from tests.integration.test_mosquitto_acl import DEPLOY, PASSWORDS, broker_config, running_broker
from tests.integration.test_mosquitto_dynsec import make_dynsec

MAKE_CERTS = DEPLOY / "make-certs.sh"
WAIT_S = 5.0


@dataclass(frozen=True)
class TlsBroker:
    plain_port: int
    tls_port: int
    certs: Path

    def settings(self, username: str, ca_file: Path | None) -> BrokerSettings:
        tls = TlsSettings(ca_file=ca_file) if ca_file is not None else None
        return BrokerSettings(
            port=self.tls_port, username=username, password=SecretStr(PASSWORDS[username]), tls=tls
        )


def make_certs(out: Path, *names: str) -> Path:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI is not installed (Debian package openssl)")
    subprocess.run([str(MAKE_CERTS), str(out), *names], check=True, capture_output=True)
    return out


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TlsBroker]:
    certs = make_certs(tmp_path / "certs", "127.0.0.1", "localhost")
    dynsec, _ = make_dynsec(tmp_path, PASSWORDS)
    plain, tls = free_port(), free_port()
    production = (DEPLOY / "mosquitto.conf").read_text()
    config = broker_config(production, tmp_path, plain, tls_port=tls, certs=certs, dynsec=dynsec)
    with running_broker(tmp_path, config, plain, tls):
        yield TlsBroker(plain, tls, certs)


class Connection:
    """A product client (make_client) connected synchronously: connect errors surface here."""

    def __init__(self, settings: BrokerSettings) -> None:
        self.client = make_client(settings, f"tls-test-{uuid.uuid4().hex[:8]}")
        self.connack: Any = None
        self.received: list[tuple[str, bytes]] = []
        self._connected = threading.Event()
        self._message = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect(settings.host, settings.port, keepalive=settings.keepalive_seconds)
        self.client.loop_start()

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, code: Any, _p: Any) -> None:
        self.connack = code
        self._connected.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.received.append((message.topic, bytes(message.payload)))
        self._message.set()

    def wait_connected(self) -> bool:
        return self._connected.wait(WAIT_S) and not self.connack.is_failure

    def wait_message(self, timeout: float = WAIT_S) -> bool:
        return self._message.wait(timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_gateway_and_ingest_talk_over_tls_with_the_ca(tls_broker: TlsBroker) -> None:
    ca = tls_broker.certs / "ca.crt"
    ingest = Connection(tls_broker.settings("ingest", ca))
    gateway = Connection(tls_broker.settings("gw-a", ca))
    try:
        assert ingest.wait_connected(), ingest.connack
        assert gateway.wait_connected(), gateway.connack
        ingest.client.subscribe(f"{ROOT}/#", qos=1)
        topic = violation_topic("site-1", "gw-a", "cam-1")
        # Retry until the subscription is in place; each publish is a full TLS round trip.
        for _ in range(20):
            gateway.client.publish(topic, b"over tls", qos=1).wait_for_publish(WAIT_S)
            if ingest.wait_message(0.25):
                break
        assert (topic, b"over tls") in ingest.received
        assert isinstance(gateway.client.socket(), ssl.SSLSocket)
    finally:
        ingest.close()
        gateway.close()


def test_a_client_without_the_ca_cannot_connect(tls_broker: TlsBroker) -> None:
    """Trusting only the system's public CAs, a client refuses the private broker certificate."""
    system_cas = ssl.get_default_verify_paths().cafile
    if system_cas is None:
        pytest.fail("no system CA bundle (Debian package ca-certificates)")
    settings = tls_broker.settings("gw-a", Path(system_cas))
    with pytest.raises(ssl.SSLCertVerificationError):
        Connection(settings).close()


def test_a_client_trusting_another_ca_cannot_connect(tls_broker: TlsBroker, tmp_path: Path) -> None:
    """A broker certificate from another CA (e.g. a man in the middle) is refused."""
    other = make_certs(tmp_path / "other", "127.0.0.1")
    with pytest.raises(ssl.SSLCertVerificationError):
        Connection(tls_broker.settings("gw-a", other / "ca.crt")).close()


def test_plain_mqtt_to_the_tls_port_gets_no_session(tls_broker: TlsBroker) -> None:
    settings = tls_broker.settings("gw-a", None)
    try:
        connection = Connection(settings)
    except OSError:
        return  # the broker dropped the plain connection before paho finished connecting
    try:
        assert not connection.wait_connected()
    finally:
        connection.close()
