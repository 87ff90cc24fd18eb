"""The evidence hash chain of each violation: rechecked whenever it gets chained frames."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select, update

from contracts.events import GENESIS_CHAIN, chain_link
from ingest.writer.batch import Batch, Placed
from ingest.writer.case_rows import CASES, VIOLATION_LINKS, CaseRow
from ingest.writer.sql import uuid_in
from storage.tables import CaseEvidence


def verify_chains(batch: Batch, fresh: list[Placed], cases: dict[UUID, CaseRow]) -> None:
    """Recheck the hash chain of every violation that got chained frames in this batch.

    The whole stored chain is walked in capture order (message sequence, then place in the
    message). A frame that does not link to the one before it marks the violation broken;
    a late message that fills the hole makes it whole again.
    """
    chained = {
        item.event.violation_id
        for item in fresh
        if any(frame.chain_sha256 is not None for frame in item.event.evidence)
    }
    if not chained:
        return
    session = batch.session
    frames = session.execute(
        select(CaseEvidence.violation_id, CaseEvidence.sha256, CaseEvidence.chain_sha256)
        .where(
            uuid_in(CaseEvidence.violation_id, chained, batch.postgres),
            CaseEvidence.chain_sha256.is_not(None),
        )
        .order_by(CaseEvidence.violation_id, CaseEvidence.sequence, CaseEvidence.position)
    )
    broken_now: dict[UUID, bool] = dict.fromkeys(chained, False)
    previous: dict[UUID, str] = {}
    for violation_id, sha256, chain in frames:
        if violation_id is None or chain is None:
            continue
        expected = chain_link(previous.get(violation_id, GENESIS_CHAIN), sha256)
        if expected != chain:
            broken_now[violation_id] = True
        previous[violation_id] = chain
    stored: dict[UUID, bool] = {
        violation_id: broken
        for violation_id, broken in session.execute(
            select(VIOLATION_LINKS.c.violation_id, VIOLATION_LINKS.c.chain_broken).where(
                uuid_in(VIOLATION_LINKS.c.violation_id, chained, batch.postgres)
            )
        )
    }
    changed_cases: set[int] = set()
    for violation_id, broken in broken_now.items():
        if stored.get(violation_id) == broken:
            continue
        session.execute(
            update(VIOLATION_LINKS)
            .where(VIOLATION_LINKS.c.violation_id == violation_id)
            .values(chain_broken=broken)
        )
        if broken:
            batch.report.chains_broken.append(violation_id)
        changed_cases.add(cases[violation_id].require_id())
    for case_id in sorted(changed_cases):
        any_broken = (
            select(VIOLATION_LINKS.c.violation_id)
            .where(VIOLATION_LINKS.c.case_id == case_id, VIOLATION_LINKS.c.chain_broken)
            .exists()
        )
        session.execute(update(CASES).where(CASES.c.id == case_id).values(chain_broken=any_broken))
