"""The outbox table's records: the questions asked of it, and the owner's changes.

The daemon writes the outbox as it sends (:mod:`toma.daemon.outboxwriter`) and
the planner reads it whole, decoded (:mod:`toma.daemon.cache`); everything else
asks here, by the fields PostgreSQL indexes (:func:`~toma.store.records.query.matching`),
and ``toma outbox release`` changes it here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

from toma.core.daylimit import DAY, counts_today
from toma.core.outbox import MessageState, OutboxRecord
from toma.core.reading.match import Sent, sent_index
from toma.errors import TomaError
from toma.logs import fields
from toma.store import MESSAGES, Document, Reader, Store
from toma.store.records.query import matching, matching_from

log = logging.getLogger(__name__)


def records(
    reader: Reader,
    *,
    state: str | None = None,
    contact: str | None = None,
    kind: str | None = None,
    ref: str | None = None,
) -> list[OutboxRecord]:
    """The messages whose fields equal those given (all of them when none is), in store order."""
    asked = {
        name: value
        for name, value in (("state", state), ("contact", contact), ("kind", kind), ("ref", ref))
        if value is not None
    }
    return [OutboxRecord.from_doc(doc) for _key, doc in matching(reader, MESSAGES, **asked)]


def documents(reader: Reader, **equal: str) -> Iterator[Document]:
    """The stored documents of the messages whose fields equal ``equal`` (all when none),
    for reports that show them as written."""
    return (doc for _key, doc in matching(reader, MESSAGES, **equal))


def sent_index_of(reader: Reader) -> dict[str, Sent]:
    """Every Message-ID toma sent, with what it was (see ``match.sent_index``)."""
    return sent_index(reader.all(MESSAGES))


def handed_in_day(reader: Reader, now: datetime) -> list[OutboxRecord]:
    """The messages handed to a server in the day before ``now``: what a daily limit
    counts (:func:`toma.core.daylimit.counts_today`).

    Asked as the records written since a day and 14 hours before, compared as
    text (on PostgreSQL, by index): a record's ``updated_at`` is never before
    its ``sent_at``, and a moment's local time is never more than 14 hours
    from UTC.
    """
    lowest = (now - DAY - timedelta(hours=14)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return [
        record
        for record in (
            OutboxRecord.from_doc(doc)
            for _key, doc in matching_from(reader, MESSAGES, "updated_at", lowest)
        )
        if counts_today(record, now)
    ]


def of_issue(reader: Reader, name: str) -> dict[str, OutboxRecord]:
    """The copies of the newsletter issue ``name``, by key."""
    return {record.key: record for record in records(reader, kind="newsletter", ref=name)}


def of_invoice(reader: Reader, number: str) -> list[OutboxRecord]:
    """The reminders and the thank-you of invoice ``number``."""
    from toma.core.reminders import number_of_ref

    return [r for r in records(reader, kind="invoice") if number_of_ref(r.ref) == number]


def release_unknown(
    store: Store, keys: Iterable[str], contacts: Iterable[str], *, now: datetime, by: str
) -> list[OutboxRecord]:
    """Release ``unknown`` messages for sending again: those named by key, and all of
    ``contacts``' (``toma outbox release``). The next tick sends them.

    A key that names no message, or one that is not ``unknown``, is an error and
    nothing is released.
    """
    from toma.core.contacts import normalize_address
    from toma.core.outbox import release

    wanted = list(dict.fromkeys(keys))
    people = {normalize_address(address) for address in contacts}
    with store.transaction() as tx:
        chosen: dict[str, OutboxRecord] = {}
        for key in wanted:
            doc = tx.get(MESSAGES, key)
            if doc is None:
                raise TomaError(f"no message with the key {key!r} (see `toma outbox list`)")
            record = OutboxRecord.from_doc(doc)
            if record.state is not MessageState.UNKNOWN:
                raise TomaError(
                    f"{key} is {record.state.value}, not unknown: nothing released",
                    contact=record.contact,
                )
            chosen[key] = record
        if people:
            for key, doc in tx.all(MESSAGES):
                if doc.get("contact") in people and doc.get("state") == MessageState.UNKNOWN:
                    chosen.setdefault(key, OutboxRecord.from_doc(doc))
        released = [release(record, at=now, by=by) for record in chosen.values()]
        for record in released:
            tx.put(MESSAGES, record.key, record.to_doc())
    for record in released:
        log.warning(
            "released", extra=fields(contact=record.contact, ref=record.ref, key=record.key, by=by)
        )
    return released
