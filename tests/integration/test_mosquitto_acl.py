"""The production broker config's fallback, the password file and ACL, pins each gateway to its
own topics (production runs the dynamic-security plugin: test_mosquitto_dynsec.py).

Starts a private Mosquitto from deploy/mosquitto/mosquitto.conf (paths and port rewritten, the
commented fallback lines switched on) with the real deploy/mosquitto/acl and a password file
made by mosquitto_passwd. The helpers here serve the other broker tests too.
"""

from __future__ import annotations

import getpass
import queue
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import func, select

from contracts.acks import AckOutcome
from contracts.announce import announce_topic
from contracts.mqtt import BrokerSettings
from contracts.status import CameraHealth, CameraStatus, GatewayState, GatewayStatus
from contracts.topics import (
    ROOT,
    ack_topic,
    camera_status_topic,
    gateway_status_topic,
    violation_topic,
)
from ingest.config import IngestSettings
from ingest.consumer import IngestConsumer
from ingest.validation import RefusalReason
from storage.tables import CameraStatusRow, Event, GatewayStatusRow
from tests.conftest import REPO_ROOT, free_port, wait_for_port
from tests.factories import (
    CAMERA,
    GATEWAY,
    OTHER_CAMERA,
    OTHER_GATEWAY,
    OTHER_SITE,
    T0,
    EventFactory,
    make_ingest,
    migrated_database,
)
from tests.factories import SITE as REGISTRY_SITE

DEPLOY = REPO_ROOT / "deploy" / "mosquitto"
# Debian's mosquitto ships it under the architecture's library directory.
DYNSEC_PLUGIN = next(
    iter(sorted(Path("/usr/lib").glob("*/mosquitto_dynamic_security.so"))),
    Path("/usr/lib/mosquitto_dynamic_security.so"),
)
PASSWORDS = {
    "ingest": "ingest-secret",
    "gw-a": "gw-a-secret",
    "gw-b": "gw-b-secret",
    GATEWAY: "gw-a1-secret",  # the gateway of tests.factories' registry
    "law_enforcement": "law-enforcement-secret",  # a department's own systems
}
SITE = "site-1"
WAIT_S = 5.0
# Long enough for a message the broker would deliver to arrive after the control message.
SILENCE_S = 0.5


def broker_config(
    production: str,
    workdir: Path,
    port: int,
    tls_port: int | None = None,
    certs: Path | None = None,
    dynsec: Path | None = None,
) -> str:
    """The production config with this machine's paths and a private port.

    With ``dynsec`` (a dynamic-security JSON file) the broker runs the plugin, as production
    does; without, the documented fallback: the plugin lines commented out and the commented
    password_file and acl_file lines switched on. With ``tls_port`` and ``certs`` the commented
    TLS listener is switched on: the test runs the very lines an operator uncomments.
    """
    replacements = {
        "listener 1883": f"listener {port} 127.0.0.1",
        "persistence_location ": f"persistence_location {workdir}/",
    }
    if dynsec is not None:
        replacements |= {
            "plugin ": f"plugin {DYNSEC_PLUGIN}",
            "plugin_opt_config_file ": f"plugin_opt_config_file {dynsec}",
        }
    else:
        replacements |= {
            "plugin ": "# plugin: the fallback's password file and ACL instead",
            "plugin_opt_config_file ": "# plugin_opt_config_file: likewise",
            "#password_file ": f"password_file {workdir / 'passwd'}",
            "#acl_file ": f"acl_file {DEPLOY / 'acl'}",
        }
    if tls_port is not None and certs is not None:
        replacements |= {
            "#listener 8883": f"listener {tls_port} 127.0.0.1",
            "#certfile ": f"certfile {certs / 'server.crt'}",
            "#keyfile ": f"keyfile {certs / 'server.key'}",
            "#cafile ": f"cafile {certs / 'ca.crt'}",
            "#tls_version ": "tls_version tlsv1.2",
        }
    original = production.splitlines()
    lines = []
    for line in original:
        for prefix, replacement in replacements.items():
            if line.startswith(prefix):
                line = replacement
        lines.append(line)
    missing = [p for p in replacements if not any(line.startswith(p) for line in original)]
    assert not missing, f"deploy/mosquitto/mosquitto.conf lost the lines {missing}"
    # As root Mosquitto would drop to user "mosquitto", who cannot write in tmp_path.
    lines.append(f"user {getpass.getuser()}")
    return "\n".join(lines) + "\n"


