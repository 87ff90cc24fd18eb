"""`civicwatch loadgen` as a user runs it, against a real broker and `civicwatch server`."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from civicwatch.config import load_config
from loadgen.registry import PREFIX_DEFAULT, simulated_registry
from tests.chaos.rig import PREFIX, ChaosRig, Timing
from tests.e2e.harness import CIVICWATCH

CAMERAS = 40


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[ChaosRig]:
    rig = ChaosRig(tmp_path, Timing(), cameras=CAMERAS)
    rig.start()
    try:
        yield rig
    finally:
        rig.close()


def _loadgen(*arguments: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*CIVICWATCH, "loadgen", *arguments],
        capture_output=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        timeout=180,
        check=False,
    )


def _against(rig: ChaosRig, *arguments: str) -> subprocess.CompletedProcess[bytes]:
    config = str(rig.deployment.config_path)
    return _loadgen(
        "--config", config, "--prefix", PREFIX, "--cameras-per-gateway", "4", *arguments
    )


def test_direct_mode_reports_what_ingest_confirmed_and_stored(rig: ChaosRig) -> None:
    done = _against(
        rig, "--cameras", str(CAMERAS), "--rate", "100", "--duration", "3",
        "--database-url", rig.database_url,
    )  # fmt: skip
    summary: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert done.returncode == 0, (summary, rig.deployment.server_log())
    assert summary["published"] == 300
    assert summary["confirmed"] == summary["stored"] == 300
    assert summary["rejected"] == summary["unconfirmed"] == 0
    latency = summary["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]


def test_cameras_missing_from_the_servers_registry_stop_it_before_publishing(
    rig: ChaosRig,
) -> None:
    done = _against(rig, "--cameras", str(CAMERAS + 1), "--duration", "1")
    assert done.returncode == 2
    assert b"not in the config's site registry" in done.stderr, done.stderr[-2000:]


def test_written_config_holds_the_simulated_cameras(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"server": {"database_url": "sqlite:///x.db"}}))
    written = tmp_path / "load.yaml"
    done = _loadgen(
        "--cameras", "20", "--config", str(base), "--write-config", str(written),
        "--broker", "10.0.0.5:1884",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    config = load_config(written)
    assert config.sites == simulated_registry(20, 8, PREFIX_DEFAULT).sites
    assert (config.broker.host, config.broker.port) == ("10.0.0.5", 1884)
    assert config.server.database_url == "sqlite:///x.db"
