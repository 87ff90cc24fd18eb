"""The production broker config as shipped, with the dynamic-security plugin (its file made by
deploy/mosquitto/make-dynsec.sh, i.e. `civicwatch broker-users`, from a site registry):
subscriptions are checked too, so a gateway can neither read another gateway's topics nor join
ingest's $share group, and ingest still works."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import yaml

from civicwatch.dynsec import hash_password
from contracts.acks import AckOutcome, IngestAck
from contracts.announce import announce_topic
from contracts.mqtt import BrokerSettings
from contracts.topics import (
    ROOT,
    ack_topic,
    camera_status_topic,
    gateway_status_topic,
    verify_result_topic,
    verify_topic,
    violation_topic,
)
from ingest.config import IngestSettings
from ingest.consumer import IngestConsumer
from tests.conftest import REPO_ROOT, free_port
from tests.factories import GATEWAY, EventFactory, make_ingest, make_registry, migrated_database
from tests.factories import SITE as REGISTRY_SITE
from tests.integration.test_mosquitto_acl import (
    DEPLOY,
    DYNSEC_PLUGIN,
    Session,
    broker_config,
    running_broker,
)

SITE = "site-1"
GROUP_VIOLATIONS = f"$share/civicwatch-prod/{ROOT}/+/+/+/violation"
PASSWORDS = {
    "ingest": "ingest-secret",
    "gw-a": "gw-a-secret",
    "gw-b": "gw-b-secret",
    "fire_rescue": "fire-rescue-secret",
}


def site_config(path: Path) -> None:
    """Two gateways of one site, one camera each, in the YAML an operator writes."""
    gateways = [
        {"id": gateway, "cameras": [{"id": camera, "source": "rtsp://camera.invalid/stream"}]}
        for gateway, camera in (("gw-a", "cam-1"), ("gw-b", "cam-9"))
    ]
    sites = [{"id": SITE, "timezone": "Asia/Shanghai", "gateways": gateways}]
    # And tests.factories' sites, whose events the real ingest consumer can store.
    sites += [site.model_dump(mode="json", exclude_none=True) for site in make_registry().sites]
    path.write_text(yaml.safe_dump({"sites": sites}))


def make_dynsec(workdir: Path, passwords: Mapping[str, str]) -> tuple[Path, dict[str, str]]:
    """make-dynsec.sh's file for site_config's registry, and every user's password: the users
    left out of ``passwords`` get random ones from the script."""
    if not DYNSEC_PLUGIN.is_file():
        pytest.fail(f"{DYNSEC_PLUGIN} is missing (Debian package mosquitto)")
    site_config(workdir / "site.yaml")
    stored = workdir / "mqtt-passwords"
    stored.write_text("".join(f"{user}:{pw}\n" for user, pw in passwords.items()))
    out = workdir / "dynamic-security.json"
    made = make_dynsec_script(
        "--config", str(workdir / "site.yaml"), "--passwords", str(stored), "--out", str(out)
    )
    assert made.returncode == 0, made.stderr
    # The script wrote the new passwords down, owner-only, and kept the given ones.
    assert oct(stored.stat().st_mode & 0o777) == "0o600"
    written = dict(line.split(":", 1) for line in stored.read_text().splitlines())
    assert {user: written[user] for user in passwords} == dict(passwords)
    return out, written


def make_dynsec_script(
    *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DEPLOY / "make-dynsec.sh"), *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {}), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def dynsec_broker(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """The port of a broker running the production config and make-dynsec.sh's file, and every
    user's password (gw-b's made up by the script)."""
    known = {user: pw for user, pw in PASSWORDS.items() if user != "gw-b"}
    dynsec, written = make_dynsec(tmp_path, known)
    document = json.loads(dynsec.read_text())
    assert {client["username"] for client in document["clients"]} >= set(PASSWORDS)
    port = free_port()
    production = (DEPLOY / "mosquitto.conf").read_text()
    config = broker_config(production, tmp_path, port, dynsec=dynsec)
    with running_broker(tmp_path, config, port):
        yield port, written


Login = Callable[[str], Session]


@pytest.fixture
def login(dynsec_broker: tuple[int, dict[str, str]]) -> Iterator[Login]:
    port, passwords = dynsec_broker
    sessions: list[Session] = []

    def login_(username: str) -> Session:
        session = Session(port, username, passwords[username])
        sessions.append(session)
        assert session.connack is not None
        assert not session.connack.is_failure, f"{username} refused: {session.connack}"
        return session

    yield login_
    for session in sessions:
        session.close()


@pytest.mark.parametrize(
    "topic",
    [
        pytest.param(GROUP_VIOLATIONS, id="ingest-share-group"),
        pytest.param(f"$share/any/{ROOT}/#", id="any-share-group"),
        pytest.param(violation_topic(SITE, "gw-a", "cam-1"), id="other-gateway-violations"),
        pytest.param(ack_topic(SITE, "gw-a"), id="other-gateway-acks"),
        pytest.param(verify_topic(SITE, "gw-a", "cam-1"), id="other-gateway-verify"),
        pytest.param(f"{ROOT}/#", id="everything"),
        pytest.param("civicwatch/v1/dispatch/fire_rescue/cases", id="department-cases"),
    ],
)
def test_a_gateway_cannot_subscribe_beyond_its_own_topics(login: Login, topic: str) -> None:
    intruder = login("gw-b")
    code = intruder.subscribe(topic)
    assert code.is_failure, f"{topic}: {code}"
    assert not intruder.subscribe(ack_topic(SITE, "gw-b")).is_failure  # its own: allowed


def test_ingest_works_and_a_gateway_cannot_publish_as_another(login: Login) -> None:
    ingest = login("ingest")
    for topic in (
        GROUP_VIOLATIONS,
        f"{ROOT}/+/+/status",
        f"{ROOT}/+/+/+/status",
        f"{ROOT}/+/+/announce",
    ):
        assert not ingest.subscribe(topic).is_failure, topic
    assert not ingest.subscribe(f"$share/civicwatch-prod/{ROOT}/+/+/+/verify_result").is_failure
    gw_a = login("gw-a")
    assert not gw_a.subscribe(ack_topic(SITE, "gw-a")).is_failure
    assert not gw_a.subscribe(verify_topic(SITE, "gw-a", "cam-1")).is_failure
    gw_b = login("gw-b")

    forged = [
        violation_topic(SITE, "gw-a", "cam-1"),
        camera_status_topic(SITE, "gw-a", "cam-1"),
        gateway_status_topic(SITE, "gw-a"),
        verify_result_topic(SITE, "gw-a", "cam-1"),
        ack_topic(SITE, "gw-a"),
        announce_topic(SITE, "gw-a"),
        violation_topic(SITE, "gw-b", "cam-1"),  # its own prefix, another gateway's camera
    ]
    codes = {topic: gw_b.publish(topic, b"forged") for topic in forged}
    own = [
        violation_topic(SITE, "gw-b", "cam-9"),
        camera_status_topic(SITE, "gw-b", "cam-9"),
        gateway_status_topic(SITE, "gw-b"),
        announce_topic(SITE, "gw-b"),  # the warning stage's announcements
    ]
    for topic in own:
        assert not gw_b.publish(topic, b"own").is_failure, topic
    # One client's publishes arrive in order: the forged ones would have come first.
    assert [ingest.next_message() for _ in own] == [(topic, b"own") for topic in own]
    ingest.assert_silent()
    assert all(code.is_failure for code in codes.values()), codes

    assert not ingest.publish(ack_topic(SITE, "gw-a"), b"ack").is_failure
    assert not ingest.publish(verify_topic(SITE, "gw-a", "cam-1"), b"verify").is_failure
    assert gw_a.next_message() == (ack_topic(SITE, "gw-a"), b"ack")
    assert gw_a.next_message() == (verify_topic(SITE, "gw-a", "cam-1"), b"verify")
    assert ingest.publish(violation_topic(SITE, "gw-a", "cam-1"), b"forged").is_failure


def test_a_department_reads_only_its_own_cases(login: Login) -> None:
    ingest = login("ingest")
    fire = login("fire_rescue")
    assert not fire.subscribe("civicwatch/v1/dispatch/fire_rescue/cases").is_failure
    assert fire.subscribe("civicwatch/v1/dispatch/law_enforcement/cases").is_failure
    assert fire.subscribe(f"{ROOT}/+/+/+/violation").is_failure
    assert fire.publish(violation_topic(SITE, "fire_rescue", "cam-1"), b"x").is_failure

    ingest.publish("civicwatch/v1/dispatch/fire_rescue/cases", b"case")
    assert fire.next_message() == ("civicwatch/v1/dispatch/fire_rescue/cases", b"case")


def test_the_ingest_consumer_stores_and_answers_through_the_plugin(
    dynsec_broker: tuple[int, dict[str, str]], login: Login, tmp_path: Path
) -> None:
    """The real consumer, in a shared group: every filter it subscribes to is granted, a
    gateway's event is stored, and the gateway gets its answer."""
    port, passwords = dynsec_broker
    broker = BrokerSettings(port=port, username="ingest", password=passwords["ingest"])
    gateway = login(GATEWAY)
    assert not gateway.subscribe(ack_topic(REGISTRY_SITE, GATEWAY)).is_failure
    with migrated_database(f"sqlite:///{tmp_path / 'ingest.db'}") as (_engine, sessions):
        rig = make_ingest(sessions, tmp_path / "evidence")
        consumer = IngestConsumer(
            broker,
            IngestSettings(
                client_id="ingest-dynsec",
                shared_group="civicwatch-prod",
                evidence_dir=tmp_path / "evidence",
            ),
            rig.service,
            rig.registry,
            rig.metrics,
        )
        consumer.start()
        try:
            assert consumer.ready.wait(10), "the plugin refused one of ingest's subscriptions"
            factory = EventFactory()
            event = factory.event()
            assert not gateway.publish(factory.topic, event.to_wire()).is_failure
            topic, payload = gateway.next_message()
        finally:
            consumer.stop()
    ack = IngestAck.model_validate_json(payload)
    assert topic == ack_topic(REGISTRY_SITE, GATEWAY)
    assert (ack.message_id, ack.outcome) == (event.message_id, AckOutcome.STORED)


