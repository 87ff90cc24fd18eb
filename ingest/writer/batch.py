"""What every step of a batch shares: the placed events, the transaction and the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from sqlalchemy.orm import Session

from contracts.acks import AckOutcome
from contracts.events import ViolationEvent
from contracts.sites import ZoneConfig
from ingest.config import IngestSettings
from ingest.validation import Refusal
from storage.tables import utcnow

StoreResult = AckOutcome | Refusal
"""A stored message's outcome, or why it was refused (nothing of it is stored then)."""


@dataclass(frozen=True, slots=True)
class Placed:
    """An event and the zone the site registry places it in."""

    event: ViolationEvent
    zone: ZoneConfig


@dataclass
class BatchReport:
    """What a committed batch changed, for metrics and logs after the commit."""

    stored: int = 0
    duplicates: int = 0
    cases_opened: int = 0
    merged: list[tuple[UUID, int, str]] = field(default_factory=list)
    gaps_opened: list[tuple[str, int, int]] = field(default_factory=list)
    gaps_filled: int = 0
    chains_broken: list[UUID] = field(default_factory=list)
    conflicts: list[tuple[UUID, list[str]]] = field(default_factory=list)  # and differing fields
    warnings_issued: int = 0  # warned items opened (the warning stage)
    warnings_complied: int = 0  # warned items closed: the car left within the grace
    warnings_enforced: int = 0  # warned items routed: still there after the grace


@dataclass
class Batch:
    """One batch's transaction: its session, settings, report and the time it is written at."""

    session: Session
    settings: IngestSettings
    report: BatchReport
    now: datetime = field(default_factory=utcnow)
    postgres: bool = field(init=False)

    def __post_init__(self) -> None:
        self.postgres = self.session.get_bind().dialect.name == "postgresql"
