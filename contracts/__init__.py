"""The wire contract shared by edge gateways and the server.

Depends on pydantic and paho-mqtt only. Everything that crosses MQTT is a model here.
"""

from contracts.acks import AckOutcome, IngestAck, IngestAckBatch, parse_acks
from contracts.event_frame import (
    FRAME_CONTENT_TYPE,
    EventEncoding,
    FrameError,
    decode_event,
    encode_event,
)
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
    "FRAME_CONTENT_TYPE",
    "SCHEMA_VERSION",
    "AckOutcome",
    "BoundingBox",
    "CameraHealth",
    "CameraStatus",
    "EventEncoding",
    "EvidenceFrame",
    "EvidenceLabel",
    "FrameError",
    "GatewayState",
    "GatewayStatus",
    "IngestAck",
    "IngestAckBatch",
    "ObservedObject",
    "Phase",
    "ViolationEvent",
    "ViolationKind",
    "decode_event",
    "encode_event",
    "parse_acks",
]
