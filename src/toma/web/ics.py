"""The plan as iCalendar: one event per planned send (``/plan.ics``, ``toma plan --ics``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from icalendar import Calendar, Event

from toma.reports.plan import Row

EVENT_LENGTH = timedelta(minutes=15)


def plan_calendar(rows: Iterable[Row], *, now: datetime) -> bytes:
    """A VCALENDAR whose events are the sends of ``rows`` at their moment (UTC)."""
    calendar = Calendar()
    calendar.add("prodid", "-//toma//plan//EN")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", "toma: planned mail")
    stamp = now.astimezone(UTC)
    for row in rows:
        event = Event()
        # Stable across fetches, so a calendar updates an event rather than adding one.
        uid = hashlib.sha256(f"{row.contact}\0{row.kind}\0{row.ref}".encode()).hexdigest()[:32]
        event.add("uid", f"{uid}@toma")
        event.add("dtstamp", stamp)
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
        calendar.add_component(event)
    data: bytes = calendar.to_ical()
    return data
