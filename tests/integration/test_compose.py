"""docker-compose.yml stays valid and wired to the files it mounts.

No docker engine runs here; `docker-compose config` parses, interpolates and normalises
the file without one. The broker's logins are checked by running what the stack runs: the
broker-users command (container paths mapped to host folders) and Mosquitto on its file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from civicwatch.config import load_config
from contracts.topics import (
    ROOT,
    ack_topic,
    camera_status_topic,
    gateway_status_topic,
    rules_topic,
    site_plates_topic,
    verify_result_topic,
    verify_topic,
    violation_topic,
)
from dispatch.notification_settings import MqttNotificationSettings
from tests.conftest import REPO_ROOT, free_port
from tests.integration.test_mosquitto_acl import Session, broker_config, running_broker

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
MOSQUITTO_CONF = REPO_ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
# The variables the file reads; unset so the test sees the defaults it ships with.
COMPOSE_VARIABLES = (
    "POSTGRES_PASSWORD",
    "INGEST_MQTT_PASSWORD",
    "GATEWAY_MQTT_PASSWORD",
    "CIVICWATCH_MODEL",
    "CIVICWATCH_BROKER_HOST",
    "EMQX_COOKIE",
    "EMQX_DASHBOARD_PASSWORD",
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


def _host_path(service: dict[str, Any], container_path: str, volumes: Path) -> Path:
    """Where a service's container path lies on the host: under its bind mount, or for a named
    volume under ``volumes``/NAME (the docker engine's stand-in)."""
    path = PurePosixPath(container_path)
    for target, source in _mounts(service).items():
        if path.is_relative_to(target):
            base = Path(source) if source.startswith("/") else volumes / source
            return base / path.relative_to(target)
    raise AssertionError(f"{container_path} is on no mount of the service")


def test_mosquitto_runs_the_plugin_on_the_file_broker_users_writes(
    compose: dict[str, Any],
) -> None:
    """Production closes the subscription hole by default: the plugin, not the password file
    and ACL, and its file written into the broker's volume before the broker starts."""
    services = compose["services"]
    mosquitto, maker = services["mosquitto"], services["broker-users"]
    mounts = _mounts(mosquitto)
    conf = _conf_values(MOSQUITTO_CONF.read_text())

    assert Path(mounts["/mosquitto/config/mosquitto.conf"]) == MOSQUITTO_CONF
    assert conf["persistence_location"].rstrip("/") in mounts
    assert conf["plugin"] == "/usr/lib/mosquitto_dynamic_security.so"  # eclipse-mosquitto's
    assert not {"password_file", "acl_file"} & set(conf)  # the fallback stays commented
    assert maker["command"][:2] == ["civicwatch", "broker-users"]
    out = maker["command"][maker["command"].index("--out") + 1]
    volumes = Path("/volumes")
    assert _host_path(maker, out, volumes) == _host_path(
        mosquitto, conf["plugin_opt_config_file"], volumes
    )
    assert mosquitto["depends_on"]["broker-users"] == {
        "condition": "service_completed_successfully"
    }
    assert maker["restart"] == "no"  # a one-shot: done once it has written the file


def test_the_stack_logs_in_with_what_broker_users_writes(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """broker-users' command and environment as the stack runs them, then Mosquitto with the
    production config on the file it wrote: the server and the edge log in with the passwords
    the compose file gives them, and the edge cannot join ingest's share group."""
    services = compose["services"]
    maker = services["broker-users"]
    volumes = tmp_path / "volumes"
    for source in _mounts(maker).values():
        if not source.startswith("/"):
            (volumes / source).mkdir(parents=True)
    args = [
        str(_host_path(maker, arg, volumes)) if arg.startswith("/") else arg
        for arg in maker["command"][1:]
    ]
    made = subprocess.run(
        [str(Path(sys.executable).with_name("civicwatch")), *args],
        env={**os.environ, **maker["environment"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr

    conf = _conf_values(MOSQUITTO_CONF.read_text())
    dynsec = _host_path(services["mosquitto"], conf["plugin_opt_config_file"], volumes)
    port = free_port()
    config = broker_config(MOSQUITTO_CONF.read_text(), tmp_path, port, dynsec=dynsec)
    site = load_config(REPO_ROOT / "configs" / "example.yaml").sites[0]
    with running_broker(tmp_path, config, port):
        server, edge = (
            Session(
                port,
                services[name]["environment"]["CIVICWATCH_BROKER_USERNAME"],
                services[name]["environment"]["CIVICWATCH_BROKER_PASSWORD"],
            )
            for name in ("server", "edge")
        )
        try:
            for session in (server, edge):
                assert session.connack is not None
                assert not session.connack.is_failure, session.connack
            group = f"$share/civicwatch-demo/{ROOT}/+/+/+/violation"
            assert not server.subscribe(group).is_failure
            assert edge.subscribe(group).is_failure
            assert not edge.subscribe(ack_topic(site.id, site.gateways[0].id)).is_failure
        finally:
            server.close()
            edge.close()


def test_host_files_and_build_context_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for target, source in _mounts(service).items():
            if source.startswith("/"):
                assert Path(source).exists(), f"{name} mounts missing {source} at {target}"
        if "build" in service:
            build = service["build"]
            assert (Path(build["context"]) / build["dockerfile"]).is_file(), name


@pytest.mark.parametrize("name", ["server", "edge", "broker-users"])
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


EMQX_NODES = ("emqx1", "emqx2")


def test_the_emqx_profile_is_a_two_node_cluster_beside_the_default_mosquitto(
    compose: dict[str, Any],
) -> None:
    """Profile emqx: two EMQX nodes (a pinned image) that seed each other, shared subscriptions
    and persistent sessions on, logins only from the file emqx-users writes; Mosquitto stays
    the default broker of the stack."""
    services = compose["services"]
    assert "profiles" not in services["mosquitto"]
    for name in ("server", "edge"):
        assert services[name]["environment"]["CIVICWATCH_BROKER_HOST"] == "mosquitto"
    nodes = {name: services[name] for name in EMQX_NODES}
    names = set()
    for name, node in nodes.items():
        assert node["profiles"] == ["emqx"], name
        image, _, version = node["image"].partition(":")
        assert image == "emqx/emqx"
        assert [int(part) for part in version.split(".")] >= [5, 0, 0], "pin a 5.x release"
        env = node["environment"]
        node_name = env["EMQX_NODE__NAME"]
        names.add(node_name)
        host = node_name.split("@")[1]
        # The node's Erlang name must resolve on the stack's network, and `emqx` names both.
        assert {host, "emqx"} <= set(node["networks"]["default"]["aliases"])
        assert env["EMQX_CLUSTER__DISCOVERY_STRATEGY"] == "static"
        assert env["EMQX_MQTT__SHARED_SUBSCRIPTION"] == "true"
        assert env["EMQX_MQTT__SESSION_EXPIRY_INTERVAL"] not in ("0s", "0")
        assert env["EMQX_AUTHORIZATION__NO_MATCH"] == "deny"
        acl = _mounts(node)[env["EMQX_AUTHORIZATION__SOURCES__1__PATH"]]
        assert Path(acl).is_file()
        bootstrap = PurePosixPath(env["EMQX_AUTHENTICATION__1__BOOTSTRAP_FILE"])
        maker = services["emqx-users"]
        assert maker["profiles"] == ["emqx"]
        assert maker["restart"] == "no"
        assert _mounts(node)[str(bootstrap.parent)] == _mounts(maker)[str(bootstrap.parent)]
        assert str(bootstrap) in maker["entrypoint"][-1]
        assert node["depends_on"]["emqx-users"] == {"condition": "service_completed_successfully"}
    assert len(names) == 2
    for node in nodes.values():
        seeds = node["environment"]["EMQX_CLUSTER__STATIC__SEEDS"].strip("[]").split(",")
        assert set(seeds) == names
    assert len({node["environment"]["EMQX_NODE__COOKIE"] for node in nodes.values()}) == 1


def test_the_emqx_acl_allows_what_the_mosquitto_roles_allow() -> None:
    """The ACL names the topics the wire contract uses: a renamed channel fails here."""
    acl = (REPO_ROOT / "deploy" / "emqx" / "acl.conf").read_text()
    me = "${username}"
    for topic in (
        f"{ROOT}/#",
        f"$share/+/{ROOT}/#",
        ack_topic("+", "+"),
        verify_topic("+", "+", "+"),
        rules_topic("+", "+"),
        site_plates_topic("+"),
        ack_topic("+", me),
        rules_topic("+", me),
        verify_topic("+", me, "+"),
        gateway_status_topic("+", me),
        camera_status_topic("+", me, "+"),
        violation_topic("+", me, "+"),
        verify_result_topic("+", me, "+"),
        MqttNotificationSettings().topic_template.format(department="+"),
    ):
        assert f'"{topic}"' in acl, topic
    assert acl.rstrip().endswith("{deny, all}.")


def test_the_emqx_profile_passes_docker_compose_config_with_the_profile() -> None:
    """`--profile emqx` (compose file format with profiles) parses and switches the brokers."""
    tool = shutil.which("docker-compose")
    assert tool is not None
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_VARIABLES}
    result = subprocess.run(
        [tool, "-f", str(COMPOSE_FILE), "--profile", "emqx", "config"],
        cwd=REPO_ROOT,
        env={**env, "CIVICWATCH_BROKER_HOST": "emqx"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert set(EMQX_NODES) <= set(services)
    assert services["server"]["environment"]["CIVICWATCH_BROKER_HOST"] == "emqx"
