"""Two civicwatch servers on one broker, as two environments (or a scale-out) run them.

With fixed MQTT client ids they kicked each other off every few seconds, and each took the
other's persistent session and with it the other's events. Each client now has its own id,
and each deployment its own shared-subscription group.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from sqlalchemy import select

from civicwatch.config import CivicwatchConfig, ServerSettings
from civicwatch.mqtt_identity import resolve_ingest
from civicwatch.server import Server, build_server, worker_client_ids
from contracts.acks import AckOutcome, IngestAck
from contracts.mqtt import make_client, process_client_id
from contracts.topics import ack_topic
from ingest.config import IngestSettings
from ingest.validation import RefusalReason
from storage.tables import Event
from tests.conftest import MosquittoProcess
from tests.factories import (
    GATEWAY,
    OTHER_CAMERA,
    OTHER_GATEWAY,
    OTHER_SITE,
    SITE,
    EventFactory,
    make_registry,
    start_from_migrated_template,
)

TIMEOUT = 15.0
EVENTS = 10
KICKED = "already connected, closing old connection"


def deployment(tmp_path: Path, name: str, mosquitto: MosquittoProcess, site: str) -> Server:
    """A server with every MQTT setting left at its default, for one site of the registry."""
    config = CivicwatchConfig(
        sites=[s for s in make_registry().sites if s.id == site],
        broker=mosquitto.settings,
        server=ServerSettings(
            database_url=f"sqlite:///{tmp_path / name}.db",
            ingest=IngestSettings(evidence_dir=tmp_path / f"{name}-evidence"),
        ),
    )
    start_from_migrated_template(config.server.database_url)
    return build_server(config)


@pytest.fixture
def servers(tmp_path: Path, mosquitto: MosquittoProcess) -> Iterator[tuple[Server, Server]]:
    with ExitStack() as stack:
        pair = []
        for name, site in (("staging", SITE), ("production", OTHER_SITE)):
            server = deployment(tmp_path, name, mosquitto, site)
            server.start()
            stack.callback(server.stop)
            pair.append(server)
        yield pair[0], pair[1]


def stored_ids(server: Server) -> set[UUID]:
    with server.session_factory() as session:
        return set(session.scalars(select(Event.message_id)))


def test_two_servers_on_one_broker_stay_connected_and_keep_their_own_events(
    mosquitto: MosquittoProcess, servers: tuple[Server, Server]
) -> None:
    staging, production = servers
    acks: queue.Queue[IngestAck] = queue.Queue()
    edge = make_client(mosquitto.settings, f"edge-{uuid4().hex[:8]}")
    edge.on_message = lambda _c, _u, m: acks.put(IngestAck.model_validate_json(m.payload))
    edge.connect(mosquitto.settings.host, mosquitto.settings.port)
    edge.loop_start()
    try:
        edge.subscribe([(ack_topic(SITE, GATEWAY), 1), (ack_topic(OTHER_SITE, OTHER_GATEWAY), 1)])
        for server in servers:
            for consumer in server.consumers:
                assert consumer.ready.wait(TIMEOUT), f"{consumer.client_id} never subscribed"
        time.sleep(3)  # the fixed ids took over each other's sessions within ~2 s
        mine = EventFactory()
        theirs = EventFactory(site_id=OTHER_SITE, gateway_id=OTHER_GATEWAY, camera_id=OTHER_CAMERA)
        sent: dict[str, set[UUID]] = {"staging": set(), "production": set()}
        for _ in range(EVENTS):
            for name, factory in (("staging", mine), ("production", theirs)):
                event = factory.event()
                sent[name].add(event.message_id)
                edge.publish(factory.topic, event.to_wire(), qos=1).wait_for_publish(TIMEOUT)
        stored: dict[str, set[UUID]] = {}
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            stored = {"staging": stored_ids(staging), "production": stored_ids(production)}
            if stored == sent:
                break
            time.sleep(0.2)
        assert stored == sent
        answers = [acks.get(timeout=TIMEOUT) for _ in range(2 * EVENTS)]
        assert {a.message_id for a in answers} == sent["staging"] | sent["production"]
        assert {a.outcome for a in answers} == {AckOutcome.STORED}
        time.sleep(1)  # a second answer (a refusal from the other deployment) would be here now
        assert acks.empty(), acks.get()
        for server in servers:
            assert all(consumer.ready.is_set() for consumer in server.consumers)
            assert sum(server.metrics.refusal_count(r) for r in RefusalReason) == 0
    finally:
        edge.disconnect()
        edge.loop_stop()
    log = (mosquitto.workdir / "mosquitto.log").read_text(errors="replace")
    assert KICKED not in log, [line for line in log.splitlines() if KICKED in line][:3]


def test_ids_and_groups_follow_the_deployment(tmp_path: Path) -> None:
    """Persistent sessions keep one id across restarts; the group names the deployment."""
    one = resolve_ingest(IngestSettings(), f"sqlite:///{tmp_path / 'a.db'}")
    again = resolve_ingest(IngestSettings(), f"sqlite:///{tmp_path / 'a.db'}")
    other = resolve_ingest(IngestSettings(), f"sqlite:///{tmp_path / 'b.db'}")
    assert (one.client_id, one.shared_group) == (again.client_id, again.shared_group)
    assert one.shared_group != other.shared_group
    assert one.client_id != other.client_id
    named = resolve_ingest(IngestSettings(deployment="prod", workers=2), "sqlite:///x.db")
    assert named.shared_group == "civicwatch-prod"
    ids = worker_client_ids(named)
    assert len(set(ids)) == 2
    assert all(i.startswith("civicwatch-ingest-prod-") for i in ids)
    assert process_client_id("civicwatch-notifier") != process_client_id("civicwatch-notifier")


def test_a_restarted_server_gets_what_was_sent_while_it_was_down(
    tmp_path: Path, mosquitto: MosquittoProcess
) -> None:
    """The derived ingest id is the same after a restart, so the broker's queue for the
    session (subscribed through the deployment's group) is not orphaned."""
    first = deployment(tmp_path, "solo", mosquitto, SITE)
    first.start()
    try:
        assert first.consumer.ready.wait(TIMEOUT)
    finally:
        first.stop()
    edge = make_client(mosquitto.settings, f"edge-{uuid4().hex[:8]}")
    edge.connect(mosquitto.settings.host, mosquitto.settings.port)
    edge.loop_start()
    factory = EventFactory()
    sent = set()
    try:
        for _ in range(EVENTS):
            event = factory.event()
            sent.add(event.message_id)
            edge.publish(factory.topic, event.to_wire(), qos=1).wait_for_publish(TIMEOUT)
    finally:
        edge.disconnect()
        edge.loop_stop()
    second = deployment(tmp_path, "solo", mosquitto, SITE)
    assert [c.client_id for c in second.consumers] == [c.client_id for c in first.consumers]
    second.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while stored_ids(second) != sent and time.monotonic() < deadline:
            time.sleep(0.2)
        assert stored_ids(second) == sent
    finally:
        second.stop()
