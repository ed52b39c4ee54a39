"""Sending a newsletter issue: who still gets it, when, and how it went.

An issue goes out only because the owner said so (``toma newsletter send``),
"from now, in each recipient's window" (:func:`timetable`): at once to those
whose window is open, and by the daemon's ticks to the others as theirs opens
— from ``send_at`` on, when it is still ahead. Every recipient has a key
(:func:`~toma.core.newsletters.newsletter_key`), so a send that was killed resumes
with exactly the people it had not reached, and nobody gets two copies.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from toma.config import Config
from toma.core.contacts import Contact
from toma.core.newsletters import Newsletter, newsletter_key, pending, send_time
from toma.core.outbox import MessageState, OutboxRecord, advance, new_record
from toma.errors import TomaError
from toma.mail.compose import Job
from toma.project.newsletters import load_newsletter
from toma.store import CONTACTS, CONVERSATIONS, MESSAGES, SYNC, Reader, Store
from toma.store.records.query import keyed_from, matching
from toma.timeutil import iso

PREFIX = "newsletter:"


def load(config: Config, name_or_path: str) -> Newsletter:
    """An issue by its name in the newsletters folder, or by a path to it."""
    from pathlib import Path

    folder = config.paths.newsletters
    path = Path(name_or_path)
    if not path.is_absolute() and not path.exists():
        path = folder / name_or_path
    if not path.exists():
        raise TomaError("no such newsletter issue", file=path)
    return load_newsletter(
        path.resolve(),
        folder=folder.resolve(),
        templates_layouts=config.paths.templates / "layouts",
    )


def schedule(store: Store, newsletter: Newsletter, *, now: datetime) -> None:
    """Let the daemon send ``newsletter`` from its ``send_at`` (or at once) on."""
    with store.transaction() as tx:
        tx.put(SYNC, PREFIX + newsletter.name, {"name": newsletter.name, "scheduled_at": iso(now)})


def scheduled(reader: Reader) -> list[str]:
    """The issues scheduled, by name: asked at every tick, of a table that also holds a
    document per contact written to by hand."""
    return sorted(doc["name"] for _key, doc in keyed_from(reader, SYNC, PREFIX))


@dataclass(frozen=True)
class Planned:
    record: OutboxRecord  # already `sending`
    job: Job


@dataclass(frozen=True)
class Timing:
    """When the issue may go to one recipient: their window's first opening from now on."""

    contact: Contact
    zone: ZoneInfo
    at: datetime

    def now(self, now: datetime) -> bool:
        return self.at <= now


def timetable(
    newsletter: Newsletter,
    config: Config,
    contacts: Iterable[Contact],
    history: Mapping[str, OutboxRecord],
    *,
    now: datetime,
) -> list[Timing]:
    """Every recipient still to get ``newsletter``, and when: the one rule of its timing.

    "Now" means "from now, in each recipient's window": a recipient whose
    window is open gets it at ``now``, the others when theirs next opens
    (and never before the issue's ``send_at``). ``toma newsletter send``,
    its dry run and the daemon's ticks all read it from here.
    """
    window = config.windows["default"]
    out: list[Timing] = []
    for contact in pending(newsletter, contacts, history):
        zone = ZoneInfo(contact.timezone or config.owner.timezone)
        out.append(Timing(contact, zone, send_time(newsletter, now=now, window=window, tz=zone)))
    return out


def plan_issue(
    newsletter: Newsletter,
    config: Config,
    contacts: Iterable[Contact],
    history: Mapping[str, OutboxRecord],
    *,
    now: datetime,
) -> list[Planned]:
    """The messages of ``newsletter`` to send at ``now``: to those whose time has come.

    The others wait for their window (see :func:`timetable`); the daemon sends
    them at the tick that finds it open.
    """
    out: list[Planned] = []
    for timing in timetable(newsletter, config, contacts, history, now=now):
        if not timing.now(now):
            continue
        contact = timing.contact
        key = newsletter_key(newsletter.name, contact)
        old = history.get(key)
        record = (
            advance(old, MessageState.SENDING, at=now)
            if old
            else new_record(
                key=key,
                contact=contact.email,
                kind="newsletter",
                ref=newsletter.name,
                template=newsletter.name,
                due_at=now,
                at=now,
                state=MessageState.SENDING,
            )
        )
        out.append(
            Planned(
                record,
                Job(
                    key=key,
                    template=newsletter.name,
                    contact=contact.to_doc(),
                    now=now,
                    extra={"newsletter": newsletter.view()},
                    unsubscribe="footer",
                    newsletter=True,
                ),
            )
        )
    return out


def figures(reader: Reader, name: str) -> dict[str, Any]:
    """Sent, failed, unknown, bounced, replies and unsubscribes of one issue.

    Unsubscribes are the recipients who left after it reached them, however
    they did it (the link, a mail, a reply).
    """
    states: Counter[str] = Counter()
    keys: set[str] = set()
    sent_at: dict[str, str] = {}
    for key, doc in matching(reader, MESSAGES, kind="newsletter", ref=name):
        states[doc["state"]] += 1
        keys.add(key)
        if doc.get("sent_at"):
            sent_at[doc["contact"]] = doc["sent_at"]
    answers: Counter[str] = Counter()
    for kind in ("bounce", "reply"):
        for _key, doc in matching(reader, CONVERSATIONS, kind=kind):
            if doc.get("answers") in keys:
                answers[kind] += 1
    left = 0
    for email, when in sent_at.items():
        contact = reader.get(CONTACTS, email)
        if (
            contact
            and contact.get("status") == "unsubscribed"
            and _utc(contact.get("status_at") or "") >= _utc(when)
        ):
            left += 1
    return {
        "newsletter": name,
        "sent": states["sent"],
        "failed": states["failed"],
        "unknown": states["unknown"],
        "in_progress": states["sending"] + states["planned"],
        "bounced": answers["bounce"],
        "replies": answers["reply"],
        "unsubscribes": left,
    }


def _utc(moment: str) -> str:
    try:
        return datetime.fromisoformat(moment).astimezone(ZoneInfo("UTC")).isoformat()
    except ValueError:
        return ""
