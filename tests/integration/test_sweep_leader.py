"""The server's roles as processes of their own: `civicwatch sweep` (one leads, the others wait
and take over), `civicwatch api --workers N` and `civicwatch ingest` apart from the API.

Every process here is a real `civicwatch` command in a subprocess, on a real database and a
real Mosquitto.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from contracts.mqtt import make_client
from storage.schema import migrate
from tests.conftest import REPO_ROOT, MosquittoProcess, free_port, wait_for_port
from tests.factories import EventFactory, make_registry

TOKEN = "dispatcher-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
INTERVAL = 1.0  # the sweep's interval, and so the leader's retry interval
START_TIMEOUT = 60.0  # two cores shared by several test runs: starting a process is slow


def write_config(tmp_path: Path, database_url: str, broker: MosquittoProcess, port: int) -> Path:
    config = {
        "sites": [site.model_dump(mode="json") for site in make_registry().sites],
        "broker": {"host": "127.0.0.1", "port": broker.port},
        "server": {
            "database_url": database_url,
            "ingest": {"evidence_dir": str(tmp_path / "evidence")},
            "sla": {"sweep_seconds": INTERVAL},
            "api": {
                "port": port,
                "tokens": [{"name": "desk", "token": TOKEN, "role": "dispatcher"}],
            },
        },
    }
    path = tmp_path / "civicwatch.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class Processes:
    """`civicwatch` commands started by a test; every one still running is killed at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICWATCH_")}
        log = (self.tmp_path / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "civicwatch.cli", *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.started.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


def get_ok(url: str, timeout: float = START_TIMEOUT, **kwargs: object) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(url, timeout=5, **kwargs)  # type: ignore[arg-type]
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered 200"
        time.sleep(0.1)


def sweeps_run(port: int) -> float:
    """The SLA sweeps this process ran as the leader (its /metrics)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    found = re.search(r'^civicwatch_sweep_job_runs_total\{job="sla-sweep"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def leads(port: int) -> bool:
    return bool(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["leader"])


def test_one_sweep_acts_and_another_takes_over_when_the_leader_is_killed(
    database_url: str,
    mosquitto: MosquittoProcess,
    tmp_path: Path,
    processes: Processes,
    record_property: Callable[[str, object], None],
) -> None:
    migrate(database_url)  # as the docs say: migrate once, then start the processes
    config = write_config(tmp_path, database_url, mosquitto, free_port())
    ports = {"a": free_port(), "b": free_port()}
    sweeps = {
        name: processes.start(
            f"sweep-{name}", "sweep", "--config", str(config), "--health-port", str(port)
        )
        for name, port in ports.items()
    }
    for port in ports.values():
        get_ok(f"http://127.0.0.1:{port}/healthz")
    time.sleep(3 * INTERVAL)

    leaders = [name for name, port in ports.items() if leads(port)]
    assert len(leaders) == 1, leaders
    leader = leaders[0]
    (other,) = set(ports) - {leader}
    before = {name: sweeps_run(port) for name, port in ports.items()}
    time.sleep(3 * INTERVAL)
    after = {name: sweeps_run(port) for name, port in ports.items()}
    assert after[leader] > before[leader] > 0, (before, after)
    assert after[other] == before[other] == 0, (before, after)  # the other one only waits

    sweeps[leader].kill()  # SIGKILL: no goodbye, the database ends its session (or flock)
    killed = time.monotonic()
    sweeps[leader].wait(timeout=10)
    while sweeps_run(ports[other]) == 0:
        assert time.monotonic() - killed < 10 * INTERVAL, processes.log(f"sweep-{other}")
        time.sleep(0.05)
    took_over = time.monotonic() - killed
    record_property("takeover_seconds", round(took_over, 3))
    print(f"\nleader killed -> the other swept after {took_over:.2f} s (interval {INTERVAL} s)")
    assert leads(ports[other])
    # The target is 2 intervals; the slack is for two loaded cores.
    assert took_over <= 2 * INTERVAL + 1.5, took_over
    assert "leads" in processes.log(f"sweep-{other}")
    broker_log = (mosquitto.workdir / "mosquitto.log").read_text(errors="replace")
    assert "already connected, closing old connection" not in broker_log  # ids of their own


def test_api_workers_answer_from_several_processes(
    mosquitto: MosquittoProcess, tmp_path: Path, processes: Processes
) -> None:
    port = free_port()
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'civicwatch.db'}", mosquitto, port)
    processes.start("api", "api", "--config", str(config), "--workers", "2")
    wait_for_port(port, timeout=START_TIMEOUT)
    pids: set[str] = set()
    deadline = time.monotonic() + START_TIMEOUT
    while len(pids) < 2 and time.monotonic() < deadline:
        # A new connection each time: the kernel hands it to whichever worker accepts first.
        text = get_ok(f"http://127.0.0.1:{port}/metrics").text
        pids |= set(re.findall(r'^civicwatch_process\{pid="(\d+)",roles="api"\}', text, re.M))
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/cases", headers=AUTH).json() == []
    assert len(pids) == 2, (pids, processes.log("api"))
    assert str(processes.started[0].pid) not in pids  # the parent only supervises


def test_ingest_and_api_apart_store_and_show_an_event(
    database_url: str, mosquitto: MosquittoProcess, tmp_path: Path, processes: Processes
) -> None:
    # No `civicwatch migrate` first: the two processes migrate the empty database in turn.
    port = free_port()
    health = free_port()
    config = write_config(tmp_path, database_url, mosquitto, port)
    processes.start("ingest", "ingest", "--config", str(config), "--health-port", str(health))
    processes.start("api", "api", "--config", str(config))
    ingest_health = get_ok(f"http://127.0.0.1:{health}/healthz").json()
    assert ingest_health["roles"] == ["ingest"]
    get_ok(f"http://127.0.0.1:{health}/readyz")  # its consumer is subscribed at the broker
    get_ok(f"http://127.0.0.1:{port}/readyz")  # the API has no consumer to wait for

    factory = EventFactory()
    event = factory.event()
    edge = make_client(mosquitto.settings, "edge-roles-test")
    edge.connect(mosquitto.settings.host, mosquitto.settings.port)
    edge.loop_start()
    try:
        edge.publish(factory.topic, event.to_wire(), qos=1).wait_for_publish(10)
    finally:
        edge.disconnect()
        edge.loop_stop()
    cases: list[dict[str, object]] = []
    deadline = time.monotonic() + 30
    while not cases:
        assert time.monotonic() < deadline, processes.log("ingest")
        cases = httpx.get(f"http://127.0.0.1:{port}/api/v1/cases", headers=AUTH).json()
        time.sleep(0.1)
    assert [case["violation_id"] for case in cases] == [str(event.violation_id)]
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert 'roles="api"' in metrics  # the API process itself consumes nothing
    assert "api" not in httpx.get(f"http://127.0.0.1:{health}/healthz").json()["roles"]
