"""The owner's Sent folder read as conversation: mail they wrote by hand counts as contact.

Theory of operation
-------------------

The Sent folder holds two kinds of mail: what toma sent (its copy, see
:mod:`toma.inbox.sentcopy`, or the provider's own filing of submitted mail)
and what the owner wrote in their own mail program. toma tells them apart by
Message-ID: one that is in the outbox is toma's and is left alone; any other
is *written by hand*.

A hand-written message to somebody in the address book (To, Cc or Bcc) is
recorded on that contact's conversation (``direction = "out"``, ``kind =
"handwritten"``: ``toma log`` shows it) under ``out:<Message-ID>:<contact>``,
so it is recorded once however often the folder is read. It counts as contact
(:func:`toma.core.reading.decide.decide_handwritten`): each of the contact's
enrolments follows its sequence's ``on_handwritten`` (by default its
``on_reply``), and the moment it was written is kept as the contact's *last
contacted* (``sync`` table, ``contacted:<email>``), from which the planner
counts the keep-in-touch repeat and the pace. What was in the Sent folder
before toma first read it is history: logged, nothing changed.

A message to nobody in the address book is not recorded: the owner's other
mail is none of toma's business.
"""

from __future__ import annotations

import logging
from datetime import datetime
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from typing import Any

from toma.config import Config
from toma.core.contacts import Contact
from toma.core.enrolments import Enrolment
from toma.core.reading.decide import decide_handwritten
from toma.inbox.record import (
    LIST_CAP,
    SUBJECT_CAP,
    TEXT_CAP,
    SyncReport,
    _cap,
    _caps,
    _Context,
    _Read,
    _record_one,
    arrived,
    conversation_key,
)
from toma.logs import fields
from toma.store import CONTACTS, CONVERSATIONS, ENROLMENTS, SYNC
from toma.store.base import Transaction
from toma.timeutil import iso, stored_moment

log = logging.getLogger(__name__)

CONTACTED_PREFIX = "contacted:"
_HEADER_BYTES = 64 * 1024  # the headers are at the top; a huge message is not parsed whole


def contacted_key(email: str) -> str:
    """Where the moment the owner last wrote to ``email`` by hand is kept (``sync`` table)."""
    return CONTACTED_PREFIX + email


def recipients(data: bytes) -> list[str]:
    """The addresses a message went to (To, Cc, Bcc), lower-cased, each once, in order."""
    head, _, _ = data[:_HEADER_BYTES].partition(b"\r\n\r\n")
    if len(head) == len(data[:_HEADER_BYTES]):
        head, _, _ = head.partition(b"\n\n")
    try:
        headers = BytesHeaderParser().parsebytes(head + b"\r\n\r\n")
        pairs = getaddresses(
            [str(value) for name in ("to", "cc", "bcc") for value in headers.get_all(name, [])]
        )
    except Exception:  # noqa: BLE001 - a header no parser can read names nobody
        return []
    found: list[str] = []
    for _name, address in pairs:
        address = address.strip().lower()
        if "@" in address and address not in found:
            found.append(address)
    return found


def record_handwritten(
    tx: Transaction,
    config: Config,
    context: _Context,
    item: _Read,
    now: datetime,
    report: SyncReport,
    since: datetime,
) -> None:
    """Record one message of the Sent folder (see the module docstring)."""
    inbound, reading = item.inbound, item.reading
    if reading.unread is not None:
        _record_one(tx, config, context, item, now, report, since)  # set aside, as any other
        return
    bare = conversation_key(reading, inbound.data)
    own = (reading.message_id or "").strip().strip("<>").strip()
    if own and own in context.sent:
        report.ours += 1  # toma's own message: the outbox already holds it
        return
    people = [a for a in recipients(inbound.data) if a in context.contacts][:LIST_CAP]
    if not people:
        return
    written = arrived(inbound, reading, now)
    for email in people:
        key = f"out:{bare}:{email}"
        if tx.get(CONVERSATIONS, key) is not None:
            report.duplicates += 1
            continue
        stored = tx.get(CONTACTS, email)
        if stored is None:
            continue
        contact = Contact.from_doc(stored)
        enrolments = [
            Enrolment.from_doc(stored_enrolment)
            for k in context.enrolled.get(email, [])
            if (stored_enrolment := tx.get(ENROLMENTS, k)) is not None
        ]
        decision = decide_handwritten(
            contact, enrolments, context.sequences, now=now, written=written, since=since
        )
        for enrolment in decision.enrolments:
            tx.put(ENROLMENTS, enrolment.key, enrolment.to_doc())
        if decision.contacted is not None:
            _remember_contact(tx, email, decision.contacted, key)
        doc: dict[str, Any] = {
            "key": key,
            "source_key": inbound.key,
            "contact": email,
            "direction": "out",
            "kind": "handwritten",
            "reason": "written by hand (found in your Sent folder)",
            "subject": _cap(reading.subject, SUBJECT_CAP),
            "sender": _cap(reading.sender, 320),
            "message_id": _cap(reading.message_id, 320),
            "date": iso(reading.date) if reading.date else None,
            "received_at": iso(written),
            "recorded_at": iso(now),
            "size": len(inbound.data),
            "actions": _caps(decision.actions),
            "text": _cap(reading.text, TEXT_CAP),
            "aside": False,
            "notified": True,
        }
        if decision.history:
            doc["history"] = True
        tx.put(CONVERSATIONS, key, doc)
        report.recorded += 1
        report.handwritten += 1
        report.by_kind["handwritten"] = report.by_kind.get("handwritten", 0) + 1
        log.info(
            "handwritten",
            extra=fields(
                contact=email,
                subject=reading.subject[:80],
                actions="; ".join(decision.actions)[:400],
            ),
        )


def _remember_contact(tx: Transaction, email: str, written: datetime, conversation: str) -> None:
    """Keep the latest moment the owner wrote to ``email`` by hand: the planner counts from it."""
    key = contacted_key(email)
    old = tx.get(SYNC, key)
    before = stored_moment(old.get("at")) if old else None
    if before is not None and before >= written:
        return
    tx.put(SYNC, key, {"at": iso(written), "conversation": conversation})
