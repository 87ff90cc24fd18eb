"""Settings for the MQTT consumer, its writer and the evidence store."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.exemptions import DEFAULT_PLATE_CONFIDENCE_FLOOR
from storage.evidence_packs import DEFAULT_PACK_MAX_BYTES
from storage.evidence_store import DEFAULT_WRITER_THREADS, EvidenceStore


class IngestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deployment: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,32}$",
        description=(
            "this installation's name, e.g. production or staging: servers of one deployment "
            "share the violation stream (group civicwatch-{deployment}); two deployments on one "
            "broker never share a group or a session. Default: derived from the database URL "
            "(servers writing to one database are one deployment)"
        ),
    )
    client_id: str | None = Field(
        default=None,
        max_length=128,
        description=(
            "stable, for the broker keeps its session: default civicwatch-ingest-{deployment}-"
            "{host}; worker N of several adds '-N'"
        ),
    )
    session_expiry_seconds: int = Field(
        default=7 * 24 * 3600,
        ge=0,
        description="how long the broker queues for ingest while it is down",
    )
    max_payload_bytes: int = Field(
        default=8 * 1024 * 1024, gt=0, description="larger violation messages are refused"
    )
    evidence_dir: Path = Field(
        default=Path("var/evidence"),
        description=(
            "where evidence images are filed by SHA-256 (with the postgresql backend: where "
            "copies are cached for code that needs a file)"
        ),
    )
    evidence_backend: Literal["local", "postgresql"] = Field(
        default="local",
        description=(
            "local: files under evidence_dir; postgresql: a table every server host reads "
            "(servers on several hosts)"
        ),
    )
    evidence_database_url: str | None = Field(
        default=None,
        description=(
            "the PostgreSQL database of the postgresql evidence backend; default: the "
            "server's own database"
        ),
    )
    evidence_writer_threads: int = Field(
        default=DEFAULT_WRITER_THREADS,
        ge=0,
        le=64,
        description=(
            "local backend: threads writing and fsyncing a batch's images while its database "
            "transaction proceeds; 0 writes them in the writer thread and syncs the filesystem"
        ),
    )
    evidence_sync: Literal["files", "filesystem"] = Field(
        default="files",
        description=(
            "local backend with writer threads: how a batch's images are made durable before "
            "its commit: an fsync of each file and new folder entry (flushes only our files), "
            "or one syncfs of the evidence filesystem (also flushes the neighbours' writes)"
        ),
    )
    evidence_pack_max_bytes: int = Field(
        default=DEFAULT_PACK_MAX_BYTES,
        ge=0,
        le=16 * 1024 * 1024,
        description=(
            "local backend: a batch's images up to this many bytes go into one pack file per "
            "writer (one append and one fsync a batch, the place kept in the evidence row) "
            "instead of a file each; 0 files every image. Raising it above the ~150 KB "
            "real-size images was measured no faster (the fsyncs are a small part of a batch) "
            "and keeps their bytes until a pack is compacted (docs/benchmarks.md, issue 15 "
            "round 8)"
        ),
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="ingest consumers in this process, each with its own client id and session",
    )
    shared_group: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description=(
            "MQTT v5 shared-subscription group: workers (in any process) in one group split "
            "the violation stream. The server sets civicwatch-{deployment}; leave it unset"
        ),
    )
    batch_max_messages: int = Field(
        default=1_000,
        ge=1,
        le=10_000,
        description="most messages stored per database transaction (fewer when fewer wait)",
    )
    # 50, not 20: each batch costs about ten statements whatever its size, so at a steady
    # 100 events/s the longer wait saves about a fifth of the server's CPU and half of
    # PostgreSQL's for about 20 ms more publish -> ack (docs/benchmarks.md, issue 12 round 6).
    batch_max_wait_ms: int = Field(
        default=50,
        ge=0,
        le=5_000,
        description="how long the writer waits to fill a batch once its first message is in",
    )
    receive_maximum: int = Field(
        default=4_000,
        ge=1,
        le=65_535,
        description="unacknowledged messages the broker may have in flight to one worker",
    )
    merge_window_seconds: float = Field(
        default=600.0,
        ge=0.0,
        description=(
            "a new violation joins an open case of the same plate, of a zone with the same "
            "location, or of the same camera's spot (a gateway restart), last seen at most this "
            "long before the new one started"
        ),
    )
    related_cases_limit: int = Field(
        default=20, ge=0, description="earlier cases of the same plate linked to a new case"
    )
    plate_confidence_floor: float = Field(
        default=DEFAULT_PLATE_CONFIDENCE_FLOOR,
        ge=0.0,
        le=1.0,
        description=(
            "no merge by plate and no repeat-offender link rests on a reading below this; the "
            "server sets it from server.exemptions.plate_confidence_floor (one floor for all)"
        ),
    )

    def open_evidence_store(self, database_url: str) -> EvidenceStore:
        """The configured evidence store (``database_url``: the server's own database)."""
        # Imported here: a gateway reads this config too, and its install has no SQLAlchemy.
        from storage.evidence_pg import open_evidence_store

        return open_evidence_store(
            self.evidence_backend,
            self.evidence_dir,
            # The local store finds packed images in the server's own database.
            database_url
            if self.evidence_backend == "local"
            else self.evidence_database_url or database_url,
            self.evidence_writer_threads,
            self.evidence_sync,
            self.evidence_pack_max_bytes,
        )
