"""The contract published as JSON Schema, one document per message type."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from contracts.acks import IngestAck, IngestAckBatch
from contracts.announce import Announcement
from contracts.events import SCHEMA_VERSION, ViolationEvent
from contracts.status import CameraStatus, GatewayStatus
from contracts.verification import VerificationRequest, VerificationResult

MESSAGE_MODELS: dict[str, type[BaseModel]] = {
    "violation_event": ViolationEvent,
    "camera_status": CameraStatus,
    "gateway_status": GatewayStatus,
    "ingest_ack": IngestAck,
    "ingest_ack_batch": IngestAckBatch,
    "verification_request": VerificationRequest,
    "verification_result": VerificationResult,
    "announcement": Announcement,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """File stem -> JSON Schema (draft 2020-12) of each message on the wire."""
    schemas: dict[str, dict[str, Any]] = {}
    for stem, model in MESSAGE_MODELS.items():
        schema = model.model_json_schema(mode="serialization")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://civicwatch.example/schema/v{SCHEMA_VERSION}/{stem}.json"
        schemas[stem] = schema
    return schemas
