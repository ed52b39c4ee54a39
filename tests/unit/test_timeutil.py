"""Human durations: what they mean, and the range they must stay in."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from toma.timeutil import MAX_DURATION, Duration, parse_duration


@pytest.mark.parametrize(
    ("text", "months", "seconds"),
    [
        ("72h", 0, 72 * 3600),
        ("1mo", 1, 0),
        ("10y", 120, 0),
        ("3650d", 0, 3650 * 86400),
        ("0d", 0, 0),
    ],
)
def test_durations_within_ten_years_parse(text: str, months: int, seconds: int) -> None:
    duration = parse_duration(text)
    assert (duration.months, duration.seconds) == (months, seconds)


@pytest.mark.parametrize(
    "text",
    ["99999999999999y", "11y", "3660d", "121mo", "9" * 5000 + "s", "10y1d", "530w"],
)
def test_durations_beyond_ten_years_are_refused(text: str) -> None:
    """A duration no plan can mean is a located error now, not an OverflowError every tick."""
    with pytest.raises(ValueError, match="between 0 and 10 years") as caught:
        parse_duration(text)
    assert len(str(caught.value)) < 200


def test_signed_durations_have_the_same_range() -> None:
    assert parse_duration("-10y", signed=True).months == -120
    with pytest.raises(ValueError, match="10 years"):
        parse_duration("-11y", signed=True)


def test_the_longest_duration_still_has_room_in_the_calendar() -> None:
    """Ten years after any moment toma plans in is a real moment."""
    assert MAX_DURATION.after(datetime(2999, 12, 31, tzinfo=UTC)).year == 3009
    assert parse_duration("10y") <= MAX_DURATION
    assert isinstance(MAX_DURATION, Duration)
