"""The server's exemption settings: plain pydantic, so the config loads without server packages."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from contracts.exemptions import DEFAULT_PLATE_CONFIDENCE_FLOOR

KEY_ENV_VAR = "CIVICWATCH_RULES_SIGNING_KEY"


class ExemptionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signing_key_file: Path | None = Field(
        default=None,
        description=(
            "the Ed25519 private key that signs rule documents (base64 of the raw 32 bytes, or "
            f"PEM); ${KEY_ENV_VAR} (the key itself) wins; neither: no documents are pushed"
        ),
    )
    plate_confidence_floor: float = Field(
        default=DEFAULT_PLATE_CONFIDENCE_FLOOR,
        ge=0,
        le=1,
        description=(
            "a plate read below this never exempts, merges or links cases by plate; the default "
            "is the calibrated floor (docs/benchmarks.md, plates in whole scenes)"
        ),
    )
    warning_silence_margin_minutes: float = Field(
        default=10.0,
        gt=0,
        le=1440,
        description=(
            "a warned item whose gateway said neither complied nor opened by its grace's end "
            "plus this margin goes to the dispatchers' queue (state new): the sweep leader "
            "checks each sweep interval; the margin covers a gateway's reconnect and outbox"
        ),
    )
