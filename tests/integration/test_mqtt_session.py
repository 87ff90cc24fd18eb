"""The MQTT session helper every long-lived client is built on, against a real broker."""

from __future__ import annotations

import queue
import threading

import pytest

from contracts.mqtt import MqttSession, PublishError
from tests.conftest import MosquittoProcess

TIMEOUT = 10.0


def test_a_persistent_session_gets_what_was_published_while_it_was_away(
    mosquitto: MosquittoProcess,
) -> None:
    received: queue.SimpleQueue[bytes] = queue.SimpleQueue()

    def session() -> MqttSession:
        return MqttSession(
            mosquitto.settings,
            "session-test-away",
            subscriptions=lambda: [("test/away", 1)],
            session_expiry_seconds=60,
            on_message=lambda message: received.put(bytes(message.payload)),
        )

    first = session()
    first.start()
    assert first.ready.wait(TIMEOUT), "never subscribed"
    first.stop()
    assert not first.connected.is_set()
    sender = MqttSession(mosquitto.settings, "session-test-sender")
    sender.start()
    try:
        assert sender.connected.wait(TIMEOUT)
        assert sender.ready.is_set(), "nothing to subscribe to: ready once connected"
        sender.publish_and_wait("test/away", b"while away", qos=1, timeout=TIMEOUT)
    finally:
        sender.stop()
    again = session()
    again.start()
    try:
        assert received.get(timeout=TIMEOUT) == b"while away"
    finally:
        again.stop()


def test_publish_and_wait_says_why_nothing_was_sent(mosquitto: MosquittoProcess) -> None:
    session = MqttSession(mosquitto.settings, "session-test-idle")
    expected = f"not connected to the MQTT broker 127.0.0.1:{mosquitto.port}"
    with pytest.raises(PublishError, match=expected):
        session.publish_and_wait("test/idle", b"x", qos=1, timeout=1.0)


def test_the_hooks_hear_a_lost_broker_and_the_session_comes_back(
    mosquitto: MosquittoProcess,
) -> None:
    connects: list[list[tuple[str, int]]] = []
    lost = threading.Event()
    session = MqttSession(
        mosquitto.settings,
        "session-test-hooks",
        subscriptions=lambda: [("test/hooks", 1)],
        on_connected=lambda subscribed: connects.append(list(subscribed)),
        on_lost=lambda _reason: lost.set(),
    )
    session.start()
    try:
        assert session.ready.wait(TIMEOUT)
        mosquitto.stop()
        assert lost.wait(TIMEOUT), "the disconnect hook never ran"
        assert not session.connected.is_set()
        assert not session.ready.is_set()
        assert not session.is_connected()
        mosquitto.start()
        assert session.ready.wait(3 * TIMEOUT), "did not reconnect and subscribe again"
        assert connects == [[("test/hooks", 1)], [("test/hooks", 1)]]
    finally:
        session.stop()
