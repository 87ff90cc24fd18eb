"""What `civicwatch server` says in its log: enough to tell what is wrong, and no chatter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT, MosquittoProcess, free_port, wait_for_port
from tests.factories import make_registry


class ServerProcess:
    """`civicwatch server` in a subprocess, its log (stderr) in a file."""

    def __init__(self, tmp_path: Path, broker_port: int) -> None:
        self.api_port = free_port()
        config = {
            "sites": [site.model_dump(mode="json") for site in make_registry().sites],
            "broker": {"host": "127.0.0.1", "port": broker_port},
            "server": {
                "database_url": f"sqlite:///{tmp_path / 'civicwatch.db'}",
                "ingest": {"evidence_dir": str(tmp_path / "evidence")},
                "notifications": {"poll_seconds": 0.5},  # scheduler jobs run often
                "api": {"port": self.api_port},
            },
        }
        config_file = tmp_path / "civicwatch.yaml"
        config_file.write_text(yaml.safe_dump(config))
        self.log_path = tmp_path / "server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICWATCH_")}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "civicwatch.cli", "server", "--config", str(config_file)],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> float:
        """Seconds until ``text`` showed in the log."""
        began = time.monotonic()
        while text not in self.log:
            assert self.process.poll() is None, f"the server exited:\n{self.log}"
            assert time.monotonic() - began < timeout, f"no {text!r} in {timeout}s:\n{self.log}"
            time.sleep(0.1)
        return time.monotonic() - began

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def broker_not_yet_started(tmp_path: Path) -> Iterator[MosquittoProcess]:
    broker = MosquittoProcess(tmp_path / "broker")  # its port is chosen, nothing listens yet
    yield broker
    broker.stop()


def test_an_unreachable_broker_is_named_once_and_so_is_its_arrival(
    tmp_path: Path, broker_not_yet_started: MosquittoProcess
) -> None:
    broker = broker_not_yet_started
    server = ServerProcess(tmp_path, broker.port)
    waiting = f"waiting for the MQTT broker at 127.0.0.1:{broker.port}"
    arrived = f"the MQTT broker at 127.0.0.1:{broker.port} is reachable"
    try:
        server.wait_for("civicwatch API on", timeout=60)
        # Within a few seconds of starting to serve, not after paho's silent retries.
        assert server.wait_for(waiting, timeout=8) < 8
        broker.start()
        server.wait_for(arrived, timeout=45)
        wait_for_port(server.api_port)
    finally:
        server.stop()
    log = server.log
    assert log.count(waiting) == 1, log
    assert "Connection refused" in log.split(waiting, 1)[1].splitlines()[0]
    assert log.count(arrived) == 1, log


def test_the_scheduler_does_not_log_each_job_run(
    tmp_path: Path, mosquitto: MosquittoProcess
) -> None:
    server = ServerProcess(tmp_path, mosquitto.port)
    try:
        server.wait_for("civicwatch API on", timeout=60)
        time.sleep(4)  # eight runs of each notification job
    finally:
        server.stop()
    log = server.log
    assert "civicwatch server stopped" in log
    assert [line for line in log.splitlines() if " apscheduler." in line] == []
