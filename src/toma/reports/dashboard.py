"""What the dashboard's pages show: read functions over the store, "now" passed in.

Each returns plain frozen values; :mod:`toma.web.pages` renders them. They read
documents through the records layer and the other reports (plan, status, log),
so a page and the command that answers the same question never disagree.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any

from toma.config import Config
from toma.core.contacts import Contact
from toma.exits import Exit
from toma.reports.plan import Row
from toma.reports.status import StatusReport
from toma.store import Reader
from toma.store.records import conversations, outbox

SHOWN_CONTACTS = 200  # rows of the contacts list; a search narrows the rest
ANSWERED_BY = ("sent",)  # an outgoing message in this state answers a reply before it


@dataclass(frozen=True)
class Moment:
    at: datetime
    contact: str  # for mail from nobody known: its sender
    kind: str
    subject: str
    detail: str = ""
    known: bool = True  # tied to a contact


@dataclass(frozen=True)
class Traffic:
    """Every message sent and received, oldest first, and each contact's latest.

    Derived from the whole outbox and inbox record; a page keeps it until they change.
    """

    sent: tuple[Moment, ...]
    received: tuple[Moment, ...]
    last_out: Mapping[str, datetime]  # each contact's latest message sent
    last_seen: Mapping[str, datetime]  # each contact's latest message either way


def _moment(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def sent_moment(doc: Mapping[str, Any]) -> Moment | None:
    """An outbox record as a moment of the traffic, if it went out."""
    if doc.get("state") not in ANSWERED_BY:
        return None
    at = _moment(doc.get("sent_at"))
    if at is None:
        return None
    subject = doc.get("subject") or doc.get("ref", "")
    return Moment(at, doc.get("contact", ""), doc.get("kind", ""), subject, doc.get("ref", ""))


def received_moment(doc: Mapping[str, Any]) -> Moment | None:
    """An inbox record as a moment of the traffic (not mail imported as history)."""
    at = _moment(doc.get("received_at"))
    if at is None or doc.get("history"):
        return None
    contact = doc.get("contact") or ""
    return Moment(
        at,
        contact or doc.get("sender") or "",
        doc.get("kind", ""),
        doc.get("subject", ""),
        "; ".join(doc.get("actions") or []),
        known=bool(contact),
    )


def assemble(sent: Iterable[Moment], received: Iterable[Moment]) -> Traffic:
    """The traffic of these moments: in time order, with each contact's latest."""
    when = attrgetter("at")
    outgoing = tuple(sorted(sent, key=when))
    incoming = tuple(sorted(received, key=when))
    last_out: dict[str, datetime] = {}
    for m in outgoing:  # in time order: the last one seen is the latest
        last_out[m.contact] = m.at
    last_seen = dict(last_out)
    for m in incoming:
        if m.known and (m.contact not in last_seen or m.at > last_seen[m.contact]):
            last_seen[m.contact] = m.at
    return Traffic(outgoing, incoming, last_out, last_seen)


def traffic(reader: Reader) -> Traffic:
    """The traffic of the whole outbox and inbox record."""
    sent = (sent_moment(doc) for doc in outbox.documents(reader))
    received = (received_moment(doc) for doc in conversations.documents(reader))
    return assemble((m for m in sent if m is not None), (m for m in received if m is not None))


@dataclass(frozen=True)
class Today:
    since: datetime
    went_out: tuple[Moment, ...]  # newest first
    came_in: tuple[Moment, ...]
    unanswered: tuple[Moment, ...]  # replies with no message of the owner's after them
    bounces: tuple[Moment, ...]
    status: StatusReport
    held: tuple[str, ...]  # sequences the last tick held (their file has a problem)


def _since(moments: tuple[Moment, ...], start: datetime) -> tuple[Moment, ...]:
    first = bisect_left(moments, start, key=lambda m: m.at)
    return tuple(reversed(moments[first:]))


def today(
    seen: Traffic, status: StatusReport, *, now: datetime, since: timedelta = timedelta(days=1)
) -> Today:
    """What went out and came in since ``now - since``, and what needs the owner.

    A reply is answered once a message to its sender went after it.
    """
    start = now - since
    unanswered = [
        m
        for m in seen.received
        if m.kind == "reply" and m.known and seen.last_out.get(m.contact, m.at) <= m.at
    ]
    bounces = [m for m in seen.received if m.kind == "bounce" and m.at >= now - timedelta(days=7)]
    return Today(
        since=start,
        went_out=_since(seen.sent, start),
        came_in=_since(seen.received, start),
        unanswered=tuple(reversed(unanswered)),
        bounces=tuple(reversed(bounces)),
        status=status,
        held=tuple((status.last_tick or {}).get("held") or ()),
    )


@dataclass(frozen=True)
class ContactRow:
    contact: Contact
    last_contact: datetime | None
    next_planned: Row | None


@dataclass(frozen=True)
class ContactList:
    rows: tuple[ContactRow, ...]
    matching: int  # how many match; at most SHOWN_CONTACTS are in rows
    tags: tuple[str, ...]  # every tag in use, for the filter


def next_sends(rows: Iterable[Row]) -> dict[str, Row]:
    """Each contact's first planned send (``rows`` in time order)."""
    first: dict[str, Row] = {}
    for row in rows:
        first.setdefault(row.contact, row)
    return first


def contact_list(
    contacts: Iterable[Contact],
    seen: Traffic,
    upcoming: Mapping[str, Row],
    *,
    query: str = "",
    tag: str = "",
    status: str = "",
    shown: int = SHOWN_CONTACTS,
) -> ContactList:
    """Contacts matching ``query`` (address, name or company), ``tag`` and ``status``."""
    needle = query.strip().casefold()
    tags: set[str] = set()
    matching: list[Contact] = []
    for contact in contacts:
        tags.update(contact.tags)
        if tag and tag not in contact.tags:
            continue
        if status and contact.status.value != status:
            continue
        if needle and not any(
            needle in text.casefold() for text in (contact.email, contact.name, contact.company)
        ):
            continue
        matching.append(contact)
    matching.sort(key=lambda c: c.email)
    rows = tuple(
        ContactRow(c, seen.last_seen.get(c.email), upcoming.get(c.email)) for c in matching[:shown]
    )
    return ContactList(rows, len(matching), tuple(sorted(tags)))


@dataclass(frozen=True)
class Health:
    ok: bool
    reason: str  # short, for a monitor; "ok" when ok
    last_tick: datetime | None = None
    reasons: tuple[str, ...] = field(default_factory=tuple)


def health(report: StatusReport, config: Config, *, now: datetime) -> Health:
    """Healthy when the daemon ticked recently and nothing needs the owner.

    Recently: within three tick intervals and a minute (a tick may run long, and
    one may be skipped while the machine sleeps).
    """
    tick = report.last_tick
    ticked = _moment(tick.get("now")) if tick else None
    if ticked is None:
        return Health(False, "no tick yet")
    stale_after = 3 * config.daemon.tick_every.approx() + timedelta(minutes=1)
    if now - ticked > stale_after:
        minutes = int((now - ticked).total_seconds() // 60)
        return Health(False, f"last tick {minutes} min ago", ticked)
    code, reasons = report.attention(now)
    if code is Exit.NEEDS_YOU:
        return Health(False, "needs attention: " + "; ".join(reasons), ticked, tuple(reasons))
    return Health(True, "ok", ticked, tuple(reasons))


def day_of(row: Row) -> str:
    """The owner's day a plan row goes on ("Mon 2026-03-02"): the Plan page's heading."""
    return row.at_owner.strftime("%a %Y-%m-%d")
