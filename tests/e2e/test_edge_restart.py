"""`civicwatch demo` (server and edge in one process) restarted while the bus still blocks the
fire lane: the bus's case continues, no second case opens.

The edge forgets its open violations when it stops, so after the restart it times the bus's
dwell again and opens it under a new violation id; ingest must see that it is the same camera,
zone and spot as the open case and fold it in. Real broker, real detector on the demo's photo.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MosquittoProcess
from tests.e2e.harness import CIVICWATCH, Deployment
from tests.factories import start_from_migrated_template

pytestmark = pytest.mark.slow

CAMERA = "cam-gate"
# The fire lane's 15 s dwell (bus.yaml) shortened: the restart is what is tested, and the edge
# times the dwell twice (before and after it), so each second here costs two of wall time.
DWELL_SECONDS = 4.0


class Demo:
    """`civicwatch demo` for one deployment, as a process that can be stopped and restarted."""

    def __init__(self, site: Deployment) -> None:
        self.site = site
        self.log = site.workdir / "demo.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [*CIVICWATCH, "demo", "--config", str(self.site.config_path)],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            env=self.site.env,
        )

    def stop(self) -> None:
        """As Ctrl-C or a service manager stops it: a signal, then a clean exit."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            assert self.process.wait(timeout=60) == 0, self.tail()
        finally:
            self.process.kill()
            self.process = None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def cases(self) -> list[dict[str, Any]]:
        try:
            response = self.site.get("/api/v1/cases")
        except httpx.TransportError:
            return []  # still starting
        return list(response.json()) if response.status_code == 200 else []

    def wait_for(self, what: str, done: Callable[[list[dict[str, Any]]], bool]) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 180  # model load, the dwell, delivery
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.tail()
            if done(self.cases()):
                return
            time.sleep(0.2)
        raise TimeoutError(f"{what}: {self.cases()}\n{self.tail()}")


@pytest.fixture
def demo(tmp_path: Path, mosquitto: MosquittoProcess, database_url: str) -> Iterator[Demo]:
    start_from_migrated_template(database_url)  # as the deploy fixture does (conftest.py)
    demo = Demo(
        Deployment(tmp_path, "bus.yaml", mosquitto.port, database_url, dwell_seconds=DWELL_SECONDS)
    )
    try:
        yield demo
    finally:
        if demo.process is not None:
            demo.process.kill()
            demo.process.wait()


def _violations(cases: list[dict[str, Any]]) -> int:
    return sum(len(case["violation_ids"]) for case in cases)


def test_the_bus_still_in_the_fire_lane_after_a_restart_continues_its_case(demo: Demo) -> None:
    demo.start()
    demo.wait_for("the bus's case", lambda cases: len(cases) == 1)
    [before] = demo.cases()
    demo.stop()

    demo.start()
    # The bus raises again once its dwell has run: as a second case, or inside the first.
    demo.wait_for("the bus raised again", lambda cases: _violations(cases) >= 2)
    cases = demo.cases()
    detail = demo.site.get(f"/api/v1/cases/{before['id']}").json()
    demo.stop()

    assert [case["id"] for case in cases] == [before["id"]], "a second case for the same bus"
    [case] = cases
    assert case["camera_id"] == CAMERA
    assert case["kind"] == "fire_lane_blocking"
    assert case["object_class"] == "bus"
    first, again = case["violation_ids"]
    assert first == before["violation_id"] == case["violation_id"]
    assert not case["chain_broken"], "each violation's frames chain on their own"
    reasons = [step["reason"] for step in detail["transitions"]]
    assert f"merged violation {again} from camera {CAMERA} (same spot)" in reasons, reasons
    assert len(detail["evidence"]) > before["evidence_count"], "the restart's frames join the case"
