"""The wire contract shared by edge gateways and the server.

Depends on pydantic and paho-mqtt only. Everything that crosses MQTT is a model here.
"""

from contracts.acks import AckOutcome, IngestAck, IngestAckBatch, parse_acks
from contracts.events import (
    SCHEMA_VERSION,
    BoundingBox,
    EvidenceFrame,
    EvidenceLabel,
    ObservedObject,
    Phase,
    ViolationEvent,
    ViolationKind,
)
from contracts.status import CameraHealth, CameraStatus, GatewayState, GatewayStatus

__all__ = [
    "SCHEMA_VERSION",
    "AckOutcome",
    "BoundingBox",
    "CameraHealth",
    "CameraStatus",
    "EvidenceFrame",
    "EvidenceLabel",
    "GatewayState",
    "GatewayStatus",
    "IngestAck",
    "IngestAckBatch",
    "ObservedObject",
    "Phase",
    "ViolationEvent",
    "ViolationKind",
    "parse_acks",
]
