"""What one batch read from the mailbox becomes in the store: one transaction each.

Theory of operation
-------------------

:func:`record` writes what was read of a batch together with the source's new
position (its cursor), so a crash either records those messages and moves past
them, or does neither (see :mod:`toma.inbox.sync`, which reads). Every message
is keyed by its Message-ID, so a resync logs nothing twice.

A message is read once and never again in a loop:

- One the reader could not read (``Reading.unread``) is *set aside*: recorded
  once under ``aside:<source key>`` (the mailbox and UID, or the Maildir
  file's key) with the reason, listed by ``toma status``, never parsed again
  (its source key and content digest are remembered).
- Before a message of :data:`RISKY_BYTES` or more is parsed, what was read
  before it is recorded together with a set-aside record saying it is being
  read and a cursor *after* it. Parsed normally, it replaces that record.
  Should reading it crash the process (memory, a kill), the record stays and
  the cursor is past it: the next start goes on with the next message.

What is stored of a message is bounded (:data:`SUBJECT_CAP`, :data:`TEXT_CAP`,
:data:`LIST_CAP` items of :data:`FIELD_CAP` characters), and a message from
nobody in the address book keeps no body text: only what the owner needs to
find it in their own mailbox.

A message from the owner's Sent folder is the owner's own: see
:mod:`toma.inbox.handwritten`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from toma.config import Config
from toma.config.senders import notice_to
from toma.core.contacts import Contact
from toma.core.enrolments import Enrolment
from toma.core.outbox import MessageState, new_record
from toma.core.reading.classify import Reading
from toma.core.reading.decide import Decision, decide
from toma.core.reading.match import Match, Sent, match
from toma.core.reminders import number_of_ref
from toma.core.sequences import Sequence as SequenceFile
from toma.inbox.base import Cursor, Inbound
from toma.logs import fields
from toma.mail.unsubscribe import Unsubscribe, unsubscriber
from toma.project.sequences import read_sequences
from toma.store import CONTACTS, CONVERSATIONS, ENROLMENTS, INVOICES, MESSAGES, SYNC, Store
from toma.store.base import Transaction
from toma.store.records import contacts as addressbook
from toma.store.records import enrolments, outbox
from toma.timeutil import iso

log = logging.getLogger(__name__)

# Messages this big are recorded as "being read" before they are parsed.
RISKY_BYTES = 256 * 1024
SUBJECT_CAP = 1_000  # characters
TEXT_CAP = 64 * 1024  # characters
LIST_CAP = 50  # items of recipients, problems, actions
FIELD_CAP = 1_000  # characters of any other stored text (sender, reason, a list item)
ASIDE_PREFIX = "aside:"


@dataclass
class SyncReport:
    fetched: int = 0
    recorded: int = 0
    duplicates: int = 0
    aside: int = 0
    set_aside: int = 0  # could not be read: recorded once, never read again
    more: bool = False  # stopped early (asked to, or out of time): more is left to read
    handwritten: int = 0  # mail the owner wrote by hand to a contact (the Sent folder)
    ours: int = 0  # toma's own messages found in the Sent folder: nothing to record
    by_kind: dict[str, int] = field(default_factory=dict)


def conversation_key(reading: Reading, data: bytes) -> str:
    if reading.message_id:
        bare = reading.message_id.strip().strip("<>").strip().lower()
        if len(bare) <= 250:
            return bare
    return "sha256:" + hashlib.sha256(data).hexdigest()


def aside_key(source_key: str) -> str:
    """Where a set-aside message is recorded: by its place in the mailbox."""
    return ASIDE_PREFIX + source_key


@dataclass(frozen=True)
class _Read:
    inbound: Inbound
    reading: Reading
    digest: str


@dataclass
class _Context:
    """What a group of messages is decided against, read once inside its transaction."""

    sent: dict[str, Sent]
    contacts: set[str]
    enrolled: dict[str, list[str]]
    sequences: Mapping[str, SequenceFile]
    owner: str
    tokens: Unsubscribe

    @classmethod
    def load(cls, tx: Transaction, config: Config) -> _Context:
        # Who is enrolled where, read once: an inbound message concerns one
        # contact, and the table may be large.
        return cls(
            sent=outbox.sent_index_of(tx),
            contacts=addressbook.addresses(tx),
            enrolled=enrolments.keys_by_contact(tx),
            sequences=read_sequences(config).sequences,
            owner=config.owner.email.lower(),
            tokens=unsubscriber(config),
        )


@dataclass(frozen=True)
class _Window:
    since: datetime  # mail that arrived before it is history
    first: datetime  # the first sync of this mailbox: kept in its sync state
    sent: bool = False  # the owner's Sent folder: their own mail (see toma.inbox.handwritten)


def _record(
    store: Store,
    config: Config,
    items: Iterable[_Read],
    cursor: Cursor,
    key: str,
    now: datetime,
    report: SyncReport,
    window: _Window | None = None,
    *,
    marker: _Read | None = None,
) -> None:
    """Record ``items`` and move the cursor, in one transaction; ``marker`` is being read."""
    items = list(items)
    window = window or _Window(since=config.inbox.since or now, first=now)
    with store.transaction() as tx:
        context = _Context.load(tx, config) if items else None
        for item in items:
            assert context is not None  # noqa: S101 - loaded whenever there are items
            if window.sent:
                from toma.inbox.handwritten import record_handwritten

                record_handwritten(tx, config, context, item, now, report, window.since)
            else:
                _record_one(tx, config, context, item, now, report, window.since)
        if marker is not None:
            tx.put(CONVERSATIONS, aside_key(marker.inbound.key), _aside_doc(config, marker, now))
        tx.put(
            SYNC,
            key,
            {"cursor": cursor.to_doc(), "synced_at": iso(now), "since": iso(window.first)},
        )


def _record_one(
    tx: Transaction,
    config: Config,
    context: _Context,
    item: _Read,
    now: datetime,
    report: SyncReport,
    since: datetime,
) -> None:
    inbound, reading = item.inbound, item.reading
    if reading.unread is not None:
        tx.put(CONVERSATIONS, aside_key(inbound.key), _aside_doc(config, item, now))
        report.set_aside += 1
        log.warning(
            "inbound set aside",
            extra=fields(source=inbound.key, size=len(inbound.data), reason=_cap(reading.unread)),
        )
        return
    if len(inbound.data) >= RISKY_BYTES and tx.get(CONVERSATIONS, aside_key(inbound.key)):
        tx.delete(CONVERSATIONS, aside_key(inbound.key))  # read after all: no longer aside
    conv_key = conversation_key(reading, inbound.data)
    if tx.get(CONVERSATIONS, conv_key) is not None:
        report.duplicates += 1
        return
    asked_by = _token_owner(context.tokens, reading)
    if asked_by is not None:
        # The List-Unsubscribe mailto: its signed token names the person,
        # whichever address the request comes from.
        reading = replace(
            reading, kind="unsubscribe", reason="unsubscribe link (mailto with a valid token)"
        )
    if reading.sender == context.owner and asked_by is None:
        found = Match(contact=None, answers=None, via="none")
        decision = Decision(actions=("kept aside: from your own address",))
    else:
        found = match(reading, sent=context.sent, contacts=context.contacts)
        if asked_by is not None and asked_by in context.contacts:
            found = Match(contact=asked_by, answers=found.answers, via="token")
        contact_doc = tx.get(CONTACTS, found.contact) if found.contact else None
        contact = Contact.from_doc(contact_doc) if contact_doc else None
        enrolments = [
            Enrolment.from_doc(stored)
            for k in (context.enrolled.get(contact.email, []) if contact else [])
            if (stored := tx.get(ENROLMENTS, k)) is not None
        ]
        decision = decide(
            reading,
            found,
            contact=contact,
            enrolments=enrolments,
            sequences=context.sequences,
            config=config,
            now=now,
            arrived=arrived(inbound, reading, now),
            since=since,
        )
    known = reading.sender is not None and reading.sender in context.contacts
    _apply(tx, config, reading, found, decision, conv_key, inbound, now, known=known)
    report.recorded += 1
    report.by_kind[reading.kind] = report.by_kind.get(reading.kind, 0) + 1
    if found.contact is None:
        report.aside += 1
    log.info(
        "inbound",
        extra=fields(
            kind=reading.kind,
            contact=found.contact,
            via=found.via,
            subject=reading.subject[:80],
            actions="; ".join(decision.actions)[:400],
        ),
    )
    if found.untied is not None:
        log.warning(
            "bounce untied",
            extra=fields(
                sender=_cap(reading.sender, 200),
                named=", ".join(found.named[:10]),
                recipients=", ".join(a[:100] for a in reading.recipients[:10]),
                reason=found.untied,
            ),
        )
    elif decision.third_party:
        log.warning(
            "inbound from a third party",
            extra=fields(
                kind=reading.kind, contact=found.contact, sender=_cap(reading.sender, 200)
            ),
        )


def arrived(inbound: Inbound, reading: Reading, now: datetime) -> datetime:
    """When the message reached the mailbox: the mailbox's own record, which the sender
    cannot set; the Date header only when the mailbox does not say; else now."""
    return inbound.received_at or reading.date or now


def _token_owner(tokens: Unsubscribe, reading: Reading) -> str | None:
    if reading.kind in ("bounce", "auto-reply"):
        return None
    return tokens.find(reading.subject[:SUBJECT_CAP])


def _cap(text: str | None, limit: int = FIELD_CAP) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + "…"


def _caps(items: Iterable[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if len(out) >= LIST_CAP:
            break
        out.append(_cap(item) or "")
    return out


def location(source_key: str, config: Config) -> dict[str, Any]:
    """Where the owner finds a message: its mailbox and UID, or its Maildir file's key."""
    kind, _, rest = source_key.partition(":")
    if kind == "imap":
        folder, _, numbers = rest.rpartition(":")
        folder, _, validity = folder.rpartition(":")
        if numbers.isdigit() and validity.isdigit():
            return {"mailbox": folder, "uidvalidity": int(validity), "uid": int(numbers)}
    if kind == "maildir":
        return {"mailbox": str(config.inbox.path), "file": rest}
    return {"mailbox": "", "file": source_key}


