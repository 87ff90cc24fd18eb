"""Settings only a gateway needs: detector, tracking, rules, evidence, plates, health, outbox.

Plain pydantic, no OpenCV: the server validates the whole config file without the edge's
heavy packages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.event_frame import EventEncoding
from contracts.rule_signing import public_key_from_text

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
    imgsz: int = Field(
        default=640,
        ge=32,
        description="detector input size; 320-416 on a CPU gateway with many cameras",
    )
    max_batch: int = Field(
        default=8, ge=1, le=64, description="frames of several cameras run together per batch"
    )
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
    min_same_look: float = Field(
        default=0.3,
        ge=-1,
        le=1,
        description=(
            "colour-histogram correlation between an object's first and crossing sightings "
            "below which it is another object, and the clock restarts"
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


class ForegroundSettings(_Settings):
    downscale: float = Field(
        default=0.25, gt=0, le=1, description="the zone's bounding box is analysed at this scale"
    )
    difference_threshold: float = Field(
        default=24.0, gt=0, lt=255, description="grey-level difference that counts as foreground"
    )
    warmup_seconds: float = Field(
        default=4.0,
        ge=0,
        description="the first long-term model is the median of the frames seen this long",
    )
    short_term_seconds: float = Field(
        default=1.5,
        gt=0,
        description="time constant of the short-term model: how fast a stopped object joins it",
    )
    long_term_seconds: float = Field(
        default=60.0,
        gt=0,
        description="time constant of the long-term model on pixels that match it",
    )
    confirm_seconds: float = Field(
        default=6.0, ge=0, description="a pixel new and still this long is stationary"
    )
    absorb_after_seconds: float = Field(
        default=3600.0,
        gt=0,
        description=(
            "a pixel stationary this long joins the long-term model; keep it above every "
            "fire-lane dwell plus the time a case needs"
        ),
    )
    min_object_pixels: float = Field(
        default=1500.0, ge=1, description="smallest stationary blob, in full-frame pixels"
    )
    match_iou: float = Field(
        default=0.3, gt=0, le=1, description="box overlap that keeps a blob's id across frames"
    )
    forget_seconds: float = Field(
        default=5.0, ge=0, description="a blob unseen this long loses its id"
    )
    ghost_edge_ratio: float = Field(
        default=1.3,
        gt=0,
        description=(
            "a new blob whose outline has this many times more edge in the long-term model "
            "than in the frame is a ghost (an object that left) and is learned at once"
        ),
    )
    max_light_gain: float = Field(
        default=4.0, ge=1, description="largest brightness correction applied to one frame"
    )


class HealthSettings(_Settings):
    check_interval_seconds: float = Field(
        default=1.0, ge=0, description="observe() analyses at most one frame this often"
    )
    analysis_width: int = Field(
        default=320, ge=64, description="frames are scaled to this width before any measure"
    )
    offline_seconds: float = Field(
        default=30.0, gt=0, description="no frame for this long means the camera is offline"
    )
    frozen_seconds: float = Field(
        default=20.0, gt=0, description="a picture that does not change this long is frozen"
    )
    frozen_max_change: float = Field(
        default=0.1,
        ge=0,
        description=(
            "mean grey change between two checks, on a 64-pixel-wide thumbnail, that still "
            "counts as the same picture; a live static scene changes more through noise"
        ),
    )
    covered_max_spread: float = Field(
        default=12.0,
        ge=0,
        description="grey range (10th to 90th percentile) below which the picture is uniform",
    )
    covered_max_edges: float = Field(
        default=0.02, ge=0, le=1, description="share of edge pixels below which it is featureless"
    )
    blurred_max_ratio: float = Field(
        default=0.3,
        gt=0,
        lt=1,
        description="sharpness below this share of the reference (baseline or running) is blurred",
    )
    reference_rate: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="how fast the running sharpness reference follows checks that are not blurred",
    )
    moved_max_shift: float = Field(
        default=0.05, gt=0, description="view shift, as a share of the frame width, that is a move"
    )
    moved_max_rotation_degrees: float = Field(default=3.0, gt=0)
    moved_max_scale_change: float = Field(
        default=0.08, gt=0, description="zoom change (1 = none) that is a move"
    )
    moved_min_matches: int = Field(
        default=15, ge=4, description="fewer feature matches with the baseline than this is a move"
    )
    phase_min_peak: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="phase-correlation peak below which a featureless view's position is unknown",
    )
    view_interval_seconds: float = Field(
        default=5.0,
        ge=0,
        description="the view is compared with the baseline at most this often: the costly part",
    )
    orb_features: int = Field(default=300, ge=50)
    raise_after_checks: int = Field(
        default=3, ge=1, description="a problem must be seen on this many checks in a row"
    )
    clear_after_checks: int = Field(
        default=3, ge=1, description="a problem clears after this many good checks in a row"
    )


class RedactionSettings(_Settings):
    blur_faces: bool = Field(default=True, description="send a face-blurred copy for the console")
    search_size: int = Field(
        default=128,
        ge=64,
        le=640,
        description="the face detector looks at each frame with its longer side scaled down to "
        "this many pixels (near faces); the detected people's heads are hidden whatever it is",
    )
    face_confidence: float = Field(
        default=0.3, gt=0, lt=1, description="the face detector's score that counts as a face"
    )
    jpeg_quality: int = Field(default=85, ge=30, le=100)


class StructureSettings(BaseModel):
    """How no-build zones are compared with their baseline and when a change becomes a case."""

    model_config = ConfigDict(extra="forbid")

    check_interval_seconds: float = Field(
        default=3600.0, gt=0, description="how often, by frame time, a zone is compared"
    )
    persist_checks: int = Field(
        default=3,
        ge=1,
        description="consecutive changed checks before a violation opens; as many unchanged "
        "checks clear it",
    )
    persist_span_seconds: float = Field(
        default=2 * 86400.0,
        ge=0,
        description="the changed checks must span at least this long (a scaffold or a parked "
        "lorry leaves within days, a shed does not)",
    )
    working_size: int = Field(
        default=256,
        ge=64,
        le=2048,
        description="the zone's box is scaled so its longer side has this many pixels; "
        "scales below are in these pixels",
    )
    scales: tuple[float, ...] = Field(
        default=(6.0, 12.0, 24.0),
        min_length=1,
        description="window sizes (Gaussian sigma, working pixels) the structure is measured at",
    )
    structure_floor: float = Field(
        default=0.3,
        gt=0,
        description="added to the denominator of the structure gain so flat areas stay quiet",
    )
    view_normalisation: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="1: each view's structure divided by its own median (fully light-proof); "
        "0: both by their joint median (keeps the gain of a scene that got much busier)",
    )
    seed_threshold: float = Field(
        default=0.1, gt=-1, lt=1, description="structure gain a changed region must reach"
    )
    grow_threshold: float = Field(
        default=0.025,
        gt=-1,
        lt=1,
        description="structure gain a changed region grows over; at 0 the faint gain of a "
        "slightly sharper view can join up across a plain lawn",
    )
    min_seed_pixels: int = Field(
        default=10, ge=1, description="working pixels above the seed threshold a region needs"
    )
    min_changed_share: float = Field(
        default=0.02, gt=0, le=1, description="changed share of the zone that counts as changed"
    )
    max_shift_fraction: float = Field(
        default=0.05,
        gt=0,
        le=0.5,
        description="a view shifted more than this share of the frame is not compared: the "
        "camera moved, which the health check reports",
    )
    min_alignment_peak: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="phase-correlation peak below which the views are taken as unshifted",
    )
    min_sharpness_ratio: float = Field(
        default=0.7,
        gt=0,
        le=1,
        description="a current view this much softer than the baseline (focus, fog, a wet or "
        "dirty lens) is not compared: blur shifts structure toward the strongest edges",
    )
    max_noise_increase: float = Field(
        default=5.0,
        gt=0,
        description="grey levels of sensor noise the current view may add over the baseline "
        "(night gain) before a check is inconclusive",
    )
    min_contrast: float = Field(
        default=2.0,
        ge=0,
        description="grey-level spread the zone needs in the current view (night, fog or a "
        "covered lens make a check inconclusive)",
    )


class ReadPass(_Settings):
    """One way of feeding a crop to the recogniser: its width there, and the padded input width."""

    text_width: int = Field(
        ge=32,
        le=1024,
        description=(
            "pixels across the crop is resized to at the recogniser's 48-pixel height; "
            "144-160 gives a plate its real shape (440x140 mm blue, 480x140 mm green)"
        ),
    )
    input_width: int = Field(
        ge=32,
        le=1024,
        description="the recogniser's input width; the rest is padding (reads better with some)",
    )

    @model_validator(mode="after")
    def _fits(self) -> ReadPass:
        if self.input_width < self.text_width:
            raise ValueError(
                f"input_width {self.input_width} must be at least text_width {self.text_width}"
            )
        return self


def _default_passes() -> list[ReadPass]:
    # Chosen on the lprnet crops: the first reads 98 %, the second fixes most of the rest.
    return [ReadPass(text_width=144, input_width=192), ReadPass(text_width=160, input_width=256)]


class PlateSettings(_Settings):
    """How plates are found on vehicles and read."""

    enabled: bool = Field(default=True, description="read the plates of vehicles in violation")
    passes: list[ReadPass] = Field(
        default_factory=_default_passes,
        min_length=1,
        description=(
            "read passes in order: the first always runs, each later one only while the "
            "weakest character of the best reading so far scores below 0.96 "
            "(edge.plates.PASS_SURE)"
        ),
    )
    retry_below: float = Field(
        default=0.9,
        ge=0.0,
        le=1.0,
        description=(
            "when no text line on the vehicle reads at this score or better, plate-coloured "
            "regions are read too"
        ),
    )
    min_confidence: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="readings whose mean character score is below this are dropped (not a plate)",
    )
    engine: Literal["openvino", "onnxruntime"] = Field(
        default="openvino",
        description=(
            "what runs RapidOCR's recogniser model: OpenVINO (about 1.3x faster on CPU in f32) "
            "or onnxruntime, as RapidOCR itself does"
        ),
    )
    precision: Literal["auto", "f32"] = Field(
        default="auto",
        description=(
            "openvino only: auto lets it compute in bf16 where the CPU supports it (faster, "
            "same lprnet accuracy); f32 forces full precision"
        ),
    )
    threads: int = Field(default=1, ge=1, le=64, description="inference threads per reader")
    search_lower_share: float = Field(
        default=0.7,
        gt=0.0,
        le=1.0,
        description="read_vehicle looks for the plate in this lower share of the vehicle box",
    )
    max_candidates: int = Field(
        default=3, ge=1, le=20, description="plate-like regions read per vehicle, best first"
    )
    min_plate_width: int = Field(
        default=24, ge=8, description="plate candidates narrower than this (pixels) are ignored"
    )
    second_opinion: Literal["off", "observe", "vote"] = Field(
        default="off",
        description=(
            "the plate-trained recogniser (models/plate_recogniser.onnx, trained on GENERATED "
            "plates by `python -m models.plate_recogniser`; weights are not in the repository): "
            "off; observe (it reads each vehicle's plate, nothing changes: for benchmarks); vote "
            "(where it reads PP-OCR's text and is sure, the reading's confidence rises; where it "
            "reads the same plate but a letter for a digit, the reading is not decided: "
            "edge.plates.PlateReader._opinion)"
        ),
    )
    second_opinion_weights: str | None = Field(
        default=None, description="the recogniser's ONNX file; none: the one in models/"
    )


class MotionSettings(_Settings):
    enabled: bool = Field(default=True, description="false: detect on every frame")
    width: int = Field(
        default=160, ge=16, le=1920, description="frames are compared at this width, in grey"
    )
    blur: int = Field(
        default=5, ge=1, le=31, description="Gaussian blur kernel (odd) against sensor noise"
    )
    pixel_threshold: int = Field(
        default=25, ge=1, le=255, description="grey-level change that marks a pixel as changed"
    )
    min_changed_fraction: float = Field(
        default=0.003,
        gt=0,
        le=1,
        description="share of the zones' pixels that must change to count as motion",
    )
    recheck_seconds: float = Field(
        default=5.0,
        gt=0,
        description="without motion, detect anyway this often so stationary objects stay seen",
    )


class PublishSettings(_Settings):
    event_encoding: EventEncoding = Field(
        default="json",
        description=(
            "json: images base64 inside JSON, which every server reads; frame: the binary event"
            " frame (docs/schema/event_frame.md), images as raw bytes: no base64 to encode,"
            " carry and decode. Only servers that read frames take them: upgrade ingest first,"
            " then switch gateways to frame"
        ),
    )


class EdgeSettings(_Settings):
    data_dir: Path = Field(default=Path("var/edge"), description="the outbox lives here")
    resend_after_seconds: float = Field(
        default=10.0, gt=0, description="an unconfirmed event is published again after this"
    )
    status_interval_seconds: float = Field(default=30.0, gt=0)
    max_unconfirmed: int = Field(
        default=1000,
        ge=1,
        description="events out and not yet confirmed; a backlog drains at ingest's pace",
    )
    publish: PublishSettings = Field(
        default_factory=PublishSettings, description="how events go on the wire"
    )
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    tracker: TrackerSettings = Field(default_factory=TrackerSettings)
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)
    redaction: RedactionSettings = Field(default_factory=RedactionSettings)
    motion: MotionSettings = Field(
        default_factory=MotionSettings,
        description="skip the detector on frames with no motion in any zone",
    )
    foreground: ForegroundSettings = Field(
        default_factory=ForegroundSettings,
        description="fire lanes' class-agnostic path: what stopped there, whatever it is",
    )
    health: HealthSettings = Field(
        default_factory=HealthSettings, description="checks on each camera's picture"
    )
    plates: PlateSettings = Field(
        default_factory=PlateSettings, description="reading the plates of parked vehicles"
    )
    structures: StructureSettings = Field(
        default_factory=StructureSettings,
        description="no-build zones: structure change against the registered baseline",
    )
    verification_frames: int = Field(
        default=5,
        ge=1,
        le=100,
        description="camera re-checks: processed frames a zone must be empty on to count as clear",
    )
    rules_public_key: str | None = Field(
        default=None,
        description=(
            "the server's Ed25519 public key for signed rule documents (base64 of the raw 32"
            " bytes, or PEM); None: rule documents are refused and nothing is exempt"
        ),
    )

    @field_validator("rules_public_key")
    @classmethod
    def _a_public_key(cls, value: str | None) -> str | None:
        if value is not None:
            public_key_from_text(value)  # ValueError names what is wrong
        return value

    @property
    def baselines_dir(self) -> Path:
        """Registered views per camera (and PTZ preset), beside the outbox."""
        return self.data_dir / "baselines"

    def rules_path(self, gateway_id: str) -> Path:
        """The signed rule document last taken, beside the outbox."""
        return self.data_dir / f"rules-{gateway_id}.json"
