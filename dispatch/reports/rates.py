"""The three rates of the 12345 practice (响应率 / 解决率 / 满意率), the one implementation that
the analysis report, the rates API, the console's rates page and /metrics all read.

docs/rates.md defines each rate. In short, of the cases registered in a period (in each site's
local time) and sent to a department, merged duplicates left out:

- response: accepted by the department holding the case, at or before its accept deadline;
- resolution: resolved (or closed) at or before its resolve deadline, and never reopened;
- satisfaction: of the residents' ratings given in the period on those departments' cases,
  ``satisfied`` and ``basic`` (满意 + 基本满意) over all ratings.

Every event is cut at the period's end, so a finished period's rates do not change later. A rate
whose denominator is 0 is None (shown "—"), never 0 %.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, exists, select, true
from sqlalchemy.orm import Session

from contracts.sites import SiteRegistry
from dispatch.reports.period import Period, Window, window
from dispatch.workflow import Action
from storage.tables import Case, CaseState, CaseTransition, ResidentReport

# resident_reports.rating values, exactly as dispatch/residents/followup.Rating stores them
# (满意 / 基本满意 / 不满意); the first two count as satisfied.
SATISFIED = "satisfied"
BASIC = "basic"
UNSATISFIED = "dissatisfied"
RATINGS = (SATISFIED, BASIC, UNSATISFIED)
SATISFIED_RATINGS = frozenset({SATISFIED, BASIC})

_HANDOVER = frozenset({Action.DISPATCH.value, Action.TRANSFER.value})
_DONE = frozenset({Action.RESOLVE.value, Action.VERIFY.value, Action.CLOSE.value})
_READ_ACTIONS = (*_HANDOVER, Action.ACCEPT.value, *_DONE, Action.REOPEN.value)


class Source(StrEnum):
    """Which cases count: every case, or only residents' complaints (12345 counts these)."""

    ALL = "all"
    RESIDENT = "resident"  # a case with at least one resident report (opened it or joined it)


class GroupBy(StrEnum):
    DEPARTMENT = "department"
    SITE = "site"


@dataclass(frozen=True)
class Rates:
    """The counts behind the three rates, for one department, one site or all of them."""

    dispatched: int = 0  # cases sent to a department in the period: both first denominators
    responded: int = 0  # ... accepted at or before the accept deadline
    resolved: int = 0  # ... resolved at or before the resolve deadline, never reopened
    ratings: int = 0  # residents' ratings given in the period: the satisfaction denominator
    satisfied: int = 0  # ... 满意 or 基本满意

    @property
    def response_rate(self) -> float | None:
        return share(self.responded, self.dispatched)

    @property
    def resolution_rate(self) -> float | None:
        return share(self.resolved, self.dispatched)

    @property
    def satisfaction_rate(self) -> float | None:
        return share(self.satisfied, self.ratings)

    def __add__(self, other: Rates) -> Rates:
        return Rates(
            self.dispatched + other.dispatched,
            self.responded + other.responded,
            self.resolved + other.resolved,
            self.ratings + other.ratings,
            self.satisfied + other.satisfied,
        )


def share(part: int, whole: int) -> float | None:
    """``part / whole``; None when there is nothing to divide by (shown "—", never 0 %)."""
    return part / whole if whole else None


@dataclass(frozen=True)
class CaseFacts:
    """What the rates read of one case, as it stood at the period's end."""

    accepted_at: datetime | None  # the first acceptance by the department holding it
    resolved_at: datetime | None  # its first resolve (or verify, or close) after it got it
    ack_due_at: datetime | None
    sla_due_at: datetime | None
    reopened: bool  # reopened at least once (not resolved on the first pass)


def responded(facts: CaseFacts, end: datetime) -> bool:
    """Accepted before ``end`` and at or before the accept deadline (none: once accepted)."""
    at = facts.accepted_at
    if at is None or at >= end:
        return False
    return facts.ack_due_at is None or at <= facts.ack_due_at


def resolved(facts: CaseFacts, end: datetime) -> bool:
    """Resolved before ``end``, at or before the resolve deadline (none: once resolved), and
    never reopened: a case reopened (不满意, or the fix did not hold) failed its first pass."""
    at = facts.resolved_at
    if facts.reopened or at is None or at >= end:
        return False
    return facts.sla_due_at is None or at <= facts.sla_due_at


def tally(facts: Iterable[CaseFacts], end: datetime, ratings: Iterable[str] = ()) -> Rates:
    """The counts of the cases' ``facts`` and of the ``ratings`` given, cut at ``end``."""
    cases = list(facts)
    given = [rating for rating in ratings if rating]
    return Rates(
        dispatched=len(cases),
        responded=sum(responded(f, end) for f in cases),
        resolved=sum(resolved(f, end) for f in cases),
        ratings=len(given),
        satisfied=sum(rating in SATISFIED_RATINGS for rating in given),
    )


