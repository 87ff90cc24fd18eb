"""The site's registry plates on their own signed topic, end to end on a real broker and a real
database (SQLite and PostgreSQL): the gateway (its RuleStore behind its real EdgePublisher)
takes the whole set from the site topic once, then each registry edit as the patch in its
document; a gateway that was offline for two edits, or lost its plates file, takes the whole set
again when it is back; forged plates on the site topic are refused and counted."""

from __future__ import annotations

from pathlib import Path

from contracts.exemptions import SitePlates
from contracts.mqtt import MqttSession
from contracts.rule_signing import (
    PlatesPart,
    RefusalReason,
    generate_key_pair,
    private_key_from_text,
    sign_site_plates,
)
from contracts.topics import site_plates_topic
from dispatch.exemptions import ExemptionService, RulePublisher
from dispatch.registry import Category, RegistryService, VehicleIn
from storage.tables import RegistryVehicle, utcnow
from tests.factories import SITE
from tests.integration.test_exemptions_api import (  # noqa: F401 - the rig fixture
    PRIVATE,
    Gateway,
    Rig,
    rig,
)
from tests.waiting import wait_for

WAIT_S = 5.0


def register(rig: Rig, plate: str) -> None:  # noqa: F811
    registry = RegistryService(rig.sessions, rig.registry, rig.service)
    registry.create(
        VehicleIn(
            site_id=SITE,
            plate=plate,
            category=Category.RESIDENT,
            owner_name="王五",
            phone="13700001234",
        ),
        "test",
    )


def plates_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("rules.json.plates-*"))


def test_edits_arrive_as_patches_and_an_offline_gateway_takes_the_whole_set(
    rig: Rig,  # noqa: F811
) -> None:
    folder = rig.folder / "gw"
    rig.service.publish_all()
    gateway = Gateway(rig.mosquitto, folder, rig.registry)
    try:
        wait_for(lambda: gateway.rules.version is not None, WAIT_S)
        assert gateway.rules.plates_fetched == 1  # new: the whole set, from the site topic
        register(rig, "沪R00001")
        wait_for(lambda: gateway.exempt("沪R00001"), WAIT_S)
        assert gateway.rules.plates_patched == 1
        assert gateway.rules.plates_fetched == 1
        assert not gateway.rules.refused
    finally:
        gateway.stop()
    # Two edits while it is away: the retained document's patch starts from a set it never
    # held, so it takes the whole set from the site topic when it is back.
    register(rig, "沪R00002")
    register(rig, "沪R00003")
    back = Gateway(rig.mosquitto, folder, rig.registry)
    try:
        assert back.exempt("沪R00001")  # from disk, before the broker answers
        wait_for(lambda: back.exempt("沪R00003"), WAIT_S)
        assert back.exempt("沪R00002")
        assert back.rules.plates_fetched == 1
        assert back.rules.plates_patched == 0
        assert back.rules.wanted_plates is None
        assert not back.rules.refused
        # Back in step: the next edit is a patch again.
        register(rig, "沪R00004")
        wait_for(lambda: back.exempt("沪R00004"), WAIT_S)
        assert back.rules.plates_patched == 1
        assert back.rules.plates_fetched == 1
    finally:
        back.stop()
    assert len(plates_files(folder)) == 1


def test_a_gateway_that_lost_its_plates_takes_them_again(rig: Rig) -> None:  # noqa: F811
    folder = rig.folder / "gw"
    register(rig, "沪R00001")
    rig.service.publish_all()
    gateway = Gateway(rig.mosquitto, folder, rig.registry)
    try:
        wait_for(lambda: gateway.exempt("沪R00001"), WAIT_S)
        version = gateway.rules.version
    finally:
        gateway.stop()
    for plates_file in plates_files(folder):
        plates_file.unlink()
    back = Gateway(rig.mosquitto, folder, rig.registry)
    try:
        assert back.rules.refused[RefusalReason.PLATES_MISSING] == 1  # its disk copy
        wait_for(lambda: back.exempt("沪R00001"), WAIT_S)
        assert back.rules.version == version
        assert back.rules.plates_fetched == 1
    finally:
        back.stop()


