"""Sending windows: openings on the recipient's wall clock, across weekends and DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from toma.config import Window
from toma.core.windows import WindowCalendar, day_intervals, in_window, next_opening

WEEKDAYS = Window("default", frozenset(range(5)), time(9, 1), time(16, 59))
WEEKEND = Window("weekend", frozenset({5, 6}), time(10, 0), time(12, 0))
EVERY_DAY_EARLY = Window("early", frozenset(range(7)), time(1, 30), time(2, 29))
GAP_ONLY = Window("gap", frozenset(range(7)), time(2, 15), time(2, 44))
ACROSS_GAP = Window("across", frozenset(range(7)), time(2, 30), time(3, 29))
LATE = Window("late", frozenset(range(7)), time(20, 0), time(23, 59))

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
AUCKLAND = "Pacific/Auckland"
KOLKATA = "Asia/Kolkata"


def local(zone: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold)  # type: ignore[misc]


# (case, window, zone, moment (local wall time), expected opening (local wall time))
OPENINGS = [
    ("inside stays", WEEKDAYS, BERLIN, (2026, 3, 4, 10, 0), (2026, 3, 4, 10, 0)),
    ("at start", WEEKDAYS, BERLIN, (2026, 3, 4, 9, 1), (2026, 3, 4, 9, 1)),
    ("before start", WEEKDAYS, BERLIN, (2026, 3, 4, 9, 0), (2026, 3, 4, 9, 1)),
    ("early morning", WEEKDAYS, BERLIN, (2026, 3, 4, 3, 0), (2026, 3, 4, 9, 1)),
    ("during minute 16:59", WEEKDAYS, BERLIN, (2026, 3, 4, 16, 59, 59), (2026, 3, 4, 16, 59, 59)),
    ("17:00 is closed", WEEKDAYS, BERLIN, (2026, 3, 4, 17, 0), (2026, 3, 5, 9, 1)),
    ("friday evening", WEEKDAYS, BERLIN, (2026, 3, 6, 18, 0), (2026, 3, 9, 9, 1)),
    ("saturday", WEEKDAYS, BERLIN, (2026, 3, 7, 12, 0), (2026, 3, 9, 9, 1)),
    ("sunday night", WEEKDAYS, BERLIN, (2026, 3, 8, 23, 59), (2026, 3, 9, 9, 1)),
    # Last Sunday of March: 02:00 -> 03:00. The Monday after opens at 09:01 CEST.
    ("berlin spring weekend", WEEKDAYS, BERLIN, (2026, 3, 27, 18, 0), (2026, 3, 30, 9, 1)),
    # Last Sunday of October: 03:00 -> 02:00.
    ("berlin autumn weekend", WEEKDAYS, BERLIN, (2026, 10, 23, 18, 0), (2026, 10, 26, 9, 1)),
    ("new york spring", WEEKDAYS, NEW_YORK, (2026, 3, 6, 17, 30), (2026, 3, 9, 9, 1)),
    ("new york autumn", WEEKDAYS, NEW_YORK, (2026, 10, 30, 17, 30), (2026, 11, 2, 9, 1)),
    ("weekend window from friday", WEEKEND, BERLIN, (2026, 3, 6, 12, 0), (2026, 3, 7, 10, 0)),
    ("weekend window saturday noon", WEEKEND, BERLIN, (2026, 3, 7, 12, 0), (2026, 3, 7, 12, 0)),
    ("weekend window after sunday", WEEKEND, BERLIN, (2026, 3, 8, 12, 1), (2026, 3, 14, 10, 0)),
    ("weekend window spring sunday", WEEKEND, BERLIN, (2026, 3, 28, 13, 0), (2026, 3, 29, 10, 0)),
    ("auckland friday", WEEKDAYS, AUCKLAND, (2026, 3, 6, 18, 0), (2026, 3, 9, 9, 1)),
    # Auckland leaves DST on the first Sunday of April (03:00 -> 02:00).
    ("auckland autumn", WEEKDAYS, AUCKLAND, (2026, 4, 3, 17, 0), (2026, 4, 6, 9, 1)),
    ("kolkata half hour", WEEKDAYS, KOLKATA, (2026, 3, 6, 17, 0), (2026, 3, 9, 9, 1)),
    ("kolkata inside", WEEKDAYS, KOLKATA, (2026, 3, 5, 12, 30), (2026, 3, 5, 12, 30)),
    ("late window to midnight", LATE, BERLIN, (2026, 3, 4, 23, 59, 30), (2026, 3, 4, 23, 59, 30)),
    ("late window next day", LATE, BERLIN, (2026, 3, 5, 0, 0), (2026, 3, 5, 20, 0)),
    # A window that starts inside the spring-forward gap opens when the gap ends.
    ("start in the gap", ACROSS_GAP, BERLIN, (2026, 3, 29, 0, 0), (2026, 3, 29, 3, 0)),
    # A window wholly inside the gap does not open that day.
    ("window in the gap", GAP_ONLY, BERLIN, (2026, 3, 29, 0, 0), (2026, 3, 30, 2, 15)),
    ("new york gap", ACROSS_GAP, NEW_YORK, (2026, 3, 8, 1, 0), (2026, 3, 8, 3, 0)),
]


@pytest.mark.parametrize(
    ("window", "zone", "moment", "expected"),
    [case[1:] for case in OPENINGS],
    ids=[case[0] for case in OPENINGS],
)
def test_next_opening(window: Window, zone: str, moment: tuple, expected: tuple) -> None:
    """The earliest instant at or after the moment inside the window, returned in UTC."""
    tz = ZoneInfo(zone)
    found = next_opening(local(zone, *moment), window, tz)
    assert found.tzinfo is UTC
    assert found == local(zone, *expected)
    assert in_window(found, window, tz)
    # The same answer from the memoising calendar the planner uses.
    assert WindowCalendar(window, tz).next_opening(local(zone, *moment).astimezone(UTC)) == found


def test_opening_keeps_local_time_across_dst() -> None:
    """09:01 local is 08:01 UTC in winter and 07:01 UTC in summer."""
    tz = ZoneInfo(BERLIN)
    before = next_opening(local(BERLIN, 2026, 3, 27, 8, 0), WEEKDAYS, tz)
    after = next_opening(local(BERLIN, 2026, 3, 30, 8, 0), WEEKDAYS, tz)
    assert before == datetime(2026, 3, 27, 8, 1, tzinfo=UTC)
    assert after == datetime(2026, 3, 30, 7, 1, tzinfo=UTC)


def test_repeated_hour_is_open_on_both_passes() -> None:
    """On the fall-back night, 02:00-02:29 happens twice; both passes are in the window."""
    tz = ZoneInfo(BERLIN)
    first_pass_end = local(BERLIN, 2026, 10, 25, 2, 29, 59)  # CEST
    assert in_window(first_pass_end, EVERY_DAY_EARLY, tz)
    leaving = local(BERLIN, 2026, 10, 25, 2, 30)  # CEST, window closed until the clock goes back
    reopened = next_opening(leaving, EVERY_DAY_EARLY, tz)
    # 02:00 CET, the second pass (PEP 495 makes a fold=1 value unequal across zones).
    assert reopened == datetime(2026, 10, 25, 1, 0, tzinfo=UTC)
    assert reopened.astimezone(tz).fold == 1
    assert reopened - leaving.astimezone(UTC) == timedelta(minutes=30)


def test_day_intervals_on_fall_back_day() -> None:
    """Two intervals when the repeated hour leaves and re-enters the window."""
    tz = ZoneInfo(BERLIN)
    intervals = day_intervals(date(2026, 10, 25), EVERY_DAY_EARLY, tz)
    assert intervals == [
        (datetime(2026, 10, 24, 23, 30, tzinfo=UTC), datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
        (datetime(2026, 10, 25, 1, 0, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC)),
    ]


# (case, window, zone, local moment, inside?)
MEMBERSHIP = [
    ("09:00:59 closed", WEEKDAYS, BERLIN, (2026, 3, 4, 9, 0, 59), False),
    ("09:01 open", WEEKDAYS, BERLIN, (2026, 3, 4, 9, 1), True),
    ("16:59 open", WEEKDAYS, BERLIN, (2026, 3, 4, 16, 59), True),
    ("17:00 closed", WEEKDAYS, BERLIN, (2026, 3, 4, 17, 0), False),
    ("saturday closed", WEEKDAYS, BERLIN, (2026, 3, 7, 12, 0), False),
    ("saturday weekend open", WEEKEND, BERLIN, (2026, 3, 7, 11, 0), True),
    ("kolkata 09:01", WEEKDAYS, KOLKATA, (2026, 3, 4, 9, 1), True),
    ("kolkata 09:00", WEEKDAYS, KOLKATA, (2026, 3, 4, 9, 0), False),
]


@pytest.mark.parametrize(
    ("window", "zone", "moment", "inside"),
    [case[1:] for case in MEMBERSHIP],
    ids=[case[0] for case in MEMBERSHIP],
)
def test_in_window(window: Window, zone: str, moment: tuple, inside: bool) -> None:
    """Start inclusive; the end minute inclusive (closed from end + 1 minute)."""
    assert in_window(local(zone, *moment), window, ZoneInfo(zone)) is inside


def test_kolkata_opening_in_utc() -> None:
    """+05:30: 09:01 IST is 03:31 UTC."""
    tz = ZoneInfo(KOLKATA)
    found = next_opening(datetime(2026, 3, 4, 0, 0, tzinfo=UTC), WEEKDAYS, tz)
    assert found == datetime(2026, 3, 4, 3, 31, tzinfo=UTC)


def test_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        next_opening(datetime(2026, 3, 4, 10, 0), WEEKDAYS, ZoneInfo(BERLIN))


def test_calendar_answers_out_of_order_questions() -> None:
    """Questions in any order, years apart, get the answers next_opening gives."""
    tz = ZoneInfo(NEW_YORK)
    calendar = WindowCalendar(WEEKDAYS, tz)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    moments = [start + timedelta(hours=7 * i) for i in range(0, 2000, 37)]
    moments += list(reversed(moments))
    moments += [start + timedelta(days=365 * 4), start, start - timedelta(days=900)]
    for moment in moments:
        assert calendar.next_opening(moment) == next_opening(moment, WEEKDAYS, tz)


@pytest.mark.parametrize("zone", [BERLIN, NEW_YORK, AUCKLAND, KOLKATA, "Australia/Lord_Howe"])
def test_every_hour_of_a_year(zone: str) -> None:
    """Brute force: the opening is inside, and no earlier minute after the moment is."""
    tz = ZoneInfo(zone)
    calendar = WindowCalendar(WEEKDAYS, tz)
    moment = datetime(2026, 1, 1, 0, 17, tzinfo=UTC)
    while moment.year == 2026:
        found = calendar.next_opening(moment)
        assert found >= moment
        assert in_window(found, WEEKDAYS, tz)
        if found > moment:
            assert not in_window(found - timedelta(seconds=1), WEEKDAYS, tz)
            assert not in_window(moment, WEEKDAYS, tz)
        moment += timedelta(hours=5, minutes=13)
