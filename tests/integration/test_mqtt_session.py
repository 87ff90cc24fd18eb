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


def test_a_stop_right_after_acking_and_answering_leaves_nothing_for_the_broker_to_redeliver(
    mosquitto: MosquittoProcess,
) -> None:
    """Ingest's shape: a manual-ack session acks what it handled and publishes a QoS 1 answer
    for each, then stops. Closing the socket while the broker's PUBACKs for those answers are
    still unread makes the kernel reset the connection, and the broker drops what it had not
    yet read, our acks included; the stop must wait for the broker's answers first."""
    count = 200
    received: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()

    def consumer() -> MqttSession:
        return MqttSession(
            mosquitto.settings,
            "session-test-drain",
            subscriptions=lambda: [("test/drain/in", 1)],
            session_expiry_seconds=60,
            manual_ack=True,
            on_message=lambda message: received.put((message.mid, message.qos)),
        )

    first = consumer()
    first.start()
    assert first.ready.wait(TIMEOUT), "never subscribed"
    sender = MqttSession(mosquitto.settings, "session-test-drain-sender")
    sender.start()
    try:
        assert sender.connected.wait(TIMEOUT)
        for number in range(count):
            sender.publish("test/drain/in", str(number).encode(), qos=1)
        sender.publish_and_wait("test/drain/in", b"last", qos=1, timeout=TIMEOUT)
    finally:
        sender.stop()
    for _ in range(count + 1):
        mid, qos = received.get(timeout=TIMEOUT)
        first.ack(mid, qos)
        first.publish("test/drain/answers", b"handled", qos=1)
    first.stop()

    again = consumer()
    again.start()
    try:
        assert again.ready.wait(TIMEOUT), "never subscribed again"
        redelivered = []
        try:
            while True:  # a redelivery comes right after the CONNACK; a second is plenty
                redelivered.append(received.get(timeout=1.0))
        except queue.Empty:
            pass
    finally:
        again.stop()
    assert redelivered == [], "the broker redelivered messages acked before the stop"
