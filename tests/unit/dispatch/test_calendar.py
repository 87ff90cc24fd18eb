"""The working calendar on fixed dates: weekends, holidays, make-up days, lunch and DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from dispatch.calendar import CalendarSettings, WorkingCalendar, WorkingPeriod

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")


def _at(day: date, hour: int, minute: int = 0, zone: ZoneInfo = SHANGHAI) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=zone)


FRIDAY = date(2026, 11, 27)
SATURDAY = date(2026, 11, 28)
MONDAY = date(2026, 11, 30)
TUESDAY = date(2026, 12, 1)


def test_friday_evening_runs_over_the_weekend_to_monday_morning() -> None:
    calendar = WorkingCalendar()
    due = calendar.add_working_minutes(_at(FRIDAY, 17, 30), 120)
    # 30 minutes on Friday (to 18:00), 90 on Monday from 09:00.
    assert due == _at(MONDAY, 10, 30)
    assert due.tzinfo is UTC
    assert calendar.working_minutes_between(_at(FRIDAY, 17, 30), due) == 120


def test_a_deadline_on_the_end_of_a_period_stays_there() -> None:
    calendar = WorkingCalendar()
    assert calendar.add_working_minutes(_at(FRIDAY, 17, 30), 30) == _at(FRIDAY, 18)
    assert calendar.add_working_minutes(_at(FRIDAY, 11), 60) == _at(FRIDAY, 12)


def test_lunch_break_does_not_count() -> None:
    calendar = WorkingCalendar()
    assert calendar.add_working_minutes(_at(MONDAY, 11, 30), 60) == _at(MONDAY, 14)
    assert calendar.add_working_minutes(_at(MONDAY, 12, 15), 10) == _at(MONDAY, 13, 40)
    assert calendar.working_minutes_between(_at(MONDAY, 11), _at(MONDAY, 14)) == 90


def test_time_outside_working_hours_starts_at_the_next_period() -> None:
    calendar = WorkingCalendar()
    assert calendar.add_working_minutes(_at(SATURDAY, 3), 10) == _at(MONDAY, 9, 10)
    assert calendar.add_working_minutes(_at(MONDAY, 6), 10) == _at(MONDAY, 9, 10)
    assert calendar.add_working_minutes(_at(MONDAY, 20), 10) == _at(TUESDAY, 9, 10)
    assert calendar.working_minutes_between(_at(SATURDAY, 3), _at(SATURDAY, 23)) == 0


def test_a_holiday_monday_moves_the_deadline_to_tuesday() -> None:
    calendar = WorkingCalendar(CalendarSettings(holidays=[MONDAY]))
    assert calendar.add_working_minutes(_at(FRIDAY, 17, 30), 120) == _at(TUESDAY, 10, 30)
    assert not calendar.is_working_day(MONDAY)


def test_a_make_up_saturday_is_a_working_day() -> None:
    calendar = WorkingCalendar(CalendarSettings(workdays=[SATURDAY]))
    assert calendar.add_working_minutes(_at(FRIDAY, 17, 30), 120) == _at(SATURDAY, 10, 30)
    assert calendar.is_working_day(SATURDAY)


def test_china_2026_national_day_week_with_its_make_up_days() -> None:
    """The 2026 National Day holiday (Oct 1-7) and its make-up Saturday Oct 10."""
    holidays = [date(2026, 10, day) for day in range(1, 8)]
    calendar = WorkingCalendar(
        CalendarSettings(holidays=holidays, workdays=[date(2026, 9, 20), date(2026, 10, 10)])
    )
    # Wednesday Sep 30, 17:00 + 3 working hours: one hour that evening, then Thursday Oct 8.
    due = calendar.add_working_minutes(_at(date(2026, 9, 30), 17), 180)
    assert due == _at(date(2026, 10, 8), 11)
    # Sunday Sep 20 is worked.
    assert calendar.add_working_minutes(_at(date(2026, 9, 19), 12), 60) == _at(
        date(2026, 9, 20), 10
    )


def test_long_spans_jump_whole_days_and_round_trip() -> None:
    calendar = WorkingCalendar(CalendarSettings(holidays=[MONDAY]))
    start = _at(FRIDAY, 10, 17)
    for minutes in (0, 1, 43, 450, 451, 7.5 * 60 * 20 + 13, 7.5 * 60 * 250):
        due = calendar.add_working_minutes(start, minutes)
        assert calendar.working_minutes_between(start, due) == pytest.approx(minutes)
        assert calendar.working_minutes_between(due, start) == pytest.approx(-minutes)
    # A day has 7.5 working hours: 20 of them from Friday 09:00 (Monday off) end on the 20th
    # working day's evening.
    assert calendar.add_working_minutes(_at(FRIDAY, 9), 7.5 * 60 * 20) == _at(
        date(2026, 12, 25), 18
    )


def test_europe_berlin_across_the_spring_dst_change() -> None:
    """2026-03-29 is the spring-forward Sunday in Europe/Berlin (02:00 CET -> 03:00 CEST)."""
    calendar = WorkingCalendar(CalendarSettings(timezone="Europe/Berlin"))
    friday = _at(date(2026, 3, 27), 17, zone=BERLIN)
    due = calendar.add_working_minutes(friday, 120)
    assert due == _at(date(2026, 3, 30), 10, zone=BERLIN)
    assert friday.utcoffset() != due.astimezone(BERLIN).utcoffset()  # CET, then CEST
    assert due == datetime(2026, 3, 30, 8, 0, tzinfo=UTC)
    assert calendar.working_minutes_between(friday, due) == 120


def test_a_period_across_the_dst_change_counts_the_real_minutes() -> None:
    night = CalendarSettings(
        timezone="Europe/Berlin",
        working_days=[7],
        working_hours=[WorkingPeriod(start=time(0), end=time(6))],
    )
    calendar = WorkingCalendar(night)
    sunday = date(2026, 3, 29)
    assert calendar.working_minutes_on(sunday) == 5 * 60  # the night lost an hour
    assert calendar.working_minutes_on(date(2026, 10, 25)) == 7 * 60  # and autumn gains one
    assert calendar.add_working_minutes(_at(sunday, 0, zone=BERLIN), 180) == _at(
        sunday, 4, zone=BERLIN
    )


def test_naive_times_and_negative_minutes_are_refused() -> None:
    calendar = WorkingCalendar()
    with pytest.raises(ValueError, match="naive"):
        calendar.add_working_minutes(datetime(2026, 11, 27, 9), 10)
    with pytest.raises(ValueError, match="negative"):
        calendar.add_working_minutes(_at(FRIDAY, 9), -1)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"working_days": [0, 1]}, "ISO weekdays"),
        ({"working_days": []}, "at least 1"),
        ({"working_hours": [{"start": "12:00", "end": "09:00"}]}, "ends before it starts"),
        (
            {
                "working_hours": [
                    {"start": "09:00", "end": "12:00"},
                    {"start": "11:00", "end": "14:00"},
                ]
            },
            "overlap",
        ),
        ({"holidays": ["2026-11-28"], "workdays": ["2026-11-28"]}, "both"),
        ({"weekend": [6, 7]}, "Extra inputs"),
    ],
)
def test_bad_calendar_settings_say_what_is_wrong(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CalendarSettings.model_validate(settings)


def test_a_year_of_holidays_on_the_only_working_weekday_is_jumped() -> None:
    mondays_2027 = [date.fromordinal(date(2027, 1, 4).toordinal() + 7 * w) for w in range(52)]
    calendar = WorkingCalendar(CalendarSettings(working_days=[1], holidays=mondays_2027))
    due = calendar.add_working_minutes(_at(date(2026, 12, 29), 9), 60)
    assert due == _at(date(2028, 1, 3), 10)


def test_parsed_from_yaml_style_strings() -> None:
    settings = CalendarSettings.model_validate(
        {"working_hours": [{"start": "08:30", "end": "17:00"}], "holidays": ["2026-10-01"]}
    )
    assert settings.working_hours[0].start == time(8, 30)
    assert settings.holidays == [date(2026, 10, 1)]