def facts_of(
    row: Mapping[Any, Any], entries: Sequence[tuple[str, datetime]], end: datetime
) -> CaseFacts:
    """One case's facts from its row and its audit entries (action, at) in order, before
    ``end``. A dispatch or transfer hands the case to a department: what came before belonged
    to the one before. Rows written without entries (imports, old data) fall back to the row's
    own ``acknowledged_at`` / ``resolved_at`` / ``closed_at``."""
    accepted: datetime | None = None
    done: datetime | None = None
    reopened = False
    for action, at in entries:
        if at >= end:
            break
        if action in _HANDOVER:
            accepted = done = None
        elif action == Action.ACCEPT.value:
            accepted = accepted or at
        elif action in _DONE:
            done = done or at
        elif action == Action.REOPEN.value:
            reopened = True
    if accepted is None and not any(a == Action.ACCEPT.value for a, _ in entries):
        accepted = row["acknowledged_at"]
    if done is None and not any(a in _DONE for a, _ in entries):
        done = row["resolved_at"] or row["closed_at"]
    return CaseFacts(
        accepted_at=accepted,
        resolved_at=done,
        ack_due_at=row["ack_due_at"],
        sla_due_at=row["sla_due_at"],
        reopened=reopened,
    )


def _cases_in(
    sites: Sequence[str], span: Window, source: Source, visible: ColumnElement[bool]
) -> ColumnElement[bool]:
    """The cases a period counts: registered in it at ``sites``, sent to a department, not
    merged, visible to the caller, of the source asked."""
    condition = and_(
        Case.site_id.in_(sites),
        Case.created_at >= span.start,
        Case.created_at < span.end,
        Case.state != CaseState.MERGED.value,
        Case.department.is_not(None),
        visible,
    )
    if source is Source.RESIDENT:
        condition = and_(condition, exists().where(ResidentReport.case_id == Case.id))
    return condition


def measure_sites(
    session: Session,
    sites: Sequence[str],
    span: Window,
    by: GroupBy = GroupBy.DEPARTMENT,
    source: Source = Source.ALL,
    visible: ColumnElement[bool] | None = None,
) -> dict[str, Rates]:
    """Rates per department (or site) of ``sites`` over one window: three queries (cases,
    their audit entries, the ratings given), whatever the number of cases."""
    where = _cases_in(sites, span, source, true() if visible is None else visible)
    key_column = Case.department if by is GroupBy.DEPARTMENT else Case.site_id
    rows = session.execute(
        select(
            Case.id,
            key_column.label("key"),
            Case.acknowledged_at,
            Case.resolved_at,
            Case.closed_at,
            Case.ack_due_at,
            Case.sla_due_at,
        ).where(where)
    ).all()
    entries: defaultdict[int, list[tuple[str, datetime]]] = defaultdict(list)
    for case_id, action, at in session.execute(
        select(CaseTransition.case_id, CaseTransition.action, CaseTransition.at)
        .join(Case, Case.id == CaseTransition.case_id)
        .where(where, CaseTransition.action.in_(_READ_ACTIONS), CaseTransition.at < span.end)
        .order_by(CaseTransition.at, CaseTransition.id)
    ):
        entries[case_id].append((action, at))
    facts: defaultdict[str, list[CaseFacts]] = defaultdict(list)
    for row in rows:
        mapping = row._mapping
        facts[mapping["key"]].append(facts_of(mapping, entries.get(row.id, []), span.end))
    ratings: defaultdict[str, list[str]] = defaultdict(list)
    for key, rating in session.execute(
        select(key_column, ResidentReport.rating)
        .join(Case, Case.id == ResidentReport.case_id)
        .where(
            Case.site_id.in_(sites),
            Case.state != CaseState.MERGED.value,
            Case.department.is_not(None),
            true() if visible is None else visible,
            ResidentReport.rating.is_not(None),
            ResidentReport.rated_at >= span.start,
            ResidentReport.rated_at < span.end,
        )
    ):
        if key is not None and rating is not None:
            ratings[key].append(rating)
    return {
        key: tally(facts.get(key, []), span.end, ratings.get(key, []))
        for key in sorted(facts.keys() | ratings.keys())
    }


@dataclass(frozen=True)
class RatesTable:
    """One period's rates, by department or by site, and their total."""

    period: Period
    first_day: date
    last_day: date
    by: GroupBy
    source: Source
    rows: dict[str, Rates]

    @property
    def total(self) -> Rates:
        return sum(self.rows.values(), Rates())


def measure(
    session: Session,
    registry: SiteRegistry,
    period: Period,
    now: datetime,
    at: date | None = None,
    by: GroupBy = GroupBy.DEPARTMENT,
    source: Source = Source.ALL,
    visible: ColumnElement[bool] | None = None,
    back: int = 0,
) -> RatesTable:
    """The rates of the period holding local day ``at`` (default: each site's today), or the
    one ``back`` periods before it (1: last week or month); each site's cases counted in that
    site's own time zone, one query set per time zone."""
    zones: defaultdict[str, list[str]] = defaultdict(list)
    for site in registry.sites:
        zones[site.timezone].append(site.id)
    rows: defaultdict[str, Rates] = defaultdict(Rates)
    spans: list[Window] = []
    for zone_name, sites in sorted(zones.items()):
        zone = ZoneInfo(zone_name)
        span = window(period, at or now.astimezone(zone).date(), zone)
        for _ in range(back):
            span = span.previous(zone)
        spans.append(span)
        for key, found in measure_sites(session, sites, span, by, source, visible).items():
            rows[key] = rows[key] + found
    first = spans[0] if spans else window(period, at or now.date(), ZoneInfo("UTC"))
    return RatesTable(
        period=period,
        first_day=first.first_day,
        last_day=first.last_day,
        by=by,
        source=source,
        rows=dict(sorted(rows.items())),
    )
