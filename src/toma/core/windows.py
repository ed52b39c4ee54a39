"""Sending windows: when mail may arrive, on the recipient's own wall clock.

Theory of operation
-------------------

A :class:`~toma.config.Window` names weekdays and a time of day range, read on
the recipient's local wall clock. Both ends are *inclusive at minute
resolution*: ``start = "09:01"``, ``end = "16:59"`` means a message may go at
09:01:00 and at any moment of the minute 16:59 (16:59:59 included), and not at
17:00:00. As an interval of local time it is ``[start, end + 1 minute)``; an
``end`` of 23:59 therefore runs to midnight. Seconds in ``end`` are ignored: the
window is configured in minutes, and a tick that wakes at 16:59:30 should still
send what the owner allowed "until 16:59".

The one question everything else asks is :func:`next_opening`: the earliest
instant at or after a given instant whose local wall time lies in the window.
Local wall time is not a monotonic function of real time: on a spring-forward
day an hour of wall times never happens, on a fall-back day an hour happens
twice. So the window is worked out per local day as a set of UTC intervals:

- the instants where the wall clock reads ``start`` or the window's end are
  found with ``fold=0`` and ``fold=1`` (one instant for an ordinary time, two
  for a repeated time, and for a time in a gap two instants that bracket the
  jump);
- when the two folds disagree, the transition between them is found too;
- between consecutive points of that sorted set, "is this instant in the
  window" (:func:`in_window`, the ground truth) cannot change, so it is asked
  once per piece and adjacent open pieces are merged.

A start time that falls in a spring-forward gap thus opens the window at the
first real instant after the gap; a window that lies wholly in a gap does not
open that day; a repeated hour is open on both of its passes when its wall
times are in the window.

Planning asks for thousands of openings in the same few (window, zone) pairs,
and zoneinfo arithmetic is what costs. :class:`WindowCalendar` computes a run of
days' intervals once and answers each further question with a bisection over
UTC datetimes, without touching zoneinfo.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from toma.config import Window
from toma.timeutil import zone

_DAY = 86400
# A window has at least one weekday, so it opens within eight local days; the
# margin covers zones that skipped a date and windows lying in a DST gap.
_SEARCH_DAYS = 16
_CHUNK_DAYS = 28


def start_seconds(window: Window) -> int:
    """Where the window opens, in seconds since local midnight."""
    return window.start.hour * 3600 + window.start.minute * 60 + window.start.second


def end_seconds(window: Window) -> int:
    """Where the window closes (exclusive): the end of the minute ``window.end``."""
    return window.end.hour * 3600 + window.end.minute * 60 + 60


def in_window(moment: datetime, window: Window, tz: ZoneInfo) -> bool:
    """Whether ``moment`` (aware) is inside ``window`` on the wall clock of ``tz``."""
    local = _aware(moment).astimezone(tz)
    if local.weekday() not in window.days:
        return False
    seconds = local.hour * 3600 + local.minute * 60 + local.second
    start = start_seconds(window)
    end = end_seconds(window)
    # Microseconds matter only at the closing edge: 16:59:59.5 is still in.
    return start <= seconds < end


def next_opening(moment: datetime, window: Window, tz: ZoneInfo) -> datetime:
    """The earliest instant at or after ``moment`` inside ``window`` in ``tz``, in UTC.

    ``moment`` itself when it is inside the window. Raises ``ValueError`` for a
    naive ``moment`` or a window that never opens (no days).
    """
    moment = _aware(moment).astimezone(UTC)
    # A day early, so that the tail of a repeated (fall-back) hour dated the
    # previous local day is not missed.
    first = moment.astimezone(tz).date() - timedelta(days=1)
    for start, end in _intervals_from(first, window, tz, _SEARCH_DAYS + 1):
        if end > moment:
            return max(start, moment)
    raise ValueError(f"window {window.name!r} never opens")


def day_intervals(day: date, window: Window, tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """The UTC intervals ``[open, close)`` in which ``window`` is open on local date ``day``.

    Usually one; none on a day the window does not name (or that a DST gap
    swallows); two when a repeated hour leaves and re-enters the window.
    """
    if day.weekday() not in window.days:
        return []
    points: set[datetime] = set()
    for seconds in (start_seconds(window), end_seconds(window)):
        early = _resolve(day, seconds, 0, tz)
        late = _resolve(day, seconds, 1, tz)
        points.update((early, late))
        if early != late:
            points.add(_transition(min(early, late), max(early, late), tz))
    ordered = sorted(points)
    intervals: list[tuple[datetime, datetime]] = []
    for low, high in pairwise(ordered):
        if not in_window(low, window, tz):
            continue
        if intervals and intervals[-1][1] == low:
            intervals[-1] = (intervals[-1][0], high)
        else:
            intervals.append((low, high))
    return intervals


class WindowCalendar:
    """Openings of one window in one zone, computed once per run of days.

    Not a value: it memoises. The intervals are kept in chunks of local days,
    computed when first needed, so questions may come in any order (now, next
    year, last month) without recomputing. It holds only what the window and
    zone determine; the planner makes one per (window, zone) per plan.
    """

    __slots__ = ("_chunks", "tz", "window")

    def __init__(self, window: Window, tz: ZoneInfo) -> None:
        if not window.days:
            raise ValueError(f"window {window.name!r} never opens")
        self.window = window
        self.tz = tz
        self._chunks: dict[int, tuple[list[datetime], list[datetime]]] = {}

    def next_opening(self, moment: datetime) -> datetime:
        """As :func:`next_opening`; UTC ``moment`` values are the fast path."""
        if moment.tzinfo is not UTC:
            moment = _aware(moment).astimezone(UTC)
        # Intervals of local dates before the UTC date's eve all end before
        # ``moment`` (UTC offsets are under a day), so start from that eve.
        chunk = (moment.toordinal() - 1) // _CHUNK_DAYS
        for index in range(chunk, chunk + _SEARCH_DAYS):
            starts, ends = self._chunk(index)
            found = bisect_right(ends, moment)
            if found < len(ends):
                start = starts[found]
                return start if start > moment else moment
        raise ValueError(f"window {self.window.name!r} never opens")

    def _chunk(self, index: int) -> tuple[list[datetime], list[datetime]]:
        found = self._chunks.get(index)
        if found is None:
            starts: list[datetime] = []
            ends: list[datetime] = []
            first = date.fromordinal(max(1, index * _CHUNK_DAYS))
            for start, end in _intervals_from(first, self.window, self.tz, _CHUNK_DAYS):
                if ends and start < ends[-1]:
                    continue  # only a zone jumping back across the date line does this
                starts.append(start)
                ends.append(end)
            found = self._chunks[index] = (starts, ends)
        return found


def _intervals_from(
    first: date, window: Window, tz: ZoneInfo, days: int
) -> Iterator[tuple[datetime, datetime]]:
    for offset in range(days):
        yield from day_intervals(first + timedelta(days=offset), window, tz)


def _resolve(day: date, seconds: int, fold: int, tz: ZoneInfo) -> datetime:
    """The UTC instant for local ``day`` + ``seconds`` with the given fold (PEP 495)."""
    if seconds >= _DAY:
        day += timedelta(days=seconds // _DAY)
        seconds %= _DAY
    local = datetime.combine(day, time(), tz) + timedelta(seconds=seconds)
    return local.replace(fold=fold).astimezone(UTC)


def _transition(low: datetime, high: datetime, tz: ZoneInfo) -> datetime:
    """The first instant in ``(low, high]`` with ``high``'s UTC offset (to the second)."""
    target = high.astimezone(tz).utcoffset()
    lo, hi = 0, int((high - low).total_seconds())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (low + timedelta(seconds=mid)).astimezone(tz).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return low + timedelta(seconds=hi)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} has no time zone: planning needs aware datetimes")
    return moment


