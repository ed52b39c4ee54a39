"""A tick on a store too large to hold decoded: the contacts that can have something due.

Theory of operation
-------------------
On the embedded store the daemon keeps every table decoded from one tick to
the next (:class:`toma.daemon.cache.PlanCache`): time and memory grow with the
store. A store that keeps where each enrolment stands (PostgreSQL, see
:mod:`toma.store.records.due`) lets a tick read only what it may act on:

1. **Tags.** Active contacts carrying a sequence's ``enroll_tag`` and never
   enrolled in it are asked of the store: all of them the first time and
   whenever the tag rules change, afterwards only among the contacts and
   enrolments the store's change feed names since the rules were last applied
   (kept in the store, so a new daemon carries on where the last one stopped;
   all again when the feed cannot say what changed).
2. **Who.** The contacts with an enrolment that can have a step ready now
   (:mod:`toma.core.earliest`), the clients of every invoice (the reminders'
   plan reads the invoices whole, as on the embedded store), and, while a
   newsletter issue is scheduled, those of its audience it still waits for
   (every contact the audience may select is looked at, a page at a time: those
   carrying a tag it needs, else everyone; only those waiting are kept).
3. **What.** Those contacts' documents, read by indexed queries
   (:func:`toma.daemon.cache.plan_state_of`), and the records a tick looks up
   beside them: the notices waiting, the scheduled issues' copies.

The planner plans each contact from its own documents, so what it decides
for these contacts is what it would decide from the whole store, and nobody
else can have anything due (the store's index is a lower bound of every due
time, never later than the planner's).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from types import MappingProxyType

from toma.config import Config
from toma.core.contacts import Contact
from toma.core.earliest import earliest
from toma.core.enrolments import tag_enrolments
from toma.core.invoices import Invoice
from toma.core.newsletters import pending
from toma.core.outbox import OutboxRecord
from toma.core.planner import PlanState
from toma.core.sequences import Sequence
from toma.daemon.cache import plan_state_of
from toma.daemon.tick import write_enrolments
from toma.errors import TomaError
from toma.logs import fields
from toma.project.sequences import Files
from toma.store import CONTACTS, ENROLMENTS, SYNC, Reader, Store
from toma.store.base import ChangeMark
from toma.store.records import contacts as addressbook
from toma.store.records import newsletters as broadcast
from toma.store.records import outbox
from toma.store.records.due import can_be_due, tagged_unenrolled
from toma.store.records.query import matching_any

log = logging.getLogger(__name__)

WAITING_PAGE = 5000  # contacts looked at together for the scheduled issues


TAG_RULES_KEY = "tag-rules"
"""The sync document saying which tag rules were applied, through which change."""


def tag_rules(sequences: Mapping[str, Sequence]) -> list[list[str]]:
    """Each sequence's ``enroll_tag`` with the sequence's name, in order: the tag rules."""
    return sorted([s.enroll_tag, name] for name, s in sequences.items() if s.enroll_tag)


def enrollable(
    store: Reader, rules: list[list[str]], among: Collection[str] | None = None
) -> set[str]:
    """The active contacts a tag rule would enrol (among ``among`` when given)."""
    found: set[str] = set()
    for tag, name in rules:
        found |= tagged_unenrolled(store, tag, name, among)
    return found


def enrol_by_tag(store: Store, sequences: Mapping[str, Sequence], now: datetime) -> int:
    """Enrol the active contacts carrying a sequence's tag (step 1); how many were.

    Where the feed stood when the rules were last applied is kept in the
    store (``sync`` table), for every daemon: only the first daemon on a
    store, or the first after the rules change, asks about every contact.
    Two daemons applying the same rules at once enrol nobody twice
    (:func:`~toma.store.records.enrolments.record_tag_enrolments` looks
    again as it writes), and the mark either leaves behind was taken
    before its own check: at worst some contacts are looked at again.
    """
    tagged = tag_rules(sequences)
    applied = _applied(store, tagged)
    mark, changes = store.changes_since(applied)
    among: set[str] | None = None
    if changes is not None:
        among = set()
        for table, key, _deleted in changes:
            if table == CONTACTS:
                among.add(key)
            elif table == ENROLMENTS:
                among.add(key.partition("/")[2])  # sequence/contact
    found = enrollable(store, tagged, among) if among is None or among else set()
    written = _enrol(store, found, sequences, now) if found else 0
    if mark != applied:
        # Kept up with even when nothing relevant changed: a mark left behind
        # would fall off the end of the feed and cost a check of everyone.
        with store.transaction() as tx:
            source = mark.source
            tx.put(
                SYNC,
                TAG_RULES_KEY,
                {
                    "rules": tagged,
                    "source": list(source) if isinstance(source, tuple) else None,
                    "position": mark.position,
                },
            )
    return written


def plan_state(
    store: Reader,
    config: Config,
    files: Files,
    now: datetime,
    invoices: Iterable[Invoice],
    *,
    also: Collection[str] = (),
) -> PlanState:
    """The planner's input for the contacts that can have something due by ``now`` (steps
    2 and 3), with the clients of ``invoices`` (every invoice, which the reminders' plan
    reads whole) and the contacts ``also``.

    ``now`` is a tick's now, or the end of the days ``toma plan`` shows. More
    contacts than can be due never change the plan of anyone: each is planned
    from their own documents.
    """
    asked = earliest(files.sequences, config.windows, files.held, horizon=now, pace=config.pace)
    emails = can_be_due(store, asked, now)
    if emails is None:
        raise TypeError("a scoped tick needs a store that says who can be due")
    emails |= {invoice.contact for invoice in invoices}
    emails |= set(also)
    extra: dict[str, OutboxRecord] = {
        record.key: record for record in outbox.records(store, kind="notice", state="planned")
    }
    scheduled = broadcast.scheduled(store)
    for name in scheduled:
        extra.update(outbox.of_issue(store, name))
    state = plan_state_of(store, config, files, emails)
    contacts = state.contacts
    if scheduled:
        waiting = _waiting_for(store, config, scheduled, extra)
        contacts = MappingProxyType(waiting | dict(contacts))
    if extra or scheduled:
        state = replace(
            state, contacts=contacts, history=MappingProxyType({**extra, **state.history})
        )
    log.debug(
        "scoped",
        extra=fields(contacts=len(state.contacts), enrolments=len(state.enrolments)),
    )
    return state


def _waiting_for(
    store: Reader, config: Config, names: list[str], copies: Mapping[str, OutboxRecord]
) -> dict[str, Contact]:
    """The contacts a scheduled issue still waits for (:func:`toma.core.newsletters.pending`).

    An issue's audience is an expression over every contact's tags and fields
    (:mod:`toma.core.audience`), so every contact it may select is read, a page at
    a time: those carrying a tag it needs (:meth:`Audience.needs_one_of`), else
    everyone. Only those in an audience with no copy of its issue attempted yet
    are kept: the tick's memory grows with the copies still to send, not with the
    store. An issue that cannot be read waits for nobody (the tick reports it).
    """
    issues = []
    for name in names:
        with contextlib.suppress(TomaError):
            issues.append(broadcast.load(config, name))
    # Only the contacts carrying a tag some audience needs, where each audience needs one.
    needed = [issue.audience.needs_one_of() for issue in issues]
    tags = None if None in needed else frozenset().union(*(t for t in needed if t is not None))
    kept: dict[str, Contact] = {}
    page: list[Contact] = []

    def keep() -> None:
        waiting = {c.email for issue in issues for c in pending(issue, page, copies)}
        kept.update((c.email, c) for c in page if c.email in waiting)  # in the store's order
        page.clear()

    for contact in addressbook.tagged_any(store, tags):
        page.append(contact)
        if len(page) >= WAITING_PAGE:
            keep()
    keep()
    return kept


def _enrol(
    store: Store, emails: Collection[str], sequences: Mapping[str, Sequence], now: datetime
) -> int:
    contacts = addressbook.of_addresses(store, emails)
    enrolled = {
        (doc["contact"], doc["sequence"])
        for _key, doc in matching_any(store, ENROLMENTS, "contact", emails)
    }
    return write_enrolments(store, tag_enrolments(contacts, sequences, enrolled, now=now))


def _applied(store: Store, tagged: list[list[str]]) -> ChangeMark | None:
    """Where the feed stood when ``tagged`` were last applied; None: never, or other rules."""
    doc = store.get(SYNC, TAG_RULES_KEY)
    if doc is None or doc.get("rules") != tagged:
        return None
    source, position = doc.get("source"), doc.get("position")
    if not isinstance(source, list) or not isinstance(position, int):
        return None
    return ChangeMark(tuple(source), position)
