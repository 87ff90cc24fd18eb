"""The composed server: MQTT in, case and evidence out over the API; clean start and stop."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import SecretStr

from civicwatch.config import CivicwatchConfig, ServerSettings
from civicwatch.server import Server, build_server
from contracts.mqtt import make_client
from dispatch.config import ApiSettings, ApiToken, Role
from ingest.config import IngestSettings
from tests.conftest import REPO_ROOT, MosquittoProcess, free_port, wait_for_port
from tests.factories import EventFactory, make_registry, start_from_migrated_template

TOKEN = "dispatcher-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _config(database_url: str, broker: MosquittoProcess, tmp_path: Path) -> CivicwatchConfig:
    return CivicwatchConfig(
        sites=make_registry().sites,
        broker=broker.settings,
        server=ServerSettings(
            database_url=database_url,
            ingest=IngestSettings(client_id="ingest-server-test", evidence_dir=tmp_path / "ev"),
            api=ApiSettings(
                tokens=[ApiToken(name="desk", token=SecretStr(TOKEN), role=Role.DISPATCHER)],
                sla_sweep_seconds=0.5,
            ),
        ),
    )


@pytest.fixture
def server(database_url: str, mosquitto: MosquittoProcess, tmp_path: Path) -> Iterator[Server]:
    start_from_migrated_template(database_url)
    server = build_server(_config(database_url, mosquitto, tmp_path))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_event_over_mqtt_becomes_a_case_with_downloadable_evidence(
    server: Server, mosquitto: MosquittoProcess
) -> None:
    assert server.consumer.ready.wait(10)
    assert server.scheduler.get_job("sla-sweep") is not None
    factory = EventFactory()
    event = factory.event()
    edge = make_client(mosquitto.settings, "edge-server-test")
    edge.connect(mosquitto.settings.host, mosquitto.settings.port)
    edge.loop_start()
    try:
        edge.publish(factory.topic, event.to_wire(), qos=1).wait_for_publish(10)
    finally:
        edge.disconnect()
        edge.loop_stop()

    with TestClient(server.app) as client:
        assert client.get("/readyz").status_code == 200
        deadline = time.monotonic() + 10
        cases: list[dict[str, object]] = []
        while not cases and time.monotonic() < deadline:
            cases = client.get("/api/v1/cases", headers=AUTH).json()
            time.sleep(0.05)
        assert [case["violation_id"] for case in cases] == [str(event.violation_id)]
        assert cases[0]["department"] == "law_enforcement"
        detail = client.get(f"/api/v1/cases/{cases[0]['id']}", headers=AUTH).json()
        for item in detail["evidence"]:
            image = client.get(item["url"], headers=AUTH).content
            assert hashlib.sha256(image).hexdigest() == item["sha256"]


def test_run_server_serves_until_sigterm(tmp_path: Path, mosquitto: MosquittoProcess) -> None:
    port = free_port()
    config = {
        "sites": [site.model_dump(mode="json") for site in make_registry().sites],
        "broker": {"host": "127.0.0.1", "port": mosquitto.port},
        "server": {
            "database_url": f"sqlite:///{tmp_path / 'var' / 'civicwatch.db'}",
            "ingest": {"evidence_dir": str(tmp_path / "evidence")},
            "api": {
                "port": port,
                "tokens": [{"name": "desk", "token": TOKEN, "role": "dispatcher"}],
            },
        },
    }
    config_file = tmp_path / "civicwatch.yaml"
    config_file.write_text(yaml.safe_dump(config))
    script = (
        "import sys; from pathlib import Path; from civicwatch.config import load_config; "
        "from civicwatch.serving import run_server; run_server(load_config(Path(sys.argv[1])))"
    )
    env = {k: v for k, v in os.environ.items() if k != "CIVICWATCH_DATABASE_URL"}
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(config_file)], cwd=REPO_ROOT, env=env
    )
    try:
        wait_for_port(port, timeout=30)
        # Ready once ingest is also subscribed at the broker, which may follow the port by a bit.
        deadline = time.monotonic() + 10
        while httpx.get(f"http://127.0.0.1:{port}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.05)
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/cases", headers=AUTH).json() == []
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (tmp_path / "var" / "civicwatch.db").is_file()


@pytest.mark.parametrize("configured", [False, True])
def test_the_training_data_folder_is_configurable_and_defaults_beside_the_evidence(
    database_url: str, mosquitto: MosquittoProcess, tmp_path: Path, configured: bool
) -> None:
    config = _config(database_url, mosquitto, tmp_path)
    if configured:
        server_settings = config.server.model_copy(
            update={"training_data_dir": tmp_path / "labelled"}
        )
        config = config.model_copy(update={"server": server_settings})
    server = build_server(config)
    try:
        expected = tmp_path / ("labelled" if configured else "training-data")
        assert server.training_data is not None
        assert server.training_data.folder == expected
    finally:
        server.stop()
