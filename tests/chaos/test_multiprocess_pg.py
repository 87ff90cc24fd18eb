"""The roles apart on one PostgreSQL: nothing lost, nothing doubled, the audit chain intact.

Two `civicwatch ingest` processes (one shared-subscription group, `--instance a` and `b`),
`civicwatch api --workers 2` and one `civicwatch sweep`, each its own process, against a private
Mosquitto and a scratch PostgreSQL database. The edge (`civicwatch loadgen --outbox-dir`: the
real outbox and publisher) streams violations while ingest `a` is SIGKILLed and restarted (its
persistent session keeps what the broker queued for it) and then the broker is SIGKILLed and
restarted. Afterwards a quarter of the messages are published again as they were: duplicates,
which the test waits to see taken by ingest (its received counters) before it counts.

Then, through the API's workers: every violation the edge committed is exactly one case, and
`civicwatch audit verify` finds the chain that both ingest processes and the sweep wrote intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import paho.mqtt.client as mqtt
import pytest

from contracts.mqtt import make_client
from contracts.topics import ROOT
from loadgen.ledger import read_ledger
from tests.chaos.conftest import RESULTS
from tests.chaos.rig import ChaosRig, RunResult, Timing
from tests.conftest import _postgres_scratch_database, free_port
from tests.e2e.harness import CIVICWATCH

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]

TIMING = Timing(rate=30.0, stream_s=9.0, resend_after_s=2.0, settle_timeout_s=60.0)
INGEST_DOWN_S = 1.5  # ingest `a` lies dead this long before it is restarted
BROKER_DOWN_S = 1.5
DUPLICATE_EVERY = 4  # every 4th message the edge sent is published again afterwards
VIOLATIONS = f"{ROOT}/+/+/+/violation"


class Roles:
    """The product's processes, each in its own process group, logging to server.log."""

    def __init__(self, rig: ChaosRig) -> None:
        self.rig = rig
        self.config = str(rig.deployment.config_path)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.health_ports: dict[str, int] = {}

    def start(self, name: str, role: str, *extra: str) -> None:
        port = self.health_ports.setdefault(name, free_port()) if role != "api" else None
        health = ["--health-port", str(port)] if port is not None else []
        with (self.rig.workdir / "server.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [*CIVICWATCH, role, "--config", self.config, *health, *extra],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.rig.deployment.env,
                start_new_session=True,  # the API's workers stop with their parent's group
            )

    def wait_ready(self, name: str, timeout_s: float = 60) -> None:
        port = self.health_ports.get(name, self.rig.deployment.api_port)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited: {self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"{name} not ready: {self.log()}")

    def health(self, name: str) -> dict[str, Any]:
        answer = httpx.get(f"http://127.0.0.1:{self.health_ports[name]}/healthz", timeout=5)
        health: dict[str, Any] = answer.json()
        return health

    def received(self) -> float:
        """Violation messages both ingest processes took from the broker, duplicates too."""
        total = 0.0
        for name in ("ingest-a", "ingest-b"):
            answer = httpx.get(f"http://127.0.0.1:{self.health_ports[name]}/metrics", timeout=5)
            for line in answer.text.splitlines():
                if line.startswith("civicwatch_ingest_events_received_total "):
                    total += float(line.split()[1])
        return total

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.kill()
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()

    def log(self) -> str:
        return (self.rig.workdir / "server.log").read_text(errors="replace")[-8000:]


