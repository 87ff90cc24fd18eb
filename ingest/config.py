"""Settings for the MQTT consumer and the evidence store."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class IngestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(
        default="civicwatch-ingest", description="stable: the broker keeps its session"
    )
    session_expiry_seconds: int = Field(
        default=7 * 24 * 3600,
        ge=0,
        description="how long the broker queues for ingest while it is down",
    )
    max_payload_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    evidence_dir: Path = Path("var/evidence")
