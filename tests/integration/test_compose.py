"""docker-compose.yml stays valid and wired to the files it mounts.

No docker engine runs here; `docker-compose config` parses, interpolates and normalises
the file without one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
MOSQUITTO_CONF = REPO_ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
# The variables the file reads; unset so the test sees the defaults it ships with.
COMPOSE_VARIABLES = (
    "MOSQUITTO_PASSWD_FILE",
    "POSTGRES_PASSWORD",
    "INGEST_MQTT_PASSWORD",
    "GATEWAY_MQTT_PASSWORD",
    "CIVICWATCH_MODEL",
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.fail("docker-compose is not installed (Debian package docker-compose)")
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_VARIABLES}
    result = subprocess.run(
        [tool, "-f", str(COMPOSE_FILE), "config"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    parsed = yaml.safe_load(result.stdout)
    assert isinstance(parsed, dict)
    return parsed


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path or volume name, from short or long volume syntax."""
    mounts: dict[str, str] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = str(volume.get("source", "")), str(volume["target"])
        mounts[target] = source
    return mounts


def _conf_values(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            values[key] = value.strip()
    return values


def test_the_four_services_exist(compose: dict[str, Any]) -> None:
    assert {"mosquitto", "postgres", "server", "edge"} <= set(compose["services"])


def test_mosquitto_mounts_what_its_config_names(compose: dict[str, Any]) -> None:
    mounts = _mounts(compose["services"]["mosquitto"])
    conf = _conf_values(MOSQUITTO_CONF.read_text())

    assert Path(mounts["/mosquitto/config/mosquitto.conf"]) == MOSQUITTO_CONF
    assert Path(mounts[conf["acl_file"]]) == REPO_ROOT / "deploy" / "mosquitto" / "acl"
    assert Path(mounts[conf["password_file"]]).is_file()
    assert conf["persistence_location"].rstrip("/") in mounts


def test_host_files_and_build_context_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for target, source in _mounts(service).items():
            if source.startswith("/"):
                assert Path(source).exists(), f"{name} mounts missing {source} at {target}"
        if "build" in service:
            build = service["build"]
            assert (Path(build["context"]) / build["dockerfile"]).is_file(), name


@pytest.mark.parametrize("name", ["server", "edge"])
def test_civicwatch_services_read_a_config_that_exists(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    command = service["command"]
    config_in_container = Path(command[command.index("--config") + 1])
    mounts = _mounts(service)
    host_dir = Path(mounts[str(config_in_container.parent)])
    assert (host_dir / config_in_container.name).is_file()


def test_server_uses_the_postgres_service(compose: dict[str, Any]) -> None:
    server = compose["services"]["server"]
    postgres = compose["services"]["postgres"]["environment"]
    url = server["environment"]["CIVICWATCH_DATABASE_URL"]
    assert url == (
        f"postgresql+psycopg://{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}"
        f"@postgres/{postgres['POSTGRES_DB']}"
    )
    assert "postgres" in server["depends_on"]
