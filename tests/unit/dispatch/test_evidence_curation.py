"""The panel's curated evidence: what a case that ran an hour shows up front."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contracts.events import EvidenceLabel
from dispatch.web.evidence_view import CURATED_UPDATES, curated, thin_evenly
from storage.tables import CaseEvidence

T0 = datetime(2026, 12, 3, 11, 0, tzinfo=UTC)


def frame(n: int, label: str, minute: float) -> CaseEvidence:
    return CaseEvidence(
        id=n,
        label=label,
        sha256=f"{n:064x}",
        captured_at=T0 + timedelta(minutes=minute),
        width=640,
        height=382,
    )


def test_thinning_keeps_the_first_and_the_last_evenly_spread() -> None:
    assert thin_evenly(list(range(60)), 3) == [0, 30, 59]
    assert thin_evenly(list(range(10)), 4) == [0, 3, 6, 9]
    assert thin_evenly([1, 2], 3) == [1, 2]
    assert thin_evenly(list(range(9)), 1) == [4]
    assert thin_evenly([1, 2, 3], 0) == []


def test_an_hour_of_updates_shows_the_story_not_every_frame() -> None:
    opening = [
        frame(1, EvidenceLabel.ENTRY, -6),
        frame(2, EvidenceLabel.MIDWAY, -5),
        frame(3, EvidenceLabel.MIDWAY, -3),
        frame(4, EvidenceLabel.MIDWAY, -1),
        frame(5, EvidenceLabel.DWELL_CROSSED, 0),
        frame(6, EvidenceLabel.CLOSEUP, 0),
    ]
    updates = []
    for minute in range(1, 61):
        updates.append(frame(100 + 2 * minute, EvidenceLabel.LATEST, minute))
        updates.append(frame(101 + 2 * minute, EvidenceLabel.CLOSEUP, minute))
    later = [frame(500, "verification", 61), frame(501, "after_photo", 70)]
    everything = [*updates, *later, *opening]  # any order: the set comes out in time order

    shown = curated(everything)

    labels = [item.label for item in shown]
    assert labels == [
        "entry",
        "midway",
        "dwell_crossed",
        "closeup",
        "latest",
        "latest",
        "latest",
        "verification",
        "after_photo",
    ]
    assert shown[1].id == 3, "the middle of the midway frames"
    assert shown[3].id == 6, "the opening's plate close-up, not an update's"
    latest = [item for item in shown if item.label == "latest"]
    assert len(latest) == CURATED_UPDATES
    assert [round((i.captured_at - T0).total_seconds() / 60) for i in latest] == [1, 31, 60]


@pytest.mark.parametrize("count", [0, 1, 2])
def test_a_short_case_shows_all_it_has(count: int) -> None:
    items = [frame(i, EvidenceLabel.LATEST, i) for i in range(count)]
    assert curated(items) == items