def test_passwords_from_the_environment_win_and_stay_out_of_the_file(tmp_path: Path) -> None:
    """As docker-compose runs it: ingest's and a gateway's passwords come from variables, the
    users' entries in --passwords are not used, and no variable's secret is written there."""
    site_config(tmp_path / "site.yaml")
    stored = tmp_path / "mqtt-passwords"
    stored.write_text("ingest:stale-ingest-password\n")
    out = tmp_path / "dynamic-security.json"
    made = make_dynsec_script(
        *("--config", str(tmp_path / "site.yaml"), "--passwords", str(stored)),
        *("--out", str(out), "--password-env", "ingest=TEST_INGEST_PW"),
        *("--password-env", "gw-a=TEST_GW_A_PW"),
        env={"TEST_INGEST_PW": "ingest-from-env", "TEST_GW_A_PW": "gw-a-from-env"},
    )
    assert made.returncode == 0, made.stderr
    written = dict(line.split(":", 1) for line in stored.read_text().splitlines())
    assert written["ingest"] == "stale-ingest-password"
    assert "gw-a" not in written
    assert {"gw-b", "fire_rescue"} <= set(written)
    clients = {c["username"]: c for c in json.loads(out.read_text())["clients"]}
    for user, password in (("ingest", "ingest-from-env"), ("gw-a", "gw-a-from-env")):
        salt = base64.b64decode(clients[user]["salt"])
        assert hash_password(password, salt)["password"] == clients[user]["password"], user


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--password-env", "ingest=TEST_UNSET_MQTT_PW"],
            "civicwatch: --password-env ingest=TEST_UNSET_MQTT_PW: $TEST_UNSET_MQTT_PW is not set",
            id="variable-unset",
        ),
        pytest.param(
            ["--password-env", "ingest"],
            "civicwatch: --password-env 'ingest': expected USER=VARIABLE",
            id="no-variable",
        ),
        pytest.param(
            ["--password-env", "gw-typo=TEST_SET_MQTT_PW"],
            "civicwatch: --password-env: gw-typo is not a user of this config",
            id="unknown-user",
        ),
        pytest.param(
            ["--out", "/nonexistent-dir/dynamic-security.json"],
            "civicwatch: [Errno 2] No such file or directory: "
            "'/nonexistent-dir/dynamic-security.json'",
            id="unwritable-out",
        ),
    ],
)
def test_broker_users_errors_are_one_line_with_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    site_config(tmp_path / "site.yaml")
    made = make_dynsec_script(
        *("--config", str(tmp_path / "site.yaml"), "--passwords", str(tmp_path / "pw")),
        *("--out", str(tmp_path / "out.json"), *args),
        env={"TEST_UNSET_MQTT_PW": "", "TEST_SET_MQTT_PW": "a-password"},
    )
    assert (made.returncode, made.stderr.splitlines()) == (2, [message])