def test_forged_plates_on_the_site_topic_are_refused_and_counted(
    rig: Rig,  # noqa: F811
) -> None:
    register(rig, "沪R00001")
    rig.service.publish_all()
    forger_key = private_key_from_text(generate_key_pair()[0])
    forged = PlatesPart.of(SitePlates(site_id=SITE, resident=["沪R00001", "京B54321"]))
    sender = MqttSession(rig.mosquitto.settings, "forger")
    sender.start()
    try:
        assert sender.connected.wait(WAIT_S)
        payload = sign_site_plates(forged, forger_key)
        info = sender.publish(site_plates_topic(SITE), payload, qos=1, retain=True)
        info.wait_for_publish(WAIT_S)
    finally:
        sender.stop()
    gateway = Gateway(rig.mosquitto, rig.folder / "gw", rig.registry)
    try:
        wait_for(lambda: gateway.rules.refused[RefusalReason.WRONG_KEY] == 1, WAIT_S)
        assert gateway.rules.version is None  # waits for genuine plates, uses nothing forged
        assert gateway.rules.wanted_plates is not None
        assert not gateway.exempt("京B54321")
        rig.service.publish_all()  # the server's next republish puts the genuine set back
        wait_for(lambda: gateway.exempt("沪R00001"), WAIT_S)
        assert not gateway.exempt("京B54321")
        assert gateway.rules.wanted_plates is None
    finally:
        gateway.stop()


def test_an_edit_by_a_process_that_sent_no_plates_still_arrives_as_a_patch(
    rig: Rig,  # noqa: F811
) -> None:
    """The registry CLI, or an API process before its first change, has sent no plates: its
    patch starts from the plates as committed before the change, which the gateway holds."""
    folder = rig.folder / "gw"
    register(rig, "沪R00001")
    rig.service.publish_all()
    gateway = Gateway(rig.mosquitto, folder, rig.registry)
    try:
        wait_for(lambda: gateway.exempt("沪R00001"), WAIT_S)
        publisher = RulePublisher(rig.mosquitto.settings)  # the other process's own
        publisher.start()
        assert publisher.wait_connected(WAIT_S)
        try:
            other_process = ExemptionService(
                rig.sessions,
                rig.registry,
                private_key_from_text(PRIVATE),
                on_change=publisher.publish,
            )
            RegistryService(rig.sessions, rig.registry, other_process).create(
                VehicleIn(
                    site_id=SITE,
                    plate="沪R00002",
                    category=Category.RESIDENT,
                    owner_name="王五",
                    phone="13700001234",
                ),
                "cli:test",
            )
            wait_for(lambda: gateway.exempt("沪R00002"), WAIT_S)
        finally:
            publisher.stop()
        assert gateway.rules.plates_patched == 1
        assert gateway.rules.plates_fetched == 1  # only the first, at the start
    finally:
        gateway.stop()


def test_a_change_rolled_back_after_its_documents_were_built_does_not_start_the_next_patch(
    rig: Rig,  # noqa: F811
) -> None:
    """A registry change whose commit fails after the site's documents were built (a plate
    registered at the same moment elsewhere) is never announced: the gateways never see its
    plates, so the next change's patch must start from the plates they do hold."""
    folder = rig.folder / "gw"
    rig.service.publish_all()
    gateway = Gateway(rig.mosquitto, folder, rig.registry)
    try:
        wait_for(lambda: gateway.rules.version is not None, WAIT_S)
        now = utcnow()
        with rig.sessions() as session:
            session.begin()
            session.add(
                RegistryVehicle(
                    id="vehicle-rolled-back",
                    site_id=SITE,
                    plate="沪R09999",
                    category=Category.RESIDENT.value,
                    owner_name="王五",
                    phone="13700001234",
                    created_at=now,
                    created_by="test",
                    updated_at=now,
                    updated_by="test",
                )
            )
            session.flush()
            assert rig.service.bump(session, SITE, now)  # built, never announced
            session.rollback()
        register(rig, "沪R00001")
        wait_for(lambda: gateway.exempt("沪R00001"), WAIT_S)
        assert not gateway.exempt("沪R09999")
        assert gateway.rules.plates_patched == 1
        assert gateway.rules.plates_fetched == 1  # only the first, at the start
        assert not gateway.rules.refused
    finally:
        gateway.stop()