class Zones:
    """Time zones and window calendars, each made once per plan.

    Both planners ask for a contact's zone and calendar once per contact, at
    100k contacts; a :class:`~zoneinfo.ZoneInfo` lookup and a
    :class:`WindowCalendar` are each made once per zone name instead. Calendars
    are keyed by window *name*: one instance serves one plan, whose windows
    have one meaning each.
    """

    def __init__(self, default: str) -> None:
        self.default_name = default
        self.default = zone(default)
        self._zones: dict[str, tuple[str, ZoneInfo]] = {"": (default, self.default)}
        self._calendars: dict[tuple[str, str], WindowCalendar] = {}

    def of(self, timezone: str) -> tuple[str, ZoneInfo]:
        """The zone name and zone for a contact's ``timezone`` ("" for the owner's)."""
        found = self._zones.get(timezone)
        if found is None:
            try:
                found = (timezone, zone(timezone))
            except ValueError:
                # Contacts are validated when added; a zone that has since
                # vanished from the tz database reads as the owner's.
                found = (self.default_name, self.default)
            self._zones[timezone] = found
        return found

    def calendar(self, window: Window, name: str, tz: ZoneInfo) -> WindowCalendar:
        key = (window.name, name)
        found = self._calendars.get(key)
        if found is None:
            found = self._calendars[key] = WindowCalendar(window, tz)
        return found
