"""The evidence retention period: a closed case's images are removed once it has been closed
for ``server.retention.evidence_days`` (the sweep leader's ``evidence-retention`` job).

Personal data (cars, plates, residents' photos) is kept for the case's purpose and then for
the retention period, not for good. Only cases in the ``closed`` state whose ``closed_at`` is
older than the period lose their evidence, and with them the cases merged into them (a merged
case stays merged for good, so it follows the case it lives on in); a case in any other state
(open, parked, reopened, or merged into one of those) keeps all of it. A resident's report
photos go with their case.

Each run, in bounded steps:

1. Rows, one transaction per batch of cases: the cases' evidence links and report photos are
   deleted; each image no remaining row names (another case's link or redacted copy, a report
   photo, a site plan) loses its ``evidence`` row and is named in ``evidence_deletions``
   (migration 0012); each case gets one audit entry (action ``evidence_removed``), chained like
   every other, so the audit chain still verifies.
2. Bytes: each name in ``evidence_deletions`` is deleted from the store (file, PostgreSQL blob,
   readable copy), then the name. A crash between 1 and 2 (or in 2) leaves names, which the
   next run deletes: a row never names bytes that are gone. A name whose image was stored again
   meanwhile (an ``evidence`` row exists again) is dropped without touching the bytes.
   The same image may be stored again at the very moment its bytes go (an identical frame, a
   re-sent photo, a plan: content-addressed, one file or blob per hash). The re-check and the
   removal run under storage.evidence_guard's lock held exclusively (PostgreSQL: an advisory
   transaction lock, per batch of names, to the batch's commit; SQLite: an in-process lock
   around the re-check and removal), and every writer of evidence rows holds it shared from
   before it writes (or finds) the bytes until its rows commit: ingest's batch (one statement,
   only when it inserts new evidence rows), after-photos, residents' photos, site plans and
   the camera verifier's frames. So a writer's row either committed before the re-check (the
   bytes stay) or its bytes are written after the removal. ``on_remove`` (tests) is called
   with each hash under the lock just before its bytes go.
3. Packs: a packed image's record is dead once its row is gone; packs whose live records are at
   most half their bytes are compacted (``compact_packs``), and the ``evidence-packs`` job
   removes the old packs after their hour's grace.
4. Readable copies of packed images (ROOT/unpacked, made for reports and the training export)
   and the PostgreSQL backend's cached files older than a day are removed (made again on use).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import CTE, Engine, delete, exists, insert, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from storage.audit import chain_entries
from storage.evidence_guard import hold_for_removal
from storage.evidence_pack_rows import compact_packs
from storage.evidence_store import EvidenceStore
from storage.tables import (
    Case,
    CaseEvidence,
    CaseState,
    CaseTransition,
    Evidence,
    EvidenceDeletion,
    ReportPhoto,
    ResidentReport,
    SitePlanImage,
    utcnow,
)

log = logging.getLogger(__name__)

ACTION = "evidence_removed"  # the audit entry's action
ACTOR = "retention"  # the audit entry's actor (dispatch/web/timeline.py names it)
WHY = "retention_period"
REASON = "evidence removed after the retention period"
DEFAULT_CASE_BATCH = 100  # cases per transaction
DEFAULT_MAX_BATCHES = 50  # per run: a backlog is worked off over several runs
# Names of deleted images handled per transaction, under the evidence lock held exclusively:
# writers of new evidence (ingest) wait while it is held. 500 names held it ~0.9-1.2 s (files)
# and ~1.8-3.0 s (PostgreSQL table store) on the loaded 2-core bench machine; 50 a tenth of it.
DELETION_BATCH = 50
COPY_MAX_AGE_S = 24 * 3600.0
MAX_LIVE_SHARE = 0.5  # compact a pack whose live records are at most this share of it
IN_CHUNK = 2000  # values per IN list
T = TypeVar("T")


@dataclass
class RetentionRun:
    """What one run did."""

    cases: int = 0  # cases whose evidence was removed
    links: int = 0  # their evidence links and report photos
    images: int = 0  # evidence rows removed (no other row named the image)
    row_bytes: int = 0  # the removed rows' image sizes
    bytes_deleted: int = 0  # bytes deleted from the store (files, blobs, copies)
    packs_compacted: int = 0
    copies_removed: int = 0


class RetentionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.cases = Counter(
            "civicwatch_evidence_retention_cases",
            "Closed cases whose evidence was removed after the retention period",
            registry=registry,
        )
        self.images = Counter(
            "civicwatch_evidence_retention_images",
            "Evidence images removed after the retention period (their rows)",
            registry=registry,
        )
        self.bytes = Counter(
            "civicwatch_evidence_retention_bytes",
            "Bytes of evidence images removed after the retention period (their rows' sizes)",
            registry=registry,
        )
        self.deleted_bytes = Counter(
            "civicwatch_evidence_retention_deleted_bytes",
            "Bytes deleted from the evidence store by the retention job (files, blobs, copies)",
            registry=registry,
        )


class EvidenceRetention:
    """The retention job's steps; ``evidence_days`` None keeps evidence for good (the bytes
    of rows removed earlier are still deleted, and old copies pruned)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        engine: Engine,
        store: EvidenceStore,
        evidence_days: int | None,
        *,
        metrics: RetentionMetrics | None = None,
        case_batch: int = DEFAULT_CASE_BATCH,
        max_batches: int = DEFAULT_MAX_BATCHES,
        copy_max_age_s: float = COPY_MAX_AGE_S,
        packs: bool = True,
        clock: Callable[[], datetime] = utcnow,
        on_remove: Callable[[str], None] | None = None,
    ) -> None:
        if evidence_days is not None and evidence_days < 1:
            raise ValueError(f"evidence_days must be at least 1, not {evidence_days}")
        self._sessions = sessions
        self._engine = engine
        self._store = store
        self._days = evidence_days
        self._metrics = metrics
        self._case_batch = case_batch
        self._max_batches = max_batches
        self._copy_max_age_s = copy_max_age_s
        self._packs = packs
        self._clock = clock
        # Called with each hash just before its bytes are removed, under the lock (a seam for
        # tests: one pauses the job there while it stores the same image again).
        self._on_remove = on_remove

    def run(self) -> RetentionRun:
        """One run: rows, bytes, packs, copies (module docstring)."""
        done = RetentionRun()
        if self._days is not None:
            cutoff = self._clock() - timedelta(days=self._days)
            for _ in range(self._max_batches):
                removed = self.remove_rows(cutoff, done)
                if removed < self._case_batch:
                    break
        done.bytes_deleted += self.delete_bytes()
        if self._packs and done.images:
            moved = compact_packs(
                self._engine, self._store.root, self._store.packs_in_use(), MAX_LIVE_SHARE
            )
            done.packs_compacted = len(moved)
        done.copies_removed = self._store.prune_copies(self._copy_max_age_s)
        if self._metrics is not None:
            self._metrics.cases.inc(done.cases)
            self._metrics.images.inc(done.images)
            self._metrics.bytes.inc(done.row_bytes)
            self._metrics.deleted_bytes.inc(done.bytes_deleted)
        if done.cases or done.bytes_deleted or done.copies_removed:
            log.info(
                "evidence retention: %d cases, %d images (%d bytes), %d bytes deleted, "
                "%d packs compacted, %d copies removed",
                done.cases,
                done.images,
                done.row_bytes,
                done.bytes_deleted,
                done.packs_compacted,
                done.copies_removed,
            )
        return done

    def remove_rows(self, cutoff: datetime, done: RetentionRun) -> int:
        """One transaction: the evidence rows of up to a batch of cases closed before
        ``cutoff``; returns how many cases."""
        now = self._clock()
        with self._sessions.begin() as session:
            has_links = exists().where(CaseEvidence.case_id == Case.id)
            has_photos = (
                exists()
                .where(ReportPhoto.report_id == ResidentReport.id)
                .where(ResidentReport.case_id == Case.id)
            )
            expired = _expired_with_merged(cutoff)
            due = (
                select(Case.id, Case.state, expired.c.closed_at)
                .join(expired, expired.c.id == Case.id)
                .where(or_(has_links, has_photos))
                .order_by(expired.c.closed_at, Case.id)
                .limit(self._case_batch)
                .with_for_update(of=Case, skip_locked=True)  # PostgreSQL; SQLite: one writer
            )
            found = session.execute(due).all()
            if not found:
                return 0
            cases = {row.id: row.closed_at for row in found}
            states = {row.id: row.state for row in found}
            ids = sorted(cases)
            links = session.execute(
                select(
                    CaseEvidence.case_id, CaseEvidence.sha256, CaseEvidence.redacted_sha256
                ).where(CaseEvidence.case_id.in_(ids))
            ).all()
            photos = session.execute(
                select(ReportPhoto.id, ReportPhoto.sha256, ResidentReport.case_id)
                .join(ResidentReport, ResidentReport.id == ReportPhoto.report_id)
                .where(ResidentReport.case_id.in_(ids))
            ).all()
            named: set[str] = {row.sha256 for row in links}
            named |= {row.redacted_sha256 for row in links if row.redacted_sha256}
            named |= {row.sha256 for row in photos}
            session.execute(delete(CaseEvidence).where(CaseEvidence.case_id.in_(ids)))
            if photos:
                photo_ids = [row.id for row in photos]
                for chunk in _chunks(photo_ids):
                    session.execute(delete(ReportPhoto).where(ReportPhoto.id.in_(chunk)))
            gone = sorted(named - _still_named(session, named))
            sizes = {
                row.sha256: int(row.size)
                for part in _chunks(gone)
                for row in session.execute(
                    select(Evidence.sha256, Evidence.size).where(Evidence.sha256.in_(part))
                )
            }
            if sizes:
                for part in _chunks(sorted(sizes)):
                    session.execute(delete(Evidence).where(Evidence.sha256.in_(part)))
            queued = {
                sha
                for part in _chunks(gone)
                for sha in session.scalars(
                    select(EvidenceDeletion.sha256).where(EvidenceDeletion.sha256.in_(part))
                )
            }
            fresh = [{"sha256": sha, "queued_at": now} for sha in gone if sha not in queued]
            if fresh:
                session.execute(insert(EvidenceDeletion), fresh)
            per_case: dict[int, list[int]] = {case_id: [0, 0] for case_id in ids}
            for row in links:
                per_case[row.case_id][0] += 1
            for photo in photos:
                per_case[photo.case_id][1] += 1
            entries = [
                {
                    "case_id": case_id,
                    "action": ACTION,
                    "from_state": states[case_id],
                    "to_state": states[case_id],
                    "actor": ACTOR,
                    "reason": REASON,
                    "at": now,
                    "detail": {
                        "why": WHY,
                        "images": per_case[case_id][0],
                        "photos": per_case[case_id][1],
                        "retention_days": self._days,
                        "closed_at": cases[case_id].isoformat() if cases[case_id] else None,
                    },
                }
                for case_id in ids
            ]
            session.execute(insert(CaseTransition), chain_entries(session, entries))
            session.execute(update(Case).where(Case.id.in_(ids)).values(updated_at=now))
        done.cases += len(ids)
        done.links += len(links) + len(photos)
        done.images += len(sizes)
        done.row_bytes += sum(sizes.values())
        return len(ids)

    def delete_bytes(self) -> int:
        """Delete the bytes of every image named in ``evidence_deletions``, then the names;
        returns the bytes freed."""
        freed = 0
        while True:
            with self._sessions.begin() as session:
                # Writers of new rows hold it shared until they commit (storage.evidence_guard):
                # a row committed later wrote its bytes after these are gone.
                with hold_for_removal(session):
                    names = list(
                        session.scalars(
                            select(EvidenceDeletion.sha256)
                            .order_by(EvidenceDeletion.sha256)
                            .limit(DELETION_BATCH)
                        )
                    )
                    if not names:
                        return freed
                    # Stored again since (the same bytes came in anew): the new row's bytes stay.
                    again = set(
                        session.scalars(select(Evidence.sha256).where(Evidence.sha256.in_(names)))
                    )
                    again |= _still_named(session, set(names))
                    for sha256 in names:
                        if sha256 not in again:
                            if self._on_remove is not None:
                                self._on_remove(sha256)
                            freed += self._store.remove(sha256)
                session.execute(delete(EvidenceDeletion).where(EvidenceDeletion.sha256.in_(names)))
            if len(names) < DELETION_BATCH:
                return freed


