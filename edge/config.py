"""Settings only a gateway needs: the detector, tracking, evidence and the outbox."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_MODEL = "yolo11n.pt"
MODEL_ENV_VAR = "CIVICWATCH_MODEL"


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DetectorSettings(_Settings):
    model: str = Field(
        default=DEFAULT_MODEL,
        description=f"anything Ultralytics loads: a .pt, an exported folder; ${MODEL_ENV_VAR} wins",
    )
    confidence: float = Field(default=0.3, gt=0, lt=1)
    iou: float = Field(default=0.5, gt=0, lt=1)
    imgsz: int = Field(default=640, ge=32)
    device: str = "cpu"


class TrackerSettings(_Settings):
    lost_track_seconds: float = Field(
        default=3.0, gt=0, description="ByteTrack keeps a lost track this long before dropping it"
    )
    grace_seconds: float = Field(
        default=10.0, ge=0, description="an object unseen this long keeps its dwell clock"
    )
    rejoin_iou: float = Field(
        default=0.4, gt=0, le=1, description="box overlap that ties a new track to a lost one"
    )
    max_drift: float = Field(
        default=0.5,
        gt=0,
        description=(
            "movement, as a share of box height, that counts as leaving and resets the clock"
        ),
    )
    rearm_seconds: float = Field(
        default=300.0,
        ge=0,
        description="after a violation clears, its spot cannot raise again for this long",
    )


class EvidenceSettings(_Settings):
    jpeg_quality: int = Field(default=85, ge=30, le=100)
    max_width: int = Field(
        default=1280, ge=160, description="frames wider than this are scaled down"
    )
    update_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        description="how often an open violation sends an update with a new frame",
    )
    dwell_frame_seconds: float | None = Field(
        default=None,
        gt=0,
        description="a panorama every this many seconds over the dwell; default: half the dwell",
    )
    max_dwell_frames: int = Field(
        default=6, ge=1, le=20, description="panoramas kept over one dwell, spread evenly"
    )
    closeup_min_width: int = Field(
        default=320, ge=64, description="a vehicle close-up is enlarged to at least this width"
    )
    plate_read_seconds: float = Field(
        default=2.0, gt=0, description="how often a vehicle's plate is read while it stays"
    )


class EdgeSettings(_Settings):
    data_dir: Path = Field(default=Path("var/edge"), description="the outbox lives here")
    resend_after_seconds: float = Field(
        default=10.0, gt=0, description="an unconfirmed event is published again after this"
    )
    status_interval_seconds: float = Field(default=30.0, gt=0)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    tracker: TrackerSettings = Field(default_factory=TrackerSettings)
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)
