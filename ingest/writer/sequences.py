"""Each camera's message sequence: absurd jumps refused, skipped numbers kept as gaps."""

from __future__ import annotations

from collections import defaultdict
from uuid import UUID

from sqlalchemy import case as sql_case
from sqlalchemy import func, inspect, select
from sqlalchemy.orm import Session

from ingest.validation import Refusal, RefusalReason
from ingest.writer.batch import Batch, Placed
from ingest.writer.sql import bulk_insert, bulk_update
from storage.tables import Base, CameraSequence, SequenceGap

MAX_SEQUENCE_JUMP = 1_000_000
"""Furthest a camera's sequence may run ahead of the highest stored: a bigger jump is refused
(sequence_jump), so a gap never spans more messages than this."""

_SEQUENCES = Base.metadata.tables[CameraSequence.__tablename__]


def refuse_jumps(batch: Batch, unique: list[Placed]) -> dict[UUID, Refusal]:
    """Events further than MAX_SEQUENCE_JUMP ahead of their camera's highest sequence.

    A camera's first message sets its start wherever it is. Read without a lock: a race
    with another worker only moves the bound by one batch.
    """
    by_camera: dict[str, list[Placed]] = defaultdict(list)
    for item in unique:
        by_camera[item.event.camera_id].append(item)
    highest: dict[str, int] = dict(
        batch.session.execute(
            select(_SEQUENCES.c.camera_id, _SEQUENCES.c.highest).where(
                _SEQUENCES.c.camera_id.in_(sorted(by_camera))
            )
        ).all()
    )
    refused: dict[UUID, Refusal] = {}
    for camera, items in by_camera.items():
        top = highest.get(camera)
        for item in sorted(items, key=lambda placed: placed.event.sequence):
            sequence = item.event.sequence
            if top is not None and sequence - top > MAX_SEQUENCE_JUMP:
                refused[item.event.message_id] = Refusal(
                    RefusalReason.SEQUENCE_JUMP,
                    f"sequence {sequence} is {sequence - top} ahead of camera {camera}'s "
                    f"highest {top}; at most {MAX_SEQUENCE_JUMP} is accepted",
                    item.event.message_id,
                )
                continue
            top = sequence if top is None else max(top, sequence)
    return refused


def track_sequences(batch: Batch, fresh: list[Placed]) -> None:
    """Open a gap for sequence numbers a camera skipped; close it as late ones arrive."""
    by_camera: dict[str, list[int]] = defaultdict(list)
    for item in fresh:
        by_camera[item.event.camera_id].append(item.event.sequence)
    cameras = sorted(by_camera)
    session = batch.session
    # A camera never seen starts just below its first message: that one is no gap.
    bulk_insert(
        session,
        CameraSequence,
        [{"camera_id": cam, "highest": min(by_camera[cam]) - 1} for cam in cameras],
        on_conflict=["camera_id"],
    )
    highest: dict[str, int] = dict(
        session.execute(
            select(_SEQUENCES.c.camera_id, _SEQUENCES.c.highest)
            .where(_SEQUENCES.c.camera_id.in_(cameras))
            .order_by(_SEQUENCES.c.camera_id)
            .with_for_update()
        ).all()
    )
    late = [cam for cam in cameras if min(by_camera[cam]) <= highest[cam]]
    open_gaps: dict[str, list[SequenceGap]] = defaultdict(list)
    if late:
        for gap in session.scalars(
            select(SequenceGap).where(SequenceGap.camera_id.in_(late)).order_by(SequenceGap.id)
        ):
            open_gaps[gap.camera_id].append(gap)
    raised: dict[str, int] = {}
    for cam in cameras:
        top = highest[cam]
        for sequence in sorted(by_camera[cam]):
            if sequence > top + 1:
                gap = SequenceGap(
                    camera_id=cam, first=top + 1, last=sequence - 1, opened_at=batch.now
                )
                session.add(gap)
                open_gaps[cam].append(gap)
                batch.report.gaps_opened.append((cam, gap.first, gap.last))
            if sequence > top:
                top = raised[cam] = sequence
            elif _fill_gap(session, open_gaps[cam], sequence):
                batch.report.gaps_filled += 1
    if raised:
        bulk_update(
            session,
            CameraSequence,
            key="camera_id",
            rows=[{"camera_id": cam, "highest": top} for cam, top in raised.items()],
        )


def missing_messages(session: Session) -> int:
    """Messages missing in all cameras' gaps; each gap counts at most MAX_SEQUENCE_JUMP, so
    older, huger gaps cannot overflow the sum."""
    span = SequenceGap.last - SequenceGap.first  # never overflows: 0 <= first <= last
    capped = sql_case((span < MAX_SEQUENCE_JUMP, span + 1), else_=MAX_SEQUENCE_JUMP)
    return int(session.scalar(select(func.coalesce(func.sum(capped), 0))) or 0)


def _fill_gap(session: Session, gaps: list[SequenceGap], sequence: int) -> bool:
    """Take ``sequence`` out of the gap holding it; False when it was never missing."""
    for gap in gaps:
        if not gap.first <= sequence <= gap.last:
            continue
        if gap.first == gap.last:
            gaps.remove(gap)
            if inspect(gap).pending:
                session.expunge(gap)
            else:
                session.delete(gap)
        elif sequence == gap.first:
            gap.first += 1
        elif sequence == gap.last:
            gap.last -= 1
        else:
            tail = SequenceGap(
                camera_id=gap.camera_id,
                first=sequence + 1,
                last=gap.last,
                opened_at=gap.opened_at,
            )
            gap.last = sequence - 1
            session.add(tail)
            gaps.append(tail)
        return True
    return False
