"""How far a wall clock can move ahead of UTC over a span: the slack of "N days later".

A step "3 days" after a moment is 3 days later on the contact's wall clock
(:func:`toma.core.turns._wall_after`). In UTC that is 3 days less whatever the
zone's UTC offset rose in between: an hour when summer time begins, a whole
day when Samoa moved across the date line (December 2011). A lower bound of
due times (:mod:`toma.core.earliest`, which a store turns into an indexed
question) must subtract the largest rise any contact's zone can make.

Any zone may be a contact's, so the rise is the largest of every zone of the
tz database over the span that matters, read from the database itself: an
hour in the years around now, where the rarest change of all (a day) would
make every tick read the contacts due in the next 25 hours instead of the next
two. :data:`LEAST` is the floor, for a span without any summer time.

Offsets are sampled a week apart: a rise is seen as soon as the offsets on
either side of it differ, and only an offset held for less than a week (none
in the tz database since 2011) could be missed. Spans longer than
:data:`LONGEST_SPAN` get :data:`RAREST`, the day and an hour once always
assumed. A span is reckoned in whole weeks, so one reckoning serves a week
of ticks.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

LEAST = timedelta(hours=1)
RAREST = timedelta(days=1, hours=1)  # a zone that jumped the date line, and an hour
LONGEST_SPAN = timedelta(days=2 * 366)
SAMPLE = timedelta(days=7)
_EPOCH = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday: spans are reckoned in its weeks


def largest_rise(start: datetime, end: datetime) -> timedelta:
    """The most any zone's UTC offset rises from one moment to a later one, both between
    ``start`` and ``end`` (aware); never less than :data:`LEAST`."""
    if end - start > LONGEST_SPAN:
        return RAREST
    first = (start - _EPOCH) // SAMPLE
    last = -((_EPOCH - end) // SAMPLE)  # rounded up
    return max(LEAST, _rise_over_weeks(first, last))


@functools.lru_cache(maxsize=16)
def _rise_over_weeks(first: int, last: int) -> timedelta:
    moments = [_EPOCH + week * SAMPLE for week in range(first, last + 1)]
    worst = timedelta(0)
    for name in sorted(available_timezones()):
        try:
            zone = ZoneInfo(name)
            offsets = [moment.astimezone(zone).utcoffset() for moment in moments]
        except (OSError, ValueError, OverflowError):
            return RAREST  # a zone that cannot be read: assume the rarest change
        lowest: timedelta | None = None
        for offset in offsets:
            if offset is None:
                continue
            lowest = offset if lowest is None else min(lowest, offset)
            worst = max(worst, offset - lowest)
    return worst
