"""Which days a report covers: a week (Monday to Sunday) or a calendar month, in the place's
local time, and the place (a site or a street)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from contracts.sites import SiteConfig, SiteRegistry

EARLIEST = date(2000, 1, 1)  # older dates are typing mistakes, not data


class ReportError(ValueError):
    """A request the report cannot serve (bad period, place or date): ``code`` names the
    mistake for the page's catalogue (``report.errors.<code>``), the text says it in English
    for the CLI and the log."""

    def __init__(self, code: str, message: str, **values: object) -> None:
        super().__init__(message)
        self.code = code
        self.values = values


class Period(StrEnum):
    WEEK = "week"
    MONTH = "month"


class Scope(StrEnum):
    SITE = "site"  # one compound (小区)
    STREET = "street"  # every compound of a street (街道)


@dataclass(frozen=True)
class Place:
    """The place a report covers: its sites and the time zone its days are counted in."""

    scope: Scope
    scope_id: str
    sites: tuple[SiteConfig, ...]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.sites[0].timezone)

    @property
    def site_ids(self) -> tuple[str, ...]:
        return tuple(site.id for site in self.sites)

    def name(self) -> str:
        if self.scope is Scope.SITE:
            return self.sites[0].name or self.scope_id
        return self.scope_id


@dataclass(frozen=True)
class Window:
    """One period: local first day, and the UTC instants [start, end) it spans."""

    period: Period
    first_day: date
    start: datetime
    end: datetime

    def previous(self, zone: ZoneInfo) -> Window:
        day = self.first_day - timedelta(days=1)
        return window(self.period, day, zone)

    @property
    def last_day(self) -> date:
        return self.next_first_day - timedelta(days=1)

    @property
    def next_first_day(self) -> date:
        return _next_first_day(self.period, self.first_day)


def parse_period(text: str) -> Period:
    try:
        return Period(text)
    except ValueError:
        raise ReportError(
            "bad_period", f"unknown period {text[:20]!r}: use week or month", value=text[:20]
        ) from None


def parse_day(text: str) -> date:
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise ReportError(
            "bad_date", f"not a date {text[:40]!r}: use YYYY-MM-DD", value=text[:40]
        ) from None
    if day < EARLIEST:
        raise ReportError("early_date", f"date {day} is before {EARLIEST}", earliest=EARLIEST)
    return day


def first_day_of(period: Period, day: date) -> date:
    """The period holding ``day`` starts on its Monday (week) or on the 1st (month)."""
    if period is Period.WEEK:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next_first_day(period: Period, first: date) -> date:
    if period is Period.WEEK:
        return first + timedelta(days=7)
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1)


def window(period: Period, day: date, zone: ZoneInfo) -> Window:
    """The period of ``period`` that holds local ``day``."""
    first = first_day_of(period, day)
    return Window(
        period=period,
        first_day=first,
        start=_utc(first, zone),
        end=_utc(_next_first_day(period, first), zone),
    )


def finished_window(period: Period, day: date, zone: ZoneInfo, now: datetime) -> Window:
    """Like ``window`` but refuses a period that has not ended yet: its figures would change."""
    found = window(period, day, zone)
    if found.end > now:
        raise ReportError(
            "not_ended",
            f"the {period.value} from {found.first_day} has not ended yet "
            f"(it ends {found.last_day}); pick an earlier date",
            first=found.first_day,
            last=found.last_day,
        )
    return found


def last_finished(period: Period, now: datetime, zone: ZoneInfo) -> Window:
    """The latest period that has ended by ``now`` (the schedule's report)."""
    today = now.astimezone(zone).date()
    current = window(period, today, zone)
    return current.previous(zone)


def resolve_place(registry: SiteRegistry, scope: Scope | str, scope_id: str) -> Place:
    """The sites of a place; an unknown site or street is refused by name."""
    try:
        scope = Scope(scope)
    except ValueError:
        raise ReportError(
            "bad_scope", f"unknown place kind {str(scope)[:20]!r}: use site or street"
        ) from None
    if scope is Scope.SITE:
        sites = tuple(site for site in registry.sites if site.id == scope_id)
        if not sites:
            raise ReportError(
                "no_site", f"no site {scope_id[:64]!r} in the config", value=scope_id[:64]
            )
    else:
        sites = tuple(site for site in registry.sites if site.street == scope_id)
        if not sites:
            raise ReportError(
                "no_street", f"no site belongs to street {scope_id[:64]!r}", value=scope_id[:64]
            )
    return Place(scope=scope, scope_id=scope_id, sites=sites)


def every_place(registry: SiteRegistry) -> list[Place]:
    """Each site, then each street that groups sites: what the schedule reports on."""
    places = [Place(Scope.SITE, site.id, (site,)) for site in registry.sites]
    streets = sorted({site.street for site in registry.sites if site.street})
    places.extend(resolve_place(registry, Scope.STREET, street) for street in streets)
    return places


def _utc(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
