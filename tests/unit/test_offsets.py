"""The largest rise of a UTC offset over a span, read from the tz database (core.offsets)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from toma.core.offsets import LEAST, LONGEST_SPAN, RAREST, largest_rise


def at(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def test_samoa_crossing_the_date_line_is_a_day() -> None:
    # Pacific/Apia went from UTC-10 to UTC+14 at the end of 29 December 2011.
    assert largest_rise(at(2011, 12, 1), at(2012, 1, 15)) >= timedelta(days=1)


def test_a_two_hour_summer_time_is_seen() -> None:
    # Antarctica/Troll moves from UTC+0 to UTC+2 on the last Sunday of March.
    assert largest_rise(at(2026, 3, 1), at(2026, 4, 15)) == timedelta(hours=2)


def test_a_span_without_a_rise_still_allows_an_hour() -> None:
    assert largest_rise(at(2026, 6, 1), at(2026, 7, 31)) == LEAST


def test_a_span_too_long_to_read_gets_the_rarest_rise() -> None:
    start = at(2026, 1, 1)
    assert largest_rise(start, start + LONGEST_SPAN + timedelta(days=1)) == RAREST


@settings(max_examples=30, deadline=None)
@given(
    zone=st.sampled_from(
        [
            "Europe/Berlin",
            "America/New_York",
            "Australia/Lord_Howe",
            "Antarctica/Troll",
            "America/Santiago",
            "Asia/Tehran",
            "Pacific/Apia",
            "Africa/Casablanca",
        ]
    ),
    start=st.datetimes(min_value=datetime(2009, 1, 1), max_value=datetime(2030, 1, 1)),
    days=st.integers(min_value=0, max_value=120),
    hours=st.integers(min_value=0, max_value=23),
)
def test_wall_clock_days_are_never_sooner_than_the_bound(
    zone: str, start: datetime, days: int, hours: int
) -> None:
    """``days`` and ``hours`` later on a wall clock, in UTC, is never sooner than that
    much time less the largest rise over the span."""
    tz = ZoneInfo(zone)
    anchor = start.replace(tzinfo=UTC)
    delay = timedelta(days=days, hours=hours)
    due = (anchor.astimezone(tz) + delay).astimezone(UTC)
    assert due >= anchor + delay - largest_rise(anchor, max(due, anchor + delay))
