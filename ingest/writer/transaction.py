"""One batch's steps in order, inside its transaction."""

from __future__ import annotations

from uuid import UUID

from contracts.acks import AckOutcome
from ingest.validation import Refusal
from ingest.writer.batch import Batch, Placed, StoreResult
from ingest.writer.chains import verify_chains
from ingest.writer.events import find_conflicts, insert_events
from ingest.writer.evidence import link_evidence, store_evidence
from ingest.writer.incidents import attach_to_cases
from ingest.writer.sequences import refuse_jumps, track_sequences
from ingest.writer.warnings import refuse_out_of_order
from storage.evidence_store import EvidenceStore
from storage.routing import CaseRouter


def write_batch(
    batch: Batch, placed: list[Placed], evidence: EvidenceStore, route_cases: CaseRouter
) -> list[StoreResult]:
    """Store ``placed`` in ``batch``'s transaction; each event's outcome, in order.

    A message id sent twice in the batch is stored once (the later copies are duplicates);
    evidence files are synced before the commit, so committed rows always have their files.
    """
    first_of: dict[UUID, int] = {}
    for index, item in enumerate(placed):
        first_of.setdefault(item.event.message_id, index)
    unique = [placed[index] for index in first_of.values()]
    refused = refuse_jumps(batch, unique)
    refused |= refuse_out_of_order(batch, _not_refused(unique, refused))
    inserted = insert_events(batch, _not_refused(unique, refused))
    outcomes: list[StoreResult] = [AckOutcome.DUPLICATE] * len(placed)
    for message_id, index in first_of.items():
        if message_id in inserted:
            outcomes[index] = AckOutcome.STORED
    if refused:  # almost never: skip hashing every message id again
        for index, item in enumerate(placed):
            if item.event.message_id in refused:
                outcomes[index] = refused[item.event.message_id]
    fresh = [item for item in unique if item.event.message_id in inserted]
    batch.report.stored = len(fresh)
    batch.report.duplicates = outcomes.count(AckOutcome.DUPLICATE)
    find_conflicts(batch, placed, first_of, inserted | set(refused))
    if fresh:
        files_written = store_evidence(batch, fresh, evidence)
        cases = attach_to_cases(batch, fresh, route_cases)
        link_evidence(batch, fresh, cases)
        verify_chains(batch, fresh, cases)
        track_sequences(batch, fresh)  # last: its row locks are held only until commit
        if files_written:  # the rows commit only after their files are durable
            evidence.sync()
    return outcomes


def _not_refused(items: list[Placed], refused: dict[UUID, Refusal]) -> list[Placed]:
    """``items`` less the refused ones (the list itself when none is: the usual batch)."""
    if not refused:
        return items
    return [item for item in items if item.event.message_id not in refused]