def _expired_with_merged(cutoff: datetime) -> CTE:
    """(id, closed_at) of each case closed before ``cutoff`` and of every case merged into one
    (through any merges after), with the closed case's ``closed_at``: a merged case stays
    merged for good, so its evidence goes with the case it lives on in."""
    closed = (
        select(Case.id, Case.closed_at)
        .where(Case.state == CaseState.CLOSED.value, Case.closed_at <= cutoff)
        .cte("expired", recursive=True)
    )
    merged = aliased(Case)
    return closed.union_all(
        select(merged.id, closed.c.closed_at)
        .join(closed, merged.duplicate_of == closed.c.id)
        .where(merged.state == CaseState.MERGED.value)
    )


def evidence_removed_at(case: Case) -> datetime | None:
    """When this job removed ``case``'s evidence; None while it holds any (or never lost it).
    Reads the case's transitions (load them) only when it holds no evidence."""
    if case.evidence:
        return None
    removed = [entry.at for entry in case.transitions if entry.action == ACTION]
    return removed[-1] if removed else None


def _still_named(session: Session, hashes: set[str]) -> set[str]:
    """Those of ``hashes`` a row still names: an evidence link (either copy), a report photo,
    a site plan."""
    if not hashes:
        return set()
    found: set[str] = set()
    for part in _chunks(sorted(hashes)):
        for column in (
            CaseEvidence.sha256,
            CaseEvidence.redacted_sha256,
            ReportPhoto.sha256,
            SitePlanImage.sha256,
        ):
            found.update(session.scalars(select(column).where(column.in_(part)).distinct()))
    return found


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """``items`` in slices of IN_CHUNK: an IN list stays well below SQLite's bound-parameter
    limit however many frames a batch of cases holds."""
    size = IN_CHUNK
    for start in range(0, len(items), size):
        yield items[start : start + size]
