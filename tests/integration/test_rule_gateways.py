"""loadgen.rule_gateways, the simulated gateways of bench.rule_push, on a real broker: each takes
its own signed document through the edge's RuleStore, refuses another gateway's, and notes raw
messages; a permit change through ExemptionService reaches every one of them; with a registry,
each gateway gets a small signed document (schema 3), takes the site's plates once from the
site topic, and a registry edit reaches every gateway as a patch, nothing fetched or rewritten."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from contracts.exemptions import AllowlistCategory, AllowlistRule, StayHistory
from contracts.mqtt import MqttSession
from contracts.rule_signing import generate_key_pair, private_key_from_text
from contracts.sites import SiteRegistry
from contracts.topics import rules_topic, site_plates_topic
from dispatch.exemptions import ExemptionService, PermitIn, RulePublisher, SignedDocument
from dispatch.registry import Category, RegistryService, VehicleIn
from edge.rule_store import RuleStore
from loadgen.rule_gateways import RuleGateways, raw_topic, rule_push_site
from storage.database import SessionFactory
from storage.tables import RegistryVehicle, utcnow
from tests.conftest import MosquittoProcess
from tests.factories import migrated_database
from tests.waiting import wait_for

GATEWAYS = 5


@dataclass
class Rig:
    service: ExemptionService
    gateways: RuleGateways
    seen: Seen
    sessions: SessionFactory
    publish: Callable[[Sequence[SignedDocument]], None]


class Seen:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, kind: str, gateway: str, value: object, _at: float) -> None:
        with self.lock:
            self.lines.append((kind, gateway, str(value)))

    def holding(self, version: int) -> set[str]:
        with self.lock:
            return {g for kind, g, v in self.lines if kind == "rules" and int(v) >= version}


@pytest.fixture
def rig(database_url: str, tmp_path: Path, mosquitto: MosquittoProcess) -> Iterator[Rig]:
    site = rule_push_site(GATEWAYS, "sim")
    private, public = generate_key_pair()
    seen = Seen()
    gateways = RuleGateways(mosquitto.settings, site, public, tmp_path / "gw", seen, workers=4)
    gateways.connect(30)
    stop = threading.Event()
    loop = threading.Thread(target=gateways.run, args=(stop,))
    loop.start()
    publisher = RulePublisher(mosquitto.settings)
    publisher.start()
    assert publisher.wait_connected(5)
    try:
        with migrated_database(database_url) as (_engine, sessions):
            service = ExemptionService(
                sessions,
                SiteRegistry(sites=[site]),
                private_key_from_text(private),
                on_change=publisher.publish,
            )
            yield Rig(service, gateways, seen, sessions, publisher.publish)
    finally:
        publisher.stop()
        stop.set()
        loop.join(10)
        gateways.close()


def test_a_permit_change_reaches_every_simulated_gateway_through_its_rule_store(
    rig: Rig,
) -> None:
    service, gateways, seen = rig.service, rig.gateways, rig.seen
    [first, *_] = service.publish_all()
    wait_for(lambda: len(seen.holding(first.version)) == GATEWAYS)
    now = utcnow()
    service.issue_permit(
        PermitIn(
            site_id="sim-site",
            plate="沪A12345",
            valid_from=now - timedelta(minutes=1),
            valid_to=now + timedelta(hours=1),
            reason="bench",
        ),
        "test",
    )
    service.issue_rule(
        AllowlistRule(
            id="residents",
            site_id="sim-site",
            valid_from=now - timedelta(days=1),
            reason="住户",
            issued_at=now,
            category=AllowlistCategory.RESIDENT,
            plates=[f"沪B{n:05d}" for n in range(500)],
        ),
        "test",
    )
    wait_for(lambda: len(seen.holding(first.version + 2)) == GATEWAYS)
    for gateway in gateways.gateways:
        document = gateway.store.document
        assert document is not None
        assert sorted(rule.type for rule in document.rules) == ["allowlist", "permit"]
        assert gateway.store.path.exists(), "taken documents are on disk, as on a gateway"
        # The server composes each document around rules serialised once for all gateways:
        # what the gateway parsed is the document built for it directly.
        with rig.sessions() as session:
            direct = service.document(session, gateway.id, document.version, document.issued_at)
        assert document.model_dump() == direct.model_dump()


def test_a_simulated_gateway_refuses_another_gateways_document_and_notes_raw_messages(
    rig: Rig, mosquitto: MosquittoProcess
) -> None:
    service, gateways, seen = rig.service, rig.gateways, rig.seen
    documents = service.publish_all()
    one, two = gateways.gateways[0], gateways.gateways[1]
    wait_for(lambda: two.store.version == documents[1].version)
    sender = MqttSession(mosquitto.settings, "sender")
    sender.start()
    try:
        assert sender.connected.wait(5)
        own = next(d for d in documents if d.topic == rules_topic("sim-site", one.id))
        sender.publish(two.rules_topic, own.payload, qos=1).wait_for_publish(5)
        sender.publish(raw_topic(two.id), b"00000042 raw", qos=1).wait_for_publish(5)
        wait_for(lambda: ("raw", two.id, "00000042") in seen.lines)
        wait_for(lambda: two.store.refused["wrong_gateway"] == 1)
    finally:
        sender.stop()
    assert two.store.version == documents[1].version


def test_with_a_registry_each_gateway_gets_a_small_signed_document_and_the_plates_once(
    rig: Rig,
) -> None:
    service, gateways, seen = rig.service, rig.gateways, rig.seen
    plates = [f"沪R{n:05d}" for n in range(2000)]
    now = utcnow()
    with rig.sessions() as session, session.begin():
        session.add_all(
            RegistryVehicle(
                id=f"r{n}",
                site_id="sim-site",
                plate=plate,
                category="resident",
                owner_name="张三",
                phone="13800001234",
                created_at=now,
                created_by="test",
                updated_at=now,
                updated_by="test",
            )
            for n, plate in enumerate(plates)
        )
    first = service.publish_all()
    wait_for(lambda: len(seen.holding(first[0].version)) == GATEWAYS)
    written = {g.id: _plates_file(g.store).stat().st_ino for g in gateways.gateways}
    changed: list[SignedDocument] = []

    def keep_and_publish(documents: Sequence[SignedDocument]) -> None:
        changed.extend(documents)
        rig.publish(documents)

    service.set_on_change(keep_and_publish)
    service.issue_permit(
        PermitIn(
            site_id="sim-site",
            plate="沪A12345",
            valid_from=now - timedelta(minutes=1),
            valid_to=now + timedelta(hours=1),
            reason="bench",
        ),
        "test",
    )
    wait_for(lambda: len(seen.holding(first[0].version + 1)) == GATEWAYS)
    # No plates in a permit change: each gateway's small signed document names their hash.
    envelopes = [json.loads(document.payload) for document in changed]
    assert all(d.topic != site_plates_topic("sim-site") for d in changed)
    assert all("site_plates" not in envelope for envelope in envelopes)
    assert all(len(document.payload) < 2000 for document in changed)
    assert all(json.loads(e["document"])["schema_version"] == 3 for e in envelopes)
    at = utcnow()
    for gateway in gateways.gateways:
        # Same plates: not written again; the gateway runs the registry's plates and the permit.
        assert _plates_file(gateway.store).stat().st_ino == written[gateway.id]
        assert gateway.store.plates_fetched == 1  # once, from the site topic, at the start
        zone = gateway.store.site.gateways[0].cameras[0].zones[0]
        for plate in (plates[0], plates[-1], "沪A12345"):
            assert gateway.store.decide(plate, 0.99, zone, at, StayHistory(at)).exempt
        assert not gateway.store.decide("沪B99999", 0.99, zone, at, StayHistory(at)).exempt
        for secret in (b"13800001234", "张三".encode()):
            assert not any(secret in p.read_bytes() for p in gateway.store.path.parent.iterdir())
    # A registry edit: the site's plates signed once on the site topic, and each gateway's
    # document carries the one-plate patch, which every gateway applies.
    changed.clear()
    site = gateways.gateways[0].store.site
    registry = RegistryService(rig.sessions, SiteRegistry(sites=[site]), service)
    registry.create(
        VehicleIn(
            site_id="sim-site",
            plate="沪Z00001",
            category=Category.RESIDENT,
            owner_name="李四",
            phone="13900001234",
        ),
        "test",
    )
    wait_for(lambda: len(seen.holding(first[0].version + 2)) == GATEWAYS)
    [site_document] = [d for d in changed if d.topic == site_plates_topic("sim-site")]
    assert site_document.plates is not None
    assert len(site_document.plates.text) > 2000 * 8  # the whole set, once
    assert len(site_document.payload) * 3 < len(site_document.plates.text)  # compressed
    documents = [d for d in changed if d is not site_document]
    assert len(documents) == GATEWAYS
    assert all(len(document.payload) < 2000 for document in documents)
    for document in documents:
        named = json.loads(json.loads(document.payload)["document"])["site_plates"]
        assert named["patch"]["added"]["resident"] == ["沪Z00001"]
    for gateway in gateways.gateways:
        assert gateway.store.plates_patched == 1
        assert gateway.store.plates_fetched == 1
        assert gateway.store.wanted_plates is None
        assert _plates_file(gateway.store).stat().st_ino == written[gateway.id]
        zone = gateway.store.site.gateways[0].cameras[0].zones[0]
        assert gateway.store.decide("沪Z00001", 0.99, zone, at, StayHistory(at)).exempt
        running = gateway.store.document
        assert running is not None
        with rig.sessions() as session:
            direct = service.document(session, gateway.id, running.version, running.issued_at)
        assert running.model_dump() == direct.model_dump()


def _plates_file(store: RuleStore) -> Path:
    [found] = store.path.parent.glob(f"{store.path.name}.plates-*")
    return found
