"""The site's signed plates on a broker running the dynamic-security plugin with
make-dynsec.sh's roles: the site's own gateways read them, a gateway of another site may not
subscribe, and only the server (ingest's login) writes them."""

from __future__ import annotations

from contracts.topics import site_plates_topic
from tests.factories import GATEWAY
from tests.factories import SITE as OTHER_SITE
from tests.integration.test_mosquitto_dynsec import (  # noqa: F401 - fixtures
    SITE,
    Login,
    dynsec_broker,
    login,
)


def test_only_the_sites_own_gateways_read_its_plates_and_only_the_server_writes_them(
    login: Login,  # noqa: F811
) -> None:
    ingest = login("ingest")
    own = login("gw-b")  # a gateway of SITE
    other = login(GATEWAY)  # a gateway of tests.factories' site
    assert not own.subscribe(site_plates_topic(SITE)).is_failure
    assert other.subscribe(site_plates_topic(SITE)).is_failure
    assert not other.subscribe(site_plates_topic(OTHER_SITE)).is_failure  # its own site's
    assert own.subscribe(site_plates_topic(OTHER_SITE)).is_failure
    # Nobody but the server writes plates, not even for the gateway's own site.
    assert own.publish(site_plates_topic(SITE), b"forged").is_failure
    assert other.publish(site_plates_topic(SITE), b"forged").is_failure
    assert not ingest.publish(site_plates_topic(SITE), b"site-1 plates").is_failure
    assert not ingest.publish(site_plates_topic(OTHER_SITE), b"other plates").is_failure
    assert own.next_message() == (site_plates_topic(SITE), b"site-1 plates")
    assert other.next_message() == (site_plates_topic(OTHER_SITE), b"other plates")
    own.assert_silent()
    other.assert_silent()