def write_password_file(path: Path) -> None:
    """PASSWORDS hashed by the real mosquitto_passwd, as an operator makes the file."""
    for tool in ("mosquitto", "mosquitto_passwd"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (Debian package mosquitto)")
    for index, (user, password) in enumerate(PASSWORDS.items()):
        create = ["-c"] if index == 0 else []
        subprocess.run(["mosquitto_passwd", "-b", *create, str(path), user, password], check=True)


@contextmanager
def running_broker(workdir: Path, config_text: str, *ports: int) -> Iterator[None]:
    """Mosquitto with ``config_text`` until the block ends; waits for every port to listen."""
    config = workdir / "mosquitto.conf"
    config.write_text(config_text)
    with (workdir / "mosquitto.log").open("wb") as log:
        process = subprocess.Popen(
            ["mosquitto", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            for port in ports:
                wait_for_port(port)
            yield
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture
def broker_port(tmp_path: Path) -> Iterator[int]:
    write_password_file(tmp_path / "passwd")
    port = free_port()
    production = (DEPLOY / "mosquitto.conf").read_text()
    with running_broker(tmp_path, broker_config(production, tmp_path, port), port):
        yield port


class Session:
    """A connected MQTT v5 client that records what it receives and how publishes end."""

    def __init__(self, port: int, username: str | None, password: str | None) -> None:
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.puback_codes: dict[int, ReasonCode] = {}
        self.suback_codes: list[ReasonCode] = []
        self.connack: ReasonCode | None = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._published = threading.Condition()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{username}-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._connected.wait(WAIT_S):
            self.close()
            raise TimeoutError(f"no CONNACK for {username}")

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connack = reason_code
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.received.put((msg.topic, bytes(msg.payload)))

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        with self._published:
            self.puback_codes[mid] = reason_code
            self._published.notify_all()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties,
    ) -> None:
        self.suback_codes = reason_codes
        self._subscribed.set()

    def subscribe(self, topic: str) -> ReasonCode:
        """Subscribe at QoS 1 and return the SUBACK's reason code."""
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        if not self._subscribed.wait(WAIT_S):
            raise TimeoutError(f"no SUBACK for {topic}")
        return self.suback_codes[0]

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        """Publish at QoS 1 and return the PUBACK's reason code."""
        mid = self.client.publish(topic, payload, qos=1).mid
        with self._published:
            if not self._published.wait_for(lambda: mid in self.puback_codes, WAIT_S):
                raise TimeoutError(f"no PUBACK for {topic}")
            return self.puback_codes[mid]

    def next_message(self) -> tuple[str, bytes]:
        return self.received.get(timeout=WAIT_S)

    def assert_silent(self) -> None:
        try:
            topic, _ = self.received.get(timeout=SILENCE_S)
        except queue.Empty:
            return
        pytest.fail(f"a message the ACL should have stopped arrived on {topic}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


OpenSession = Callable[[str | None, str | None], Session]


@pytest.fixture
def open_session(broker_port: int) -> Iterator[OpenSession]:
    sessions: list[Session] = []

    def open_(username: str | None, password: str | None) -> Session:
        session = Session(broker_port, username, password)
        sessions.append(session)
        return session

    yield open_
    for session in sessions:
        session.close()


@pytest.fixture
def login(open_session: OpenSession) -> Callable[[str], Session]:
    """Log in with a known user's right password, insisting that the broker accepts it."""

    def login_(username: str) -> Session:
        session = open_session(username, PASSWORDS[username])
        assert session.connack is not None
        assert not session.connack.is_failure, f"{username} refused: {session.connack}"
        return session

    return login_


Login = Callable[[str], Session]


def test_gateway_publishes_its_own_topics_and_ingest_receives_them(login: Login) -> None:
    ingest = login("ingest")
    assert not ingest.subscribe(f"{ROOT}/#").is_failure
    gateway = login("gw-a")

    own_topics = [
        violation_topic(SITE, "gw-a", "cam-1"),
        camera_status_topic(SITE, "gw-a", "cam-1"),
        gateway_status_topic(SITE, "gw-a"),
    ]
    for topic in own_topics:
        assert not gateway.publish(topic, b"allowed").is_failure
        assert ingest.next_message() == (topic, b"allowed")


@pytest.mark.parametrize(
    "forged_topic",
    [
        pytest.param(violation_topic(SITE, "gw-b", "cam-9"), id="other-gateway-violation"),
        pytest.param(camera_status_topic(SITE, "gw-b", "cam-9"), id="other-gateway-camera"),
        pytest.param(gateway_status_topic(SITE, "gw-b"), id="other-gateway-status"),
        pytest.param(ack_topic(SITE, "gw-a"), id="forged-ack"),
        pytest.param(f"{ROOT}/{SITE}/gw-a/cam-1/other", id="unknown-channel"),
    ],
)
def test_gateway_cannot_publish_outside_its_topics(login: Login, forged_topic: str) -> None:
    ingest = login("ingest")
    ingest.subscribe(f"{ROOT}/#")
    gateway = login("gw-a")

    forged_code = gateway.publish(forged_topic, b"forged")
    control = violation_topic(SITE, "gw-a", "cam-1")
    gateway.publish(control, b"control")

    # The broker handles one client's publishes in order: once the control message is
    # here, the forged one would have been too.
    assert ingest.next_message() == (control, b"control")
    ingest.assert_silent()
    # Mosquitto 2.0 answers an MQTT v5 publisher "Not authorized" instead of a plain PUBACK.
    assert forged_code.is_failure, forged_code


def test_gateway_reads_only_its_own_acks(login: Login) -> None:
    ingest = login("ingest")
    gateway = login("gw-a")
    gateway.subscribe(ack_topic(SITE, "gw-a"))
    gateway.subscribe(ack_topic(SITE, "gw-b"))

    assert not ingest.publish(ack_topic(SITE, "gw-b"), b"for b").is_failure
    assert not ingest.publish(ack_topic(SITE, "gw-a"), b"for a").is_failure

    assert gateway.next_message() == (ack_topic(SITE, "gw-a"), b"for a")
    gateway.assert_silent()


def test_the_example_password_file_takes_more_users(tmp_path: Path) -> None:
    """As the docs tell an operator: add a gateway to passwd.example with mosquitto_passwd. The
    file must stay valid, keep its users, and the broker must accept all of them."""
    passwd = tmp_path / "passwd"
    shutil.copy(DEPLOY / "passwd.example", passwd)
    added = subprocess.run(
        ["mosquitto_passwd", "-b", str(passwd), "gw-two", "gw-two-secret"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (added.returncode, added.stdout + added.stderr) == (0, "")
    users = {
        "ingest": "example-ingest-password",
        "gw-demo": "example-gateway-password",
        "gw-two": "gw-two-secret",
    }
    assert [line.split(":")[0] for line in passwd.read_text().splitlines()] == list(users)
    port = free_port()
    production = (DEPLOY / "mosquitto.conf").read_text()
    with running_broker(tmp_path, broker_config(production, tmp_path, port), port):
        for user, password in users.items():
            session = Session(port, user, password)
            try:
                assert session.connack is not None
                assert not session.connack.is_failure, f"{user}: {session.connack}"
            finally:
                session.close()


@pytest.mark.parametrize("user", ["law_enforcement", "ingest"])
def test_users_that_are_not_gateways_cannot_publish_as_one(login: Login, user: str) -> None:
    """The gateway patterns apply to every login: a department (or ingest) must not publish
    under civicwatch/v1/SITE/ITS-OWN-NAME/... as if it were a gateway of that name."""
    observer = login("ingest")
    observer.subscribe(f"{ROOT}/#")
    client = login(user)
    forged = [
        violation_topic(SITE, user, "cam-1"),
        camera_status_topic(SITE, user, "cam-1"),
        gateway_status_topic(SITE, user),
        f"{ROOT}/{SITE}/{user}/cam-1/verify_result",
        announce_topic(SITE, user),
    ]
    codes = {topic: client.publish(topic, b"forged") for topic in forged}
    control = login("gw-a")
    control.publish(violation_topic(SITE, "gw-a", "cam-1"), b"control")

    assert observer.next_message() == (violation_topic(SITE, "gw-a", "cam-1"), b"control")
    observer.assert_silent()
    assert all(code.is_failure for code in codes.values()), codes


def test_ingest_cannot_publish_as_a_gateway(login: Login) -> None:
    ingest = login("ingest")
    observer = login("ingest")
    observer.subscribe(f"{ROOT}/#")

    forged_code = ingest.publish(violation_topic(SITE, "gw-a", "cam-1"), b"forged")
    ingest.publish(ack_topic(SITE, "gw-a"), b"control")

    assert observer.next_message() == (ack_topic(SITE, "gw-a"), b"control")
    observer.assert_silent()
    assert forged_code.is_failure, forged_code


@pytest.mark.parametrize(
    ("username", "password"),
    [
        pytest.param("gw-a", "not-the-password", id="wrong-password"),
        pytest.param("gw-unknown", PASSWORDS["gw-a"], id="unknown-user"),
        pytest.param(None, None, id="anonymous"),
    ],
)
def test_bad_credentials_are_refused_at_connect(
    open_session: OpenSession, username: str | None, password: str | None
) -> None:
    session = open_session(username, password)
    assert session.connack is not None
    assert session.connack.is_failure
    assert session.connack.getName() in {"Bad user name or password", "Not authorized"}


def test_a_payload_claiming_another_gateway_on_its_own_topic_is_refused_by_ingest(
    login: Login, tmp_path: Path
) -> None:
    """Past the ACL, ingest's topic check: gw-a1 may publish under its own prefix, but a payload
    there that claims gw-b1's camera is refused and stores nothing."""
    ingest = login("ingest")
    ingest.subscribe(f"{ROOT}/#")
    gateway = login(GATEWAY)
    forged = EventFactory(
        site_id=OTHER_SITE, gateway_id=OTHER_GATEWAY, camera_id=OTHER_CAMERA
    ).event()
    own_topic = violation_topic(REGISTRY_SITE, GATEWAY, CAMERA)

    assert not gateway.publish(own_topic, forged.to_wire()).is_failure
    topic, payload = ingest.next_message()

    with migrated_database(f"sqlite:///{tmp_path / 'ingest.db'}") as (_engine, sessions):
        handler = make_ingest(sessions, tmp_path / "evidence").handler
        ack = handler.handle(topic, payload)
        with sessions() as session:
            stored = session.scalar(select(func.count()).select_from(Event))
    assert ack is not None
    assert ack.outcome is AckOutcome.REJECTED
    assert ack.reason.startswith("topic_mismatch"), ack.reason
    assert stored == 0


def test_ingest_workers_read_through_a_shared_subscription(login: Login) -> None:
    """Scale-out subscribes as $share/GROUP/...; the ACL's read rules still apply through it."""
    shared = f"$share/ingest/{ROOT}/+/+/+/violation"
    worker = login("ingest")
    assert not worker.subscribe(shared).is_failure
    gateway = login("gw-a")

    topics = [violation_topic(SITE, "gw-a", f"cam-{n}") for n in range(3)]
    for topic in topics:
        gateway.publish(topic, b"shared")
    assert [worker.next_message()[0] for _ in topics] == topics


def test_a_gateway_in_the_ingest_group_reads_nothing(login: Login) -> None:
    """A gateway that joins ingest's share group reads none of the events.

    Mosquitto 2.0's acl_file does not check subscriptions, only delivery, so the broker may
    still hand the intruder a share of the messages and drop them there: the events reach
    ingest later, when the edge outbox resends what was never confirmed (docs/delivery.md).
    """
    shared = f"$share/ingest/{ROOT}/+/+/+/violation"
    worker = login("ingest")
    worker.subscribe(shared)
    intruder = login("gw-b")
    intruder.subscribe(shared)
    gateway = login("gw-a")

    for number in range(6):
        gateway.publish(violation_topic(SITE, "gw-a", f"cam-{number}"), b"shared")
    assert worker.next_message()[1] == b"shared"
    intruder.assert_silent()


def test_a_gateway_cannot_set_another_gateways_or_cameras_status(
    broker_port: int, login: Login, tmp_path: Path
) -> None:
    """gw-a1 publishes on its own status topics (the ACL lets it), claiming gw-b1 and cam-b1 in
    the payload, or naming a camera the registry gives to another gateway or does not know:
    ingest refuses each with a reason and stores only gw-a1's own, true status."""
    gateway = login(GATEWAY)
    own_camera_topic = camera_status_topic(REGISTRY_SITE, GATEWAY, CAMERA)

    def camera(site: str, gateway_id: str, camera_id: str) -> bytes:
        return CameraStatus(
            site_id=site,
            gateway_id=gateway_id,
            camera_id=camera_id,
            health=CameraHealth.OFFLINE,
            at=T0,
        ).to_wire()

    forged = [  # (topic on gw-a1's own prefix, payload, the reason ingest must give)
        (
            gateway_status_topic(REGISTRY_SITE, GATEWAY),
            GatewayStatus(
                site_id=OTHER_SITE, gateway_id=OTHER_GATEWAY, state=GatewayState.OFFLINE, at=T0
            ).to_wire(),
            RefusalReason.TOPIC_MISMATCH,
        ),
        (
            own_camera_topic,
            camera(OTHER_SITE, OTHER_GATEWAY, OTHER_CAMERA),
            RefusalReason.TOPIC_MISMATCH,
        ),
        (
            camera_status_topic(REGISTRY_SITE, GATEWAY, OTHER_CAMERA),
            camera(REGISTRY_SITE, GATEWAY, OTHER_CAMERA),
            RefusalReason.TOPIC_MISMATCH,
        ),
        (
            camera_status_topic(REGISTRY_SITE, GATEWAY, "cam-unknown"),
            camera(REGISTRY_SITE, GATEWAY, "cam-unknown"),
            RefusalReason.UNKNOWN_CAMERA,
        ),
    ]
    broker = BrokerSettings(port=broker_port, username="ingest", password=PASSWORDS["ingest"])
    with migrated_database(f"sqlite:///{tmp_path / 'ingest.db'}") as (_engine, sessions):
        rig = make_ingest(sessions, tmp_path / "evidence")
        consumer = IngestConsumer(
            broker,
            IngestSettings(client_id="ingest-status-check", evidence_dir=tmp_path / "evidence"),
            rig.service,
            rig.registry,
            rig.metrics,
        )
        consumer.start()
        try:
            assert consumer.ready.wait(WAIT_S), "ingest did not connect and subscribe"
            for topic, payload, _reason in forged:
                assert not gateway.publish(topic, payload).is_failure, topic
            true_status = camera(REGISTRY_SITE, GATEWAY, CAMERA)
            gateway.publish(own_camera_topic, true_status)  # in order: after the forged ones

            def own_status_stored() -> bool:
                with sessions() as session:
                    return session.get(CameraStatusRow, CAMERA) is not None

            deadline = time.monotonic() + WAIT_S
            while not own_status_stored() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            consumer.stop()
        with sessions() as session:
            cameras = set(session.scalars(select(CameraStatusRow.camera_id)))
            gateways = set(session.scalars(select(GatewayStatusRow.gateway_id)))
    assert cameras == {CAMERA}
    assert gateways == set()
    expected = {reason: sum(1 for *_, r in forged if r is reason) for _, _, reason in forged}
    counted = {reason: rig.metrics.refusal_count(reason) for reason in expected}
    assert counted == expected