def _aside_doc(config: Config, item: _Read, now: datetime) -> dict[str, Any]:
    inbound, reading = item.inbound, item.reading
    return {
        "key": aside_key(inbound.key),
        "source_key": inbound.key,
        **location(inbound.key, config),
        "contact": None,
        "direction": "in",
        "kind": "unread",
        "reason": _cap(reading.unread),
        "sender": _cap(reading.sender, 320),
        "subject": _cap(reading.subject, SUBJECT_CAP),
        "date": iso(reading.date) if reading.date else None,
        "received_at": iso(inbound.received_at or now),
        "recorded_at": iso(now),
        "size": len(inbound.data),
        "sha256": item.digest,
        "actions": ["set aside: never read again"],
        "aside": True,
        "set_aside": True,
        "notified": True,
    }


def _apply(
    tx: Transaction,
    config: Config,
    reading: Reading,
    found: Match,
    decision: Decision,
    conv_key: str,
    inbound: Inbound,
    now: datetime,
    *,
    known: bool,
) -> None:
    if decision.contact is not None:
        addressbook.put(tx, decision.contact, now=now, by=f"inbox: {reading.kind}")
    for enrolment in decision.enrolments:
        tx.put(ENROLMENTS, enrolment.key, enrolment.to_doc())
    if decision.invoice_paused_until is not None and found.answers is not None:
        number = number_of_ref(found.answers.ref)
        invoice = tx.get(INVOICES, number)
        if invoice is not None:
            invoice["paused_until"] = iso(decision.invoice_paused_until)
            tx.put(INVOICES, number, invoice)
    notify = decision.notify_owner and config.inbox.notify != "off"
    doc: dict[str, Any] = {
        "key": conv_key,
        "source_key": inbound.key,
        "contact": found.contact,
        "direction": "in",
        "kind": reading.kind,
        "reason": _cap(reading.reason),
        "subject": _cap(reading.subject, SUBJECT_CAP),
        "sender": _cap(reading.sender, 320),
        "message_id": _cap(reading.message_id, 320),
        "date": iso(reading.date) if reading.date else None,
        "received_at": iso(inbound.received_at or now),
        "recorded_at": iso(now),
        "size": len(inbound.data),
        "matched_by": found.via,
        "actions": _caps(decision.actions),
        "aside": found.contact is None,
        "notified": not (notify and config.inbox.notify == "daily"),
    }
    if decision.history:
        doc["history"] = True
    if reading.kind == "bounce":
        doc.update(hard=reading.hard, recipients=_caps(reading.recipients))
    if found.untied is not None:
        doc.update(untied=_cap(found.untied), named=_caps(found.named))
    if decision.third_party:
        doc["third_party"] = True
    if known:
        # Somebody in the address book: what they wrote is kept (bounded) for `toma log`.
        doc.update(
            text=_cap(reading.text, TEXT_CAP),
            back_on=reading.back_on.isoformat() if reading.back_on else None,
            answers=found.answers.key if found.answers else None,
            answers_ref=found.answers.ref if found.answers else None,
            problems=_caps(reading.problems),
        )
    elif found.answers is not None:
        doc.update(answers=found.answers.key, answers_ref=found.answers.ref)
    tx.put(CONVERSATIONS, conv_key, doc)
    if notify and config.inbox.notify == "immediately":
        stored = tx.get(CONTACTS, found.contact) if found.contact else None
        to = notice_to(config, (stored or {}).get("owner", ""))
        _notice(tx, f"notice:inbound:{conv_key}", to, "inbound", conv_key, now)
    if decision.confirm_unsubscribe and found.contact:
        _notice(
            tx, f"notice:unsubscribed:{found.contact}", found.contact, "unsubscribed", conv_key, now
        )


def _notice(tx: Transaction, key: str, to: str, template: str, ref: str, now: datetime) -> None:
    if tx.get(MESSAGES, key) is not None:
        return  # at most once, like every other message
    record = new_record(
        key=key,
        contact=to,
        kind="notice",
        ref=ref,
        template=f"notice:{template}",
        due_at=now,
        at=now,
        state=MessageState.PLANNED,
    )
    tx.put(MESSAGES, key, record.to_doc())
