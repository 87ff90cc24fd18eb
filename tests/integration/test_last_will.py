"""A gateway that dies without a goodbye is marked offline by the broker's last will."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from contracts.mqtt import make_client
from contracts.status import GatewayState, GatewayStatus
from contracts.topics import gateway_status_topic
from edge.outbox import Outbox
from edge.publisher import EdgePublisher
from tests.conftest import REPO_ROOT, MosquittoProcess

GATEWAY_PROCESS = """
import sys, time
from pathlib import Path
from contracts.mqtt import BrokerSettings
from edge.outbox import Outbox
from edge.publisher import EdgePublisher
broker = BrokerSettings(host="127.0.0.1", port=int(sys.argv[1]))
publisher = EdgePublisher(broker, "site-a", "gw-dies", Outbox(Path(sys.argv[2])), 5.0)
publisher.start()
time.sleep(600)
"""


def test_a_killed_gateway_is_reported_offline(mosquitto: MosquittoProcess, tmp_path: Path) -> None:
    states: list[GatewayState] = []
    changed = threading.Event()

    def on_message(_client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        states.append(GatewayStatus.model_validate_json(message.payload).state)
        changed.set()

    watcher = make_client(mosquitto.settings, "status-watcher")
    watcher.on_message = on_message
    watcher.connect(mosquitto.settings.host, mosquitto.settings.port)
    watcher.subscribe(gateway_status_topic("site-a", "gw-dies"), qos=1)
    watcher.loop_start()
    gateway = subprocess.Popen(
        [sys.executable, "-c", GATEWAY_PROCESS, str(mosquitto.port), str(tmp_path / "o.sqlite")],
        cwd=REPO_ROOT,
    )

    def reaches(state: GatewayState, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not (states and states[-1] is state) and time.monotonic() < deadline:
            changed.wait(0.5)
            changed.clear()
        return bool(states) and states[-1] is state

    try:
        assert reaches(GatewayState.ONLINE, timeout=30)
        gateway.send_signal(signal.SIGKILL)
        gateway.wait(10)
        assert reaches(GatewayState.OFFLINE, timeout=15)
    finally:
        gateway.kill()
        watcher.loop_stop()
        watcher.disconnect()


def test_a_replay_leaves_the_gateways_status_alone(
    mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    seen: list[bytes] = []
    watcher = make_client(mosquitto.settings, "status-watcher-replay")
    watcher.on_message = lambda _c, _u, message: seen.append(bytes(message.payload))
    watcher.connect(mosquitto.settings.host, mosquitto.settings.port)
    watcher.subscribe(gateway_status_topic("site-a", "gw-live"), qos=1)
    watcher.loop_start()
    outbox = Outbox(tmp_path / "o.sqlite")
    live = EdgePublisher(mosquitto.settings, "site-a", "gw-live", outbox, 5.0)
    replay = EdgePublisher(
        mosquitto.settings, "site-a", "gw-live", outbox, 5.0, "-replay", announces_gateway=False
    )
    try:
        live.start()
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [GatewayStatus.model_validate_json(p).state for p in seen] == [GatewayState.ONLINE]
        replay.start()
        deadline = time.monotonic() + 10
        while not replay.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert replay.connected
        replay.stop()
        time.sleep(1.0)  # anything the replay published would have arrived by now
        assert [GatewayStatus.model_validate_json(p).state for p in seen] == [GatewayState.ONLINE]
    finally:
        live.stop()
        watcher.loop_stop()
        watcher.disconnect()
        outbox.close()
