"""The plan as iCalendar: one event per planned send (``/plan.ics``, ``toma plan --ics``).

icalendar makes each event; a plan of thousands of sends takes it seconds, so
:func:`plan_calendar` takes an optional cache of events already made (by row:
a row that did not change makes the same event), and joins them into the
calendar. DTSTAMP is when toma first wrote the event, as RFC 5545 asks of a
published calendar.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, MutableMapping
from datetime import UTC, datetime, timedelta

from icalendar import Calendar, Event

from toma.reports.plan import Row

EVENT_LENGTH = timedelta(minutes=15)
_END = b"END:VCALENDAR\r\n"


def plan_event(row: Row, *, stamp: datetime) -> bytes:
    event = Event()
    # Stable across fetches, so a calendar updates an event rather than adding one.
    uid = hashlib.sha256(f"{row.contact}\0{row.kind}\0{row.ref}".encode()).hexdigest()[:32]
    event.add("uid", f"{uid}@toma")
    event.add("dtstamp", stamp.astimezone(UTC))
    start = row.at.astimezone(UTC)
    event.add("dtstart", start)
    event.add("dtend", start + EVENT_LENGTH)
    event.add("summary", f"{row.kind} {row.ref} to {row.contact}")
    event.add(
        "description",
        f"To {row.contact} at {row.at_theirs} their time ({row.at_yours} yours).\n"
        f"{row.waits}".strip(),
    )
    event.add("categories", [row.kind])
    data: bytes = event.to_ical()
    return data


def plan_calendar(
    rows: Iterable[Row], *, now: datetime, made: MutableMapping[Row, bytes] | None = None
) -> bytes:
    """A VCALENDAR whose events are the sends of ``rows`` at their moment (UTC).

    ``made`` keeps the events between calls; rows no longer planned leave it.
    """
    calendar = Calendar()
    calendar.add("prodid", "-//toma//plan//EN")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", "toma: planned mail")
    frame: bytes = calendar.to_ical()
    events = {} if made is None else made
    planned = list(rows)
    body = []
    for row in planned:
        event = events.get(row)
        if event is None:
            event = events[row] = plan_event(row, stamp=now)
        body.append(event)
    if made is not None:
        for gone in set(made) - set(planned):
            del made[gone]
    head = frame[: -len(_END)] if frame.endswith(_END) else frame
    return head + b"".join(body) + _END