class Tap:
    """A plain subscriber: what the edge sent, to publish again as it was."""

    def __init__(self, rig: ChaosRig) -> None:
        self.sent: dict[UUID, tuple[str, bytes]] = {}
        self.errors: list[str] = []
        self._subscribed: queue.Queue[bool] = queue.Queue()
        self.client = make_client(rig.broker.settings, f"tap-{uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_args: self._subscribed.put(True)
        self.client.connect(rig.broker.settings.host, rig.broker.settings.port)
        self.client.loop_start()
        self.client.subscribe(VIOLATIONS, qos=1)
        self._subscribed.get(timeout=10)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            message_id = UUID(json.loads(message.payload)["message_id"])
            self.sent.setdefault(message_id, (message.topic, bytes(message.payload)))
        except Exception as exc:  # an exception would end paho's thread without a word
            self.errors.append(f"{message.topic}: {exc!r}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def cases_through_api(rig: ChaosRig) -> list[dict[str, Any]]:
    """Every case, page by page, as the API's workers list them to the dispatcher."""
    cases: list[dict[str, Any]] = []
    path: str | None = "/api/v1/cases?limit=500&sort=deadline"
    while path is not None:
        answer = rig.deployment.get(path)
        assert answer.status_code == 200, answer.text
        cases += answer.json()
        following = answer.links.get("next")
        path = following["url"] if following else None
    return cases


def test_roles_apart_on_postgresql_lose_and_double_nothing(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    began = time.monotonic()
    with contextlib.contextmanager(_postgres_scratch_database)() as database_url:
        rig = ChaosRig(tmp_path, TIMING, database_url=database_url)
        rig.broker.start()
        roles = Roles(rig)
        tap: Tap | None = None
        try:
            migrate = subprocess.run(
                [*CIVICWATCH, "migrate", "--config", roles.config],
                capture_output=True,
                env=rig.deployment.env,
                timeout=120,
            )
            assert migrate.returncode == 0, migrate.stdout + migrate.stderr
            roles.start("ingest-a", "ingest", "--instance", "a")
            roles.start("ingest-b", "ingest", "--instance", "b")
            roles.start("api", "api", "--workers", "2")
            roles.start("sweep", "sweep")
            for name in ("ingest-a", "ingest-b", "api", "sweep"):
                roles.wait_ready(name)
            started_s = time.monotonic() - began

            tap = watcher = Tap(rig)
            run_dir = tmp_path / "run"
            edge = rig.start_edge(run_dir, TIMING.stream_s, seed=1)
            rig.wait_until_flowing(run_dir, edge)
            time.sleep(1.0)
            roles.kill("ingest-a")  # SIGKILL mid-stream, with whatever it held
            time.sleep(INGEST_DOWN_S)
            roles.start("ingest-a", "ingest", "--instance", "a")
            roles.wait_ready("ingest-a")
            time.sleep(1.0)
            tap.close()  # the broker's kill would end it anyway
            tap = None
            rig.broker.kill()  # SIGKILL: its queues since the last autosave are gone
            time.sleep(BROKER_DOWN_S)
            rig.broker.start()
            edge_exit = edge.wait(timeout=TIMING.settle_timeout_s + 60)

            ledger = read_ledger(run_dir)
            published = {entry.message_id for entry in ledger}
            violations = {entry.violation_id for entry in ledger}
            assert rig.wait_until_stored(published, TIMING.settle_timeout_s), roles.log()
            streamed_s = time.monotonic() - began
            # The broker's sessions died with it: a duplicate published before both ingest
            # processes have subscribed again reaches nobody. An edge that settled before the
            # kill lets the test get here within the broker's first second.
            for name in ("ingest-a", "ingest-b"):
                roles.wait_ready(name)

            # Duplicates on purpose: a quarter of what the edge sent, published again as is.
            tap = Tap(rig)
            again = dict(list(watcher.sent.items())[::DUPLICATE_EVERY])
            before = roles.received()
            for topic, payload in again.values():
                tap.client.publish(topic, payload, qos=1)
            deadline = time.monotonic() + 30
            while roles.received() < before + len(again) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert roles.received() >= before + len(again), f"duplicates lost: {roles.log()}"
            time.sleep(1.0)  # the last batch's commit, had it stored anything

            cases = cases_through_api(rig)
            listed = [UUID(case["violation_id"]) for case in cases]
            audit = subprocess.run(
                [*CIVICWATCH, "audit", "verify", "--config", roles.config],
                capture_output=True,
                text=True,
                env=rig.deployment.env,
                timeout=120,
            )
            leaders = [roles.health("sweep")["leader"]]
            result = RunResult(
                case="multiprocess",
                run=1,
                published=len(published),
                stored=len(rig.stored(published)),
                lost=len(published - rig.stored(published)),
                duplicate_cases=rig.duplicate_cases(violations),
                historical=rig.historical(published),
                backlog=len(again),  # here: the duplicates published on purpose
                recovery_s=round(streamed_s - started_s, 2),  # here: stream to all stored
                edge_exit=edge_exit,
                database="postgresql",
            )
            request.config.stash[RESULTS].append(result)
            summary = (
                f"{result}; {len(violations)} violations, {len(cases)} cases via the API, "
                f"{len(again)} duplicates resent; processes ready in {started_s:.1f} s, "
                f"total {time.monotonic() - began:.1f} s; {audit.stdout.strip()}"
            )
            print(summary)

            assert result.lost == 0, summary
            assert result.stored == result.published > 0, summary
            assert edge_exit == 0, f"the edge did not settle its outbox: {summary}"
            assert len(listed) == len(set(listed)), f"a violation in two cases: {summary}"
            assert set(listed) == violations, f"cases and violations differ: {summary}"
            assert result.duplicate_cases == 0, summary
            assert audit.returncode == 0, audit.stdout + audit.stderr
            assert leaders == [True], "the sweep never led"
        finally:
            if tap is not None:
                tap.close()
            roles.stop_all()
            rig.close()
