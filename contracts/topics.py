"""MQTT topic names. Every topic names its site and gateway so a broker ACL can pin a gateway.

civicwatch/v1/{site}/{gateway}/status               gateway status, retained, last will
civicwatch/v1/{site}/{gateway}/{camera}/status      camera status, retained
civicwatch/v1/{site}/{gateway}/{camera}/violation   violation events, QoS 1
civicwatch/v1/{site}/{gateway}/ack                  ingest -> gateway confirmations, QoS 1
civicwatch/v1/{site}/{gateway}/{camera}/verify      server -> gateway: re-check a zone, QoS 1
civicwatch/v1/{site}/{gateway}/{camera}/verify_result  gateway -> server: the answer, QoS 1
civicwatch/v1/{site}/{gateway}/rules                server -> gateway: signed rule document,
                                                    retained, QoS 1 (contracts.rule_signing)
civicwatch/v1/{site}/plates                         server -> the site's gateways: the site's
                                                    registry plates, signed, retained, QoS 1
"""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "civicwatch/v1"

VIOLATION_SUBSCRIPTION = f"{ROOT}/+/+/+/violation"
STATUS_SUBSCRIPTIONS = (f"{ROOT}/+/+/status", f"{ROOT}/+/+/+/status")
VERIFY_CHANNEL = "verify"
VERIFY_RESULT_CHANNEL = "verify_result"
VERIFY_RESULT_SUBSCRIPTION = f"{ROOT}/+/+/+/{VERIFY_RESULT_CHANNEL}"


def violation_topic(site_id: str, gateway_id: str, camera_id: str) -> str:
    return f"{ROOT}/{site_id}/{gateway_id}/{camera_id}/violation"


def camera_status_topic(site_id: str, gateway_id: str, camera_id: str) -> str:
    return f"{ROOT}/{site_id}/{gateway_id}/{camera_id}/status"


def gateway_status_topic(site_id: str, gateway_id: str) -> str:
    return f"{ROOT}/{site_id}/{gateway_id}/status"


def ack_topic(site_id: str, gateway_id: str) -> str:
    return f"{ROOT}/{site_id}/{gateway_id}/ack"


RULES_CHANNEL = "rules"


def rules_topic(site_id: str, gateway_id: str) -> str:
    """Where the server keeps a gateway's signed rule document (retained: an offline gateway
    finds the newest one when it reconnects)."""
    return f"{ROOT}/{site_id}/{gateway_id}/{RULES_CHANNEL}"


PLATES_CHANNEL = "plates"


def site_plates_topic(site_id: str) -> str:
    """Where the server keeps the site's registry plates, signed (contracts.rule_signing): the
    one site-level topic. A gateway subscribes while its rule document names plates it cannot
    make from the ones it holds (new, or back after missing a change)."""
    return f"{ROOT}/{site_id}/{PLATES_CHANNEL}"


def verify_topic(site_id: str, gateway_id: str, camera_id: str) -> str:
    """Where the server asks one camera to re-check a zone."""
    return f"{ROOT}/{site_id}/{gateway_id}/{camera_id}/{VERIFY_CHANNEL}"


def verify_result_topic(site_id: str, gateway_id: str, camera_id: str) -> str:
    """Where a gateway answers a verification request for one camera."""
    return f"{ROOT}/{site_id}/{gateway_id}/{camera_id}/{VERIFY_RESULT_CHANNEL}"


@dataclass(frozen=True, slots=True)
class CameraTopic:
    site_id: str
    gateway_id: str
    camera_id: str
    channel: str  # "violation", "status", "verify" or "verify_result"


def parse_camera_topic(topic: str) -> CameraTopic | None:
    """The identity a camera topic claims, or None when the topic is not a camera topic."""
    prefix = ROOT + "/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix) :].split("/")
    if len(parts) != 4 or not all(parts):
        return None
    site_id, gateway_id, camera_id, channel = parts
    return CameraTopic(site_id, gateway_id, camera_id, channel)
