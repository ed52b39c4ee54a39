"""Time: clocks, human durations, ISO moments and zones.

Only the shell (daemon, CLI) reads the clock; everything else is handed an aware
``datetime``. A :class:`Clock` is what the shell reads, so tests can use a
:class:`FixedClock` and never sleep.
"""

from __future__ import annotations

import calendar
import functools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from toma.errors import TomaError


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class FixedClock:
    """A clock that says what it is told; ``advance`` moves it."""

    moment: datetime

    def now(self) -> datetime:
        return self.moment

    def advance(self, by: timedelta) -> None:
        self.moment += by


_UNITS = {
    "s": 1,
    "sec": 1,
    "min": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
}
_MONTH_UNITS = {"mo": 1, "y": 12}
# Durations are kept within ten years either way: nothing toma plans needs more,
# and a longer one ("99999999999999y") overflows the calendar arithmetic of
# every plan it takes part in. A month counts as an average month here
# (365.25 / 12 days), so that "10y" and "3652d" are both just inside.
_MONTH_SECONDS = 2_629_800
_LONGEST_SECONDS = 3653 * 86400
_LONGEST_DIGITS = 12  # no number of any unit within the range has more
_PART = re.compile(r"(\d+)\s*(mo|min|sec|[smhdwy])", re.IGNORECASE)
_WHOLE = re.compile(r"^\s*([+-]?)\s*((?:\d+\s*(?:mo|min|sec|[smhdwy])\s*)+)$", re.IGNORECASE)


@dataclass(frozen=True, order=True)
class Duration:
    """A human duration: whole months (calendar arithmetic) plus seconds.

    "1mo" after 31 January is the last day of February, as a person would mean;
    it cannot be a ``timedelta``. A negative duration ("-3d") comes before.
    """

    months: int = 0
    seconds: int = 0
    text: str = ""

    @property
    def negative(self) -> bool:
        return self.months < 0 or self.seconds < 0

    def after(self, moment: datetime) -> datetime:
        """``moment`` moved by this duration."""
        return add_months(moment, self.months) + timedelta(seconds=self.seconds)

    def approx(self) -> timedelta:
        """Length for comparisons where a month may be taken as 30 days."""
        return timedelta(days=30 * self.months, seconds=self.seconds)

    def __str__(self) -> str:
        return self.text or f"{self.months}mo{self.seconds}s"


class DurationRangeError(ValueError):
    """A well-formed duration outside the range a duration may have."""


MAX_DURATION = Duration(months=120, text="10y")
"""The longest duration :func:`parse_duration` accepts (and the most negative, negated)."""


def _shown(text: str) -> str:
    """``text`` quoted for an error message, cut short: the text may be huge."""
    return repr(text) if len(text) <= 40 else repr(text[:40]) + "…"


def parse_duration(text: str, *, signed: bool = False) -> Duration:
    """Parse "72h", "3d", "2w", "1mo", "1d12h"; with ``signed``, also "-3d", "+7d".

    A duration is at most ten years (:data:`MAX_DURATION`) either way. Raises
    ``ValueError`` with a message fit to show the user; callers add where.
    """
    if not isinstance(text, str):
        raise ValueError(f'expected a duration such as "3d", got {text!r:.40}')  # noqa: TRY004 - callers locate ValueErrors
    match = _WHOLE.match(text)
    if not match:
        raise ValueError(
            f"{_shown(text)} is not a duration: use a number and a unit, "
            'such as "72h", "3d", "2w", "1mo" (units: min, h, d, w, mo, y)'
        )
    sign_text, body = match.groups()
    if sign_text and not signed:
        raise ValueError(f"{_shown(text)}: a sign is not allowed here")
    out_of_range = DurationRangeError(
        f"{_shown(text)} is too long: a duration must be between "
        + ("-10 years and 10 years" if signed else "0 and 10 years")
    )
    months = seconds = 0
    for number, unit in _PART.findall(body):
        if len(number) > _LONGEST_DIGITS:
            raise out_of_range
        unit = unit.lower()
        if unit in _MONTH_UNITS:
            months += int(number) * _MONTH_UNITS[unit]
        else:
            seconds += int(number) * _UNITS[unit]
    if months * _MONTH_SECONDS + seconds > _LONGEST_SECONDS:
        raise out_of_range
    sign = -1 if sign_text == "-" else 1
    return Duration(months=sign * months, seconds=sign * seconds, text=text.strip())


def add_months(moment: datetime, months: int) -> datetime:
    if not months:
        return moment
    index = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def parse_moment(text: str) -> datetime:
    """An ISO 8601 moment that must carry a UTC offset ("2026-03-02T09:30+01:00")."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise TomaError(
            f"{text!r} is not an ISO 8601 moment (such as 2026-03-02T09:30:00+01:00)"
        ) from None
    if moment.tzinfo is None:
        raise TomaError(f"{text!r} has no UTC offset: add one, such as +01:00 or Z")
    return moment


def stored_moment(text: str | None) -> datetime | None:
    """A moment as the store holds it (ISO 8601 with an offset), in UTC; None for none.

    Hot: the planner's input decodes hundreds of thousands of them. Moments
    written in one tick repeat, so parsed ones are cached (and shared).
    """
    if not text:
        return None
    if type(text) is str:
        moment = _stored_moment(text)
        if moment is not None:
            return moment
    return parse_moment(text).astimezone(UTC)


@functools.lru_cache(maxsize=4096)
def _stored_moment(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise TomaError(f"{text!r} is not a date (use YYYY-MM-DD)") from None


def zone(name: str) -> ZoneInfo:
    """The IANA zone called ``name``; ``ValueError`` with a useful message if none is."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not a time zone: use an IANA name such as Europe/Berlin"
        ) from None


def is_zone(name: str) -> bool:
    try:
        zone(name)
    except ValueError:
        return False
    return True


def to_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
