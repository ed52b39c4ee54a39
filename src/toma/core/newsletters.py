"""Newsletter issues: one Markdown file each, with a purpose and an audience.

Theory of operation
-------------------

An issue is a file in the newsletters folder, written like a template::

    ---
    subject: "What I learned this year, {{ contact.first_name }}"
    purpose: Share three lessons from this year's projects and ask what is ahead for them.
    audience: (client or past-client) and not no-news
    send_at: 2026-12-08          # or 2026-12-08T10:00:00+01:00; absent: when sent
    layout: default              # from templates/layouts
    ---
    Hi {{ contact.first_name }}, …

``purpose`` is required and may not be empty: an issue nobody can say the point
of should not go out, and writing the sentence down is the cheapest check there
is. ``audience`` is an expression over tags and fields (:mod:`toma.core.audience`);
without one the issue is for every active contact. Any other key is refused:
a misspelt ``audiance:`` would otherwise silently send to everyone.

``send_at`` is a moment with a UTC offset, or a date. A date means "that day,
in each recipient's own zone": the issue goes at the first opening of the
sending window on or after that day, as everything toma sends does
(:func:`send_time`). A moment is the same, from that moment on.

Issues are rendered by :class:`toma.mail.render.Templates` over the newsletters
folder, with the layouts of the templates folder; templates see ``newsletter``
(``name``, ``purpose``) besides ``contact``, ``sender`` and the unsubscribe links.

At most once: each (issue, contact) has a key (:func:`newsletter_key`). Once
the outbox holds an attempted record for it the contact is done, so a send that
was killed half-way resumes with exactly :func:`pending` — the ones not yet
tried — and an edit of the audience afterwards never sends anyone a second copy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

from toma.config import Window
from toma.core.audience import Audience
from toma.core.contacts import Contact
from toma.core.messages import DEFAULT_LAYOUT
from toma.core.outbox import OutboxRecord, ever_attempted
from toma.core.windows import next_opening

if TYPE_CHECKING:
    from pathlib import Path  # names the files a value came from; never opened here

KEYS: Final = ("subject", "purpose", "audience", "send_at", "layout", "pitch")
KEY_PREFIX: Final = "newsletter"
PURPOSE_REQUIRED: Final = "purpose is required: say why this issue is sent and what the reader gets"


@dataclass(frozen=True)
class Newsletter:
    """One issue, checked: it compiles, has a purpose, and its audience parses."""

    name: str  # relative to the newsletters folder: "2026-12-year-in-review.md"
    subject: str  # as written, Jinja included
    purpose: str
    audience: Audience
    send_at: datetime | date | None  # an aware moment, a day, or "when sent"
    file: Path
    folder: Path  # the newsletters folder
    layouts: Path  # the layouts folder it is framed from
    layout: str = DEFAULT_LAYOUT

    def view(self) -> dict[str, Any]:
        """What templates see as ``newsletter``."""
        return {"name": self.name, "purpose": self.purpose}

    def not_before(self, tz: ZoneInfo) -> datetime | None:
        """The earliest moment it may reach someone in zone ``tz``; None: no schedule."""
        if self.send_at is None:
            return None
        if isinstance(self.send_at, datetime):
            return self.send_at
        return datetime.combine(self.send_at, time(0), tzinfo=tz)


def newsletter_key(name: str, contact: Contact | str) -> str:
    """The idempotency key of issue ``name`` for ``contact``: ``newsletter:NAME:EMAIL``.

    Unambiguous although a name may hold ":": a normalised address never does,
    so the key splits at its last colon.
    """
    email = contact.email if isinstance(contact, Contact) else contact
    return f"{KEY_PREFIX}:{name}:{email}"


def split_key(key: str) -> tuple[str, str] | None:
    """(issue name, address) of a newsletter key; None for any other key."""
    prefix = f"{KEY_PREFIX}:"
    if not key.startswith(prefix):
        return None
    name, _, email = key[len(prefix) :].rpartition(":")
    return (name, email) if name and email else None


def recipients(newsletter: Newsletter, contacts: Iterable[Contact]) -> list[Contact]:
    """The active contacts the audience selects, in the order given, each once.

    Paused, unsubscribed and bounced contacts never receive an issue, whatever
    the audience says.
    """
    chosen: list[Contact] = []
    seen: set[str] = set()
    audience = newsletter.audience
    for contact in contacts:
        if contact.active and contact.email not in seen and audience.matches(contact):
            seen.add(contact.email)
            chosen.append(contact)
    return chosen


def pending(
    newsletter: Newsletter, contacts: Iterable[Contact], history: Mapping[str, OutboxRecord]
) -> list[Contact]:
    """The :func:`recipients` with no attempted record for their key: still to send.

    ``history`` maps keys to outbox records. A record still ``planned`` is
    pending; one ``sending``, ``sent``, ``unknown``, ``failed`` or ``skipped``
    is not — an interrupted send is reported by ``toma status``, never repeated.
    """
    name = newsletter.name
    left: list[Contact] = []
    for contact in recipients(newsletter, contacts):
        record = history.get(newsletter_key(name, contact))
        if record is None or not ever_attempted(record.state):
            left.append(contact)
    return left


def send_time(newsletter: Newsletter, *, now: datetime, window: Window, tz: ZoneInfo) -> datetime:
    """When the issue can go to a recipient in zone ``tz``: the first opening of
    ``window`` at or after both ``now`` and the issue's ``send_at``."""
    start = newsletter.not_before(tz)
    moment = now if start is None or start < now else start
    return next_opening(moment, window, tz)
