"""What the dashboard's pages show: read functions over the store, "now" passed in.

Each returns plain frozen values; :mod:`toma.web.pages` renders them. They read
documents through the records layer and the other reports (plan, status, log),
so a page and the command that answers the same question never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from toma.config import Config
from toma.core.contacts import Contact
from toma.exits import Exit
from toma.reports.plan import Row
from toma.reports.status import StatusReport, gather
from toma.store import CONVERSATIONS, MESSAGES, Reader
from toma.store.records.contacts import all_contacts

SHOWN_CONTACTS = 200  # rows of the contacts list; a search narrows the rest
ANSWERED_BY = ("sent",)  # an outgoing message in this state answers a reply before it


@dataclass(frozen=True)
class Moment:
    at: datetime
    contact: str
    kind: str
    subject: str
    detail: str = ""


@dataclass(frozen=True)
class Today:
    since: datetime
    went_out: tuple[Moment, ...]
    came_in: tuple[Moment, ...]
    unanswered: tuple[Moment, ...]  # replies with no message of the owner's after them
    bounces: tuple[Moment, ...]
    status: StatusReport
    held: tuple[str, ...]  # sequences the last tick held (their file has a problem)


def _moment(text: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def today(reader: Reader, *, now: datetime, since: timedelta = timedelta(days=1)) -> Today:
    """What went out and came in since ``now - since``, and what needs the owner."""
    start = now - since
    out: list[Moment] = []
    last_out: dict[str, datetime] = {}
    for _key, doc in reader.all(MESSAGES):
        at = _moment(doc.get("sent_at"))
        if at is None or doc.get("state") not in ANSWERED_BY:
            continue
        contact = doc.get("contact", "")
        if at > last_out.get(contact, datetime.min.replace(tzinfo=UTC)):
            last_out[contact] = at
        if at >= start:
            subject = doc.get("subject") or doc.get("ref", "")
            out.append(Moment(at, contact, doc.get("kind", ""), subject, doc.get("ref", "")))
    came: list[Moment] = []
    unanswered: list[Moment] = []
    bounces: list[Moment] = []
    for _key, doc in reader.all(CONVERSATIONS):
        at = _moment(doc.get("received_at"))
        if at is None or doc.get("history"):
            continue
        contact = doc.get("contact") or doc.get("sender") or ""
        kind = doc.get("kind", "")
        moment = Moment(
            at, contact, kind, doc.get("subject", ""), "; ".join(doc.get("actions") or [])
        )
        if at >= start:
            came.append(moment)
        if kind == "reply" and doc.get("contact") and last_out.get(contact, at) <= at:
            unanswered.append(moment)
        if kind == "bounce" and at >= now - timedelta(days=7):
            bounces.append(moment)
    status = gather(reader)
    held = tuple((status.last_tick or {}).get("held") or ())
    newest = lambda m: m.at  # noqa: E731
    return Today(
        since=start,
        went_out=tuple(sorted(out, key=newest, reverse=True)),
        came_in=tuple(sorted(came, key=newest, reverse=True)),
        unanswered=tuple(sorted(unanswered, key=newest, reverse=True)),
        bounces=tuple(sorted(bounces, key=newest, reverse=True)),
        status=status,
        held=held,
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


def last_contacts(reader: Reader) -> dict[str, datetime]:
    """Each contact's latest message either way (sent, or received)."""
    latest: dict[str, datetime] = {}

    def seen(contact: Any, at: datetime | None) -> None:
        if contact and at is not None and (contact not in latest or at > latest[contact]):
            latest[contact] = at

    for _key, doc in reader.all(MESSAGES):
        if doc.get("state") == "sent":
            seen(doc.get("contact"), _moment(doc.get("sent_at")))
    for _key, doc in reader.all(CONVERSATIONS):
        seen(doc.get("contact"), _moment(doc.get("received_at")))
    return latest


def next_sends(rows: Iterable[Row]) -> dict[str, Row]:
    """Each contact's first planned send (``rows`` in time order)."""
    first: dict[str, Row] = {}
    for row in rows:
        first.setdefault(row.contact, row)
    return first


def contact_list(
    reader: Reader,
    plan: Iterable[Row],
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
    for contact in all_contacts(reader):
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
    latest = last_contacts(reader) if matching else {}
    upcoming = next_sends(plan)
    rows = tuple(
        ContactRow(c, latest.get(c.email), upcoming.get(c.email)) for c in matching[:shown]
    )
    return ContactList(rows, len(matching), tuple(sorted(tags)))


@dataclass(frozen=True)
class Health:
    ok: bool
    reason: str  # short, for a monitor; "ok" when ok
    last_tick: datetime | None = None
    reasons: tuple[str, ...] = field(default_factory=tuple)


def health(reader: Reader, config: Config, *, now: datetime) -> Health:
    """Healthy when the daemon ticked recently and nothing needs the owner.

    Recently: within three tick intervals and a minute (a tick may run long, and
    one may be skipped while the machine sleeps).
    """
    report = gather(reader)
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


def by_day(rows: Iterable[Row]) -> Mapping[str, list[Row]]:
    """Plan rows grouped by the owner's day ("Mon 2026-03-02"), in order."""
    days: dict[str, list[Row]] = {}
    for row in rows:
        days.setdefault(row.at_owner.strftime("%a %Y-%m-%d"), []).append(row)
    return days
