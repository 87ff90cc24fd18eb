"""Exact case-list totals without counting every time: a list's count, kept per process with
the count version it was read at, answers again until the version moves.

``X-Total-Count`` (and the console's "N cases") is an exact count. At 100,000 cases a count of
every visible case reads the whole of an index, 16-21 ms of PostgreSQL's CPU, on each default
page and each refresh of the console's list, while the answer changes only when a case does.

Why a version and not a counter table: the lists filter on any mix of nine columns (and who
sees a case), so a table of counters would have to keep a row per combination or answer a few
of them only; a version costs one tiny row and keeps any such count exact. Its triggers (migration
0011) are the one place every case change passes, whoever writes it (ingest, the workflow, the
SLA sweep, residents' reports, a bulk update): ``case_list_version.version`` moves in the very
transaction that inserts or deletes a case or changes a counted column. A count read in one
statement with the version is exact for any later snapshot that sees the same version, so a
process serves it while the version it reads before each list is unchanged, and counts again
(one statement, with the version) when it is not. Processes keep their own entries; nothing
needs to be told of a change.

Only lists whose filters all lie in COUNTED_COLUMNS are kept: a search (``q``, which reads the
audit trail's notes too) and the time ranges (``updated_at`` moves on every note) are counted
each time, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from dispatch.config import SCOPED_ROLES, Role
from dispatch.workflow import Actor
from storage.tables import Case, CaseListVersion

# The cases' columns a kept count may depend on: migration 0011's triggers move the version
# when any of them changes (and on every insert and delete). The list filters below read
# only these, and so does who sees a case (dispatch.http.deps.visible_cases).
COUNTED_COLUMNS = (
    "state",
    "kind",
    "department",
    "site_id",
    "camera_id",
    "tier",
    "priority",
    "assignee",
    "overdue",
)
# CaseQuery's fields that only place a page (not what matches), and the filters a kept count
# may have, each with the column it reads. Any other field asked (q, the time ranges, and any
# filter added later) makes a list counted every time.
PAGE_FIELDS = frozenset({"sort", "limit", "cursor", "offset"})
KEPT_FILTERS = {
    "state": "state",
    "kind": "kind",
    "department": "department",
    "site": "site_id",
    "site_id": "site_id",
    "camera": "camera_id",
    "camera_id": "camera_id",
    "tier": "tier",
    "priority": "priority",
    "assignee": "assignee",
    "overdue": "overdue",
}
MAX_ENTRIES = 4096  # distinct lists kept; the oldest goes first beyond it

Key = tuple[Any, ...]


class CaseCounts:
    """One process's kept list totals, by who asks and what they filter."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._max = max_entries
        self._entries: dict[Key, tuple[int, int]] = {}
        self.counted = 0  # totals counted by the database (for tests and benches)

    def total(
        self,
        session: Session,
        principal: Actor,
        query: Any,
        where: Sequence[ColumnElement[bool]],
    ) -> int:
        """How many cases match ``where`` (``query``'s conditions for ``principal``): kept
        while the count version stands, counted (with the version) when it moved."""
        key = _key(principal, query)
        if key is None:
            self.counted += 1
            return session.scalar(select(func.count()).select_from(Case).where(*where)) or 0
        version = session.scalar(select(CaseListVersion.version).where(CaseListVersion.id == 1))
        kept = self._entries.get(key)
        if kept is not None and version is not None and kept[0] == version:
            return kept[1]
        # The count and the version it belongs to, from one statement (one snapshot).
        current = select(CaseListVersion.version).where(CaseListVersion.id == 1).scalar_subquery()
        counted_at, total = session.execute(
            select(current, func.count()).select_from(Case).where(*where)
        ).one()
        self.counted += 1
        if counted_at is not None:
            if key not in self._entries and len(self._entries) >= self._max:
                self._entries.pop(next(iter(self._entries)), None)
            self._entries[key] = (counted_at, total)
        return int(total)


def _key(principal: Actor, query: Any) -> Key | None:
    """What a list's total depends on besides the cases: who sees (a council member's site, or
    a department's scope) and the filters asked; None when a filter is not one kept."""
    asked: list[tuple[str, Any]] = []
    for name in type(query).model_fields:
        if name in PAGE_FIELDS:
            continue
        value = getattr(query, name)
        if value is None or value == []:
            continue
        if name not in KEPT_FILTERS:
            return None
        if isinstance(value, list):
            asked.append((name, tuple(sorted(str(item) for item in value))))
        else:
            asked.append((name, value))
    if principal.role is Role.COUNCIL:
        sees: tuple[Any, ...] = ("council", principal.site_id)
    elif principal.role in SCOPED_ROLES:  # dispatch.http.deps.scope_of: one department's cases
        sees = ("department", principal.department)
    else:
        sees = ("all",)
    return (sees, tuple(asked))


__all__ = ["COUNTED_COLUMNS", "KEPT_FILTERS", "CaseCounts"]
