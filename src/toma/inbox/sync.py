"""One pass over the inbox: fetch, read, match, decide, record.

Each batch of fetched messages is recorded in one store transaction together
with the source's new position (its cursor), so a crash either records a batch
and moves past it, or does neither; and every inbound message is keyed by its
Message-ID, so a resync (a UIDVALIDITY change, a Maildir read again) logs
nothing twice. A message that cannot be read is kept aside with the reason:
the loop never stops on one message.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from toma.config import Config
from toma.contacts import Contact
from toma.inbox.base import Cursor, Inbound, Source
from toma.inbox.classify import Reading, read_message
from toma.inbox.decide import Decision, decide
from toma.inbox.match import Match, match, sent_index
from toma.invoices import number_of_ref
from toma.logs import fields
from toma.outbox import MessageState, new_record
from toma.planning import read_sequences
from toma.sequences import Enrolment
from toma.store import CONTACTS, CONVERSATIONS, ENROLMENTS, INVOICES, MESSAGES, SYNC, Store
from toma.timeutil import iso
from toma.unsubscribe import Unsubscribe
from toma.unsubscribing import unsubscriber

log = logging.getLogger(__name__)

BATCH = 200


@dataclass
class SyncReport:
    fetched: int = 0
    recorded: int = 0
    duplicates: int = 0
    aside: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def source_for(config: Config) -> Source:
    if config.inbox.kind == "imap":
        from toma.inbox.imap import ImapSource

        return ImapSource(config.imap)
    from toma.inbox.maildir import MaildirSource

    assert config.inbox.path is not None  # noqa: S101 - the config always gives one
    return MaildirSource(config.inbox.path)


def cursor_key(config: Config) -> str:
    if config.inbox.kind == "imap":
        return f"inbox:imap:{config.imap.host}:{config.imap.username}:{config.imap.folder}"
    return f"inbox:maildir:{config.inbox.path}"


def safe_read(data: bytes, config: Config, now: datetime) -> Reading:
    """``read_message`` within :data:`toma.inbox.classify.READ_BUDGET`; it must never raise,
    and if it does the message is "unknown" with ``unread`` saying why."""
    from time import monotonic

    from toma.inbox.classify import READ_BUDGET

    try:
        return read_message(data, unsubscribe_addresses=unsubscribe_addresses(config), now=now,
                            deadline=monotonic() + READ_BUDGET, clock=monotonic)
    except Exception as exc:  # noqa: BLE001 - one bad message must not stop the inbox
        return Reading(kind="unknown", reason="unreadable", sender=None, subject="",
                       message_id=None, in_reply_to=None, references=(), date=None, hard=None,
                       recipients=(), original_message_id=None, text=None, back_on=None,
                       problems=(f"{type(exc).__name__}: {exc}",),
                       unread=f"unreadable: {type(exc).__name__}")


def unsubscribe_addresses(config: Config) -> tuple[str, ...]:
    address = config.inbox.unsubscribe_address
    return (address,) if address else ()


def conversation_key(reading: Reading, data: bytes) -> str:
    if reading.message_id:
        return reading.message_id.strip().strip("<>").strip().lower()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sync(store: Store, config: Config, source: Source, *, now: datetime) -> SyncReport:
    """Fetch and record everything new in ``source``; return what was done."""
    report = SyncReport()
    key = cursor_key(config)
    store.refresh()
    doc = store.get(SYNC, key)
    cursor = Cursor.from_doc(doc["cursor"]) if doc else None
    seen_sources = {d.get("source_key") for _k, d in store.all(CONVERSATIONS)}
    while True:
        batch = source.fetch(cursor, limit=BATCH)
        report.fetched += len(batch.messages)
        fresh = [m for m in batch.messages if m.key not in seen_sources]
        _record_batch(store, config, fresh, batch.cursor, key, now, report)
        seen_sources.update(m.key for m in fresh)
        cursor = batch.cursor
        if len(batch.messages) < BATCH:
            return report


def _record_batch(store: Store, config: Config, messages: Iterable[Inbound], cursor: Cursor,
                  key: str, now: datetime, report: SyncReport) -> None:
    files = read_sequences(config)
    owner = config.owner.email.lower()
    tokens = unsubscriber(config)
    with store.transaction() as tx:
        sent = sent_index(tx.all(MESSAGES))
        contacts = {k for k, _d in tx.all(CONTACTS)}
        # Who is enrolled where, read once for the batch: an inbound message
        # concerns one contact, and the table may be large.
        enrolled: dict[str, list[str]] = {}
        for enrolment_key, doc in tx.all(ENROLMENTS):
            enrolled.setdefault(doc["contact"], []).append(enrolment_key)
        for inbound in messages:
            reading = safe_read(inbound.data, config, now)
            conv_key = conversation_key(reading, inbound.data)
            if tx.get(CONVERSATIONS, conv_key) is not None:
                report.duplicates += 1
                continue
            asked_by = _token_owner(tokens, reading)
            if asked_by is not None:
                # The List-Unsubscribe mailto: its signed token names the person,
                # whichever address the request comes from.
                reading = replace(reading, kind="unsubscribe",
                                  reason="unsubscribe link (mailto with a valid token)")
            if reading.sender == owner and asked_by is None:
                found = Match(contact=None, answers=None, via="none")
                decision = Decision(actions=("kept aside: from your own address",))
            else:
                found = match(reading, sent=sent, contacts=contacts)
                if asked_by is not None and asked_by in contacts:
                    found = Match(contact=asked_by, answers=found.answers, via="token")
                contact_doc = tx.get(CONTACTS, found.contact) if found.contact else None
                contact = Contact.from_doc(contact_doc) if contact_doc else None
                enrolments = [
                    Enrolment.from_doc(stored)
                    for k in (enrolled.get(contact.email, []) if contact else [])
                    if (stored := tx.get(ENROLMENTS, k)) is not None
                ]
                decision = decide(reading, found, contact=contact, enrolments=enrolments,
                                  sequences=files.sequences, config=config, now=now)
            _apply(tx, config, reading, found, decision, conv_key, inbound, now)
            report.recorded += 1
            report.by_kind[reading.kind] = report.by_kind.get(reading.kind, 0) + 1
            if found.contact is None:
                report.aside += 1
            log.info("inbound", extra=fields(
                kind=reading.kind, contact=found.contact, via=found.via,
                subject=reading.subject[:80], actions="; ".join(decision.actions)))
        tx.put(SYNC, key, {"cursor": cursor.to_doc(), "synced_at": iso(now)})


def _token_owner(tokens: Unsubscribe, reading: Reading) -> str | None:
    if reading.kind in ("bounce", "auto-reply"):
        return None
    return tokens.find(reading.subject)


def _apply(tx: Any, config: Config, reading: Reading, found: Match, decision: Decision,
           conv_key: str, inbound: Inbound, now: datetime) -> None:
    if decision.contact is not None:
        tx.put(CONTACTS, decision.contact.email, decision.contact.to_doc())
    for enrolment in decision.enrolments:
        tx.put(ENROLMENTS, enrolment.key, enrolment.to_doc())
    if decision.invoice_paused_until is not None and found.answers is not None:
        number = number_of_ref(found.answers.ref)
        invoice = tx.get(INVOICES, number)
        if invoice is not None:
            invoice["paused_until"] = iso(decision.invoice_paused_until)
            tx.put(INVOICES, number, invoice)
    notify = decision.notify_owner and config.inbox.notify != "off"
    tx.put(CONVERSATIONS, conv_key, {
        "key": conv_key,
        "source_key": inbound.key,
        "contact": found.contact,
        "direction": "in",
        "kind": reading.kind,
        "reason": reading.reason,
        "subject": reading.subject,
        "sender": reading.sender,
        "message_id": reading.message_id,
        "date": iso(reading.date) if reading.date else None,
        "received_at": iso(inbound.received_at or now),
        "recorded_at": iso(now),
        "text": reading.text,
        "hard": reading.hard,
        "recipients": list(reading.recipients),
        "back_on": reading.back_on.isoformat() if reading.back_on else None,
        "answers": found.answers.key if found.answers else None,
        "answers_ref": found.answers.ref if found.answers else None,
        "matched_by": found.via,
        "actions": list(decision.actions),
        "problems": list(reading.problems),
        "aside": found.contact is None,
        "notified": not (notify and config.inbox.notify == "daily"),
    })
    if notify and config.inbox.notify == "immediately":
        _notice(tx, f"notice:inbound:{conv_key}", config.owner.email, "inbound", conv_key, now)
    if decision.confirm_unsubscribe and found.contact:
        _notice(tx, f"notice:unsubscribed:{found.contact}", found.contact, "unsubscribed",
                conv_key, now)


def _notice(tx: Any, key: str, to: str, template: str, ref: str, now: datetime) -> None:
    if tx.get(MESSAGES, key) is not None:
        return  # at most once, like every other message
    record = new_record(key=key, contact=to, kind="notice", ref=ref, template=f"notice:{template}",
                        due_at=now, at=now, state=MessageState.PLANNED)
    tx.put(MESSAGES, key, record.to_doc())
