"""The working calendar: working hours, working days, public holidays and make-up days (调休).

Deadlines on the working clock count only minutes inside working periods. Periods are wall-clock
times in the calendar's time zone and are measured in real elapsed minutes, so a period across a
DST change is as long as it really is. Arithmetic jumps whole days; it never steps minute by
minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkingPeriod(_Settings):
    """One stretch of working time in a day, e.g. 09:00-12:00 (local wall-clock times)."""

    start: time
    end: time

    @model_validator(mode="after")
    def _starts_before_it_ends(self) -> WorkingPeriod:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("working hours are local times without a UTC offset")
        if self.start >= self.end:
            raise ValueError(f"working period {self.start}-{self.end} ends before it starts")
        return self


def _default_hours() -> list[WorkingPeriod]:
    return [
        WorkingPeriod(start=time(9, 0), end=time(12, 0)),
        WorkingPeriod(start=time(13, 30), end=time(18, 0)),
    ]


class CalendarSettings(_Settings):
    """When departments work. Holidays and make-up days change every year: list them in the
    config (configs/example.yaml carries 2026's mainland China statutory holidays)."""

    timezone: str = "Asia/Shanghai"
    working_hours: list[WorkingPeriod] = Field(default_factory=_default_hours, min_length=1)
    working_days: list[int] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5],
        min_length=1,
        description="ISO weekdays: 1 Monday ... 7 Sunday",
    )
    holidays: list[date] = Field(
        default_factory=list, description="public holidays: no work even on a working weekday"
    )
    workdays: list[date] = Field(
        default_factory=list, description="make-up working days (调休) that fall on a weekend"
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("working_days")
    @classmethod
    def _iso_weekdays(cls, value: list[int]) -> list[int]:
        wrong = [day for day in value if not 1 <= day <= 7]
        if wrong:
            raise ValueError(f"working_days are ISO weekdays 1-7, not {wrong}")
        return sorted(set(value))

    @model_validator(mode="after")
    def _consistent(self) -> CalendarSettings:
        periods = sorted(self.working_hours, key=lambda period: period.start)
        for before, after in pairwise(periods):
            if after.start < before.end:
                raise ValueError(
                    f"working periods {before.start}-{before.end} and "
                    f"{after.start}-{after.end} overlap"
                )
        both = sorted(set(self.holidays) & set(self.workdays))
        if both:
            raise ValueError(f"{both[0]} is listed both as a holiday and as a make-up workday")
        return self


class WorkingCalendar:
    """Working-time arithmetic over :class:`CalendarSettings`. Pure; results are UTC-aware."""

    def __init__(self, settings: CalendarSettings | None = None) -> None:
        self.settings = settings or CalendarSettings()
        self.zone = ZoneInfo(self.settings.timezone)
        self._periods = sorted(self.settings.working_hours, key=lambda period: period.start)
        self._weekdays = frozenset(self.settings.working_days)
        self._holidays = frozenset(self.settings.holidays)
        self._workdays = frozenset(self.settings.workdays)
        self._day_cache: dict[date, tuple[tuple[datetime, datetime], ...]] = {}

    def is_working_day(self, day: date) -> bool:
        if day in self._workdays:
            return True
        return day.isoweekday() in self._weekdays and day not in self._holidays

    def working_periods(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """The day's working periods as UTC (start, end) pairs; empty on a day off."""
        cached = self._day_cache.get(day)
        if cached is None:
            cached = ()
            if self.is_working_day(day):
                cached = tuple(
                    (self._utc(day, period.start), self._utc(day, period.end))
                    for period in self._periods
                )
            self._day_cache[day] = cached
        return cached

    def working_minutes_on(self, day: date) -> float:
        return sum((end - start).total_seconds() for start, end in self.working_periods(day)) / 60

    def add_working_minutes(self, start: datetime, minutes: float) -> datetime:
        """The moment ``minutes`` of working time after ``start`` (UTC-aware). A deadline that
        falls on the end of a period stays there rather than moving to the next morning."""
        start = _require_aware(start).astimezone(UTC)
        if minutes < 0:
            raise ValueError(f"cannot add a negative working time ({minutes} min)")
        remaining = timedelta(minutes=minutes)
        if not remaining:
            return start
        for day in self._days_from(start):
            periods = self.working_periods(day)
            if not periods or periods[-1][1] <= start:
                continue
            if periods[0][0] >= start:
                whole_day = sum((end - begin for begin, end in periods), timedelta())
                if whole_day < remaining:  # jump the whole day
                    remaining -= whole_day
                    continue
            for begin, end in periods:
                begin = max(begin, start)
                if end <= begin:
                    continue
                if remaining <= end - begin:
                    return begin + remaining
                remaining -= end - begin
        raise AssertionError("unreachable: _days_from never ends")  # pragma: no cover

    def working_minutes_between(self, earlier: datetime, later: datetime) -> float:
        """Working minutes from ``earlier`` to ``later``; negative when ``later`` comes first."""
        earlier = _require_aware(earlier).astimezone(UTC)
        later = _require_aware(later).astimezone(UTC)
        if later < earlier:
            return -self.working_minutes_between(later, earlier)
        total = timedelta()
        day = earlier.astimezone(self.zone).date()
        last = later.astimezone(self.zone).date()
        while day <= last:
            for begin, end in self.working_periods(day):
                overlap = min(end, later) - max(begin, earlier)
                if overlap > timedelta():
                    total += overlap
            day += timedelta(days=1)
        return total.total_seconds() / 60

    def _days_from(self, start: datetime) -> Iterator[date]:
        """Local dates from the one ``start`` falls on; fails once no working day can follow."""
        day = start.astimezone(self.zone).date()
        # Past the last holiday every 7 days hold a working weekday (working_days is never
        # empty), so a longer gap after it means there is no working time left: fail, not hang.
        week = timedelta(days=8)
        horizon = max((*self._holidays, day)) + week
        while True:
            if day > horizon:
                raise ValueError(f"the working calendar has no working time after {start}")
            yield day
            if self.working_periods(day):
                horizon = max(horizon, day + week)
            day += timedelta(days=1)

    def _utc(self, day: date, at: time) -> datetime:
        return datetime.combine(day, at, tzinfo=self.zone).astimezone(UTC)


def _require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: working-time arithmetic needs a time zone")
    return moment
