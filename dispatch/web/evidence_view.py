"""A case's evidence as the pages show it: a curated few up front, every frame on request.

The edge burns the zone outline, the object's box and a caption into every camera frame, above a
caption band of ``contracts.events.CAPTION_HEIGHT`` rows. The pages draw nothing over the
pictures: an overlay in the camera's coordinates sat a band's height off the burnt-in lines, and
the case's last box is not where the object stood in an earlier frame anyway.

A case that runs long gathers update frames; the panel shows the ones that tell the story (the
entry, a midway frame, the dwell crossing, the plate close-up, a few updates thinned evenly, the
verification and cleared frames, the after-photos) and offers the rest behind "show all".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from contracts.events import EvidenceLabel
from dispatch.config import Role
from dispatch.http.deps import API_PREFIX, Principal
from storage.evidence_retention import evidence_removed_at
from storage.tables import Case, CaseEvidence

T = TypeVar("T")

AFTER_PHOTO = "after_photo"
# How many of a case's update frames ("latest") the curated set keeps, thinned evenly.
CURATED_UPDATES = 3
# Labels with many frames of which the curated set keeps only a few (or one).
_THINNED = {EvidenceLabel.LATEST.value: CURATED_UPDATES, EvidenceLabel.MIDWAY.value: 1}
_FIRST_ONLY = frozenset({EvidenceLabel.CLOSEUP.value})  # the opening's plate close-up


@dataclass(frozen=True)
class EvidenceView:
    """One evidence image as a page shows it."""

    url: str
    original_url: str | None
    label: str
    width: int
    height: int
    captured_at: datetime


@dataclass(frozen=True)
class EvidenceSet:
    """The frames a page shows up front, and how many the case holds in all."""

    shown: list[EvidenceView]
    total: int
    # When the retention job removed the case's evidence (it holds none since): the page says
    # so instead of showing nothing.
    removed_at: datetime | None = None

    @property
    def hidden(self) -> int:
        return self.total - len(self.shown)


def thin_evenly(items: Sequence[T], keep: int) -> list[T]:
    """At most ``keep`` of ``items``, evenly spread, the first and the last among them."""
    if keep <= 0:
        return []
    if len(items) <= keep:
        return list(items)
    if keep == 1:
        return [items[len(items) // 2]]
    step = (len(items) - 1) / (keep - 1)
    return [items[round(i * step)] for i in range(keep)]


def curated(items: Sequence[CaseEvidence]) -> list[CaseEvidence]:
    """The frames that tell a case's story, in time order (see the module's docstring)."""
    ordered = sorted(items, key=lambda item: (item.captured_at, item.id))
    by_label: dict[str, list[CaseEvidence]] = {}
    for item in ordered:
        by_label.setdefault(item.label, []).append(item)
    kept: set[int] = set()
    for label, group in by_label.items():
        if label in _FIRST_ONLY:
            chosen = group[:1]
        elif label in _THINNED:
            chosen = thin_evenly(group, _THINNED[label])
        else:
            chosen = group
        kept.update(id(item) for item in chosen)
    return [item for item in ordered if id(item) in kept]


def _view(item: CaseEvidence, principal: Principal) -> EvidenceView:
    url = f"{API_PREFIX}/evidence/{item.sha256}"  # the API serves the blurred copy by default
    original = principal.role is Role.DISPATCHER and item.redacted_sha256
    return EvidenceView(
        url=url,
        original_url=f"{url}?original=true" if original else None,
        label=item.label,
        width=item.width,
        height=item.height,
        captured_at=item.captured_at,
    )


def evidence_views(case: Case, principal: Principal) -> list[EvidenceView]:
    """Every frame of ``case``, in time order."""
    ordered = sorted(case.evidence, key=lambda item: (item.captured_at, item.id))
    return [_view(item, principal) for item in ordered]


def evidence_set(case: Case, principal: Principal) -> EvidenceSet:
    """The curated frames of ``case`` and the count of all of them."""
    shown = [_view(item, principal) for item in curated(case.evidence)]
    return EvidenceSet(shown=shown, total=len(case.evidence), removed_at=evidence_removed_at(case))
