"""The broker ACL for rule documents: only the server writes them, each gateway reads its own."""

from __future__ import annotations

from contracts.topics import rules_topic, site_plates_topic
from tests.integration.test_mosquitto_acl import (  # noqa: F401 - fixtures
    SITE,
    Login,
    broker_port,
    login,
    open_session,
)


def test_gateway_reads_only_its_own_rules_and_cannot_write_them(login: Login) -> None:  # noqa: F811
    ingest = login("ingest")
    gateway = login("gw-a")
    assert not gateway.subscribe(rules_topic(SITE, "gw-a")).is_failure
    gateway.subscribe(rules_topic(SITE, "gw-b"))

    # A gateway forging its own rules is refused; the server's go through.
    assert gateway.publish(rules_topic(SITE, "gw-a"), b"forged").is_failure
    assert not ingest.publish(rules_topic(SITE, "gw-b"), b"for b").is_failure
    assert not ingest.publish(rules_topic(SITE, "gw-a"), b"for a").is_failure

    assert gateway.next_message() == (rules_topic(SITE, "gw-a"), b"for a")
    gateway.assert_silent()


def test_department_users_cannot_write_rules(login: Login) -> None:  # noqa: F811
    gateway = login("gw-a")
    gateway.subscribe(rules_topic(SITE, "gw-a"))
    department = login("law_enforcement")
    assert department.publish(rules_topic(SITE, "gw-a"), b"forged").is_failure
    gateway.assert_silent()


def test_a_sites_plates_are_written_by_the_server_only(login: Login) -> None:  # noqa: F811
    """The fallback ACL cannot tie a gateway to its site (the plugin does:
    test_site_plates_dynsec.py); it lets gateways read site plates and only ingest write them."""
    ingest = login("ingest")
    gateway = login("gw-a")
    department = login("law_enforcement")
    assert not gateway.subscribe(site_plates_topic(SITE)).is_failure
    department.subscribe(site_plates_topic(SITE))
    assert gateway.publish(site_plates_topic(SITE), b"forged").is_failure
    assert department.publish(site_plates_topic(SITE), b"forged").is_failure
    assert not ingest.publish(site_plates_topic(SITE), b"the plates").is_failure
    assert gateway.next_message() == (site_plates_topic(SITE), b"the plates")
    gateway.assert_silent()
    department.assert_silent()
