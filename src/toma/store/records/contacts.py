"""The contacts table: adding, importing, tagging, status changes and forgetting.

Each operation is one store transaction, so a crash leaves either all of it or
none of it. Status rules live in :mod:`toma.core.contacts`; this module applies them
to what is stored.

It also keeps the suppression list (:mod:`toma.core.suppression`) in step with the
contacts: an unsubscribe or a bounce puts the address on it in the same
transaction as the status; ``forget`` erases the person and keeps their entry;
``add``, ``import`` and a resume consult it, so a suppressed address is never
made active again. Its secret is kept in the ``meta`` table, made by the
first entry.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from toma.core.contactfiles import ImportResult, parse_csv, parse_vcards
from toma.core.contacts import (
    Contact,
    Status,
    clean_tags,
    merge,
    normalize_address,
    with_status,
)
from toma.core.spreadsheet import decode
from toma.core.suppression import SECRET_BYTES, Entry, Reason, key_for, merged
from toma.errors import ContactError, ImportProblem, StoreError
from toma.logs import fields
from toma.store.base import (
    CONTACTS,
    CONVERSATIONS,
    ENROLMENTS,
    MESSAGES,
    META,
    SUPPRESSION,
    Document,
    Reader,
    Store,
    Transaction,
)
from toma.store.records.query import Forgetting, matching, matching_any
from toma.timeutil import iso

log = logging.getLogger(__name__)

SUPPRESSION_SECRET_KEY = "suppression"  # noqa: S105 - its document in the meta table


def all_contacts(reader: Reader) -> Iterator[Contact]:
    for _key, doc in reader.all(CONTACTS):
        yield Contact.from_doc(doc)


@runtime_checkable
class TagReading(Protocol):
    def tagged_any(self, tags: Collection[str]) -> Iterator[tuple[str, Document]]: ...


def tagged_any(reader: Reader, tags: Collection[str] | None) -> Iterator[Contact]:
    """The contacts carrying at least one of ``tags`` (every contact when None), in store
    order: asked of PostgreSQL, read and filtered elsewhere. Tags that are not a list
    are none."""
    if tags is None:
        return all_contacts(reader)
    wanted = frozenset(tags)
    if isinstance(reader, TagReading):
        return (Contact.from_doc(doc) for _key, doc in reader.tagged_any(wanted))
    return (
        Contact.from_doc(doc)
        for _key, doc in reader.all(CONTACTS)
        if isinstance(found := doc.get("tags"), list)
        and any(isinstance(tag, str) and tag in wanted for tag in found)
    )


def of_addresses(reader: Reader, emails: Collection[str]) -> list[Contact]:
    """The contacts of ``emails`` that exist (an indexed query on PostgreSQL)."""
    return [Contact.from_doc(doc) for _key, doc in matching_any(reader, CONTACTS, "key", emails)]


def addresses(reader: Reader) -> set[str]:
    """Every contact's address (the table's keys), without decoding a contact."""
    return {key for key, _doc in reader.all(CONTACTS)}


def find(reader: Reader, email: str) -> Contact:
    """The contact for ``email`` (any spelling), or a :class:`ContactError`."""
    key = normalize_address(email)
    doc = reader.get(CONTACTS, key)
    if doc is None:
        raise ContactError("no such contact (see `toma contacts list`)", contact=key)
    return Contact.from_doc(doc)


def add(store: Store, contact: Contact, *, now: datetime) -> tuple[Contact, bool]:
    """Store ``contact``, merged into an existing one of the same address.

    Returns the stored contact and whether it is new. An address on the
    suppression list that is not stored is refused (:class:`ContactError`):
    the person asked not to be written to, and storing them again would undo
    a ``forget``.
    """
    with store.transaction() as tx:
        old_doc = tx.get(CONTACTS, contact.email)
        old = Contact.from_doc(old_doc) if old_doc else None
        entry = suppression_of(tx, contact.email)
        if old is None and entry is not None:
            raise ContactError(_refusal(entry), contact=contact.email)
        new = _kept_off(merge(old, replace(contact, added_at=contact.added_at or iso(now))), entry)
        tx.put(CONTACTS, new.email, new.to_doc())
    return new, old is None


@dataclass(frozen=True)
class ImportReport:
    file: str
    added: int
    updated: int
    unchanged: int
    problems: tuple[ImportProblem, ...]
    # Rows of addresses on the suppression list that are not stored: not imported.
    suppressed: tuple[ImportProblem, ...] = field(default=())


def read_import_file(path: Path, *, now: datetime) -> ImportResult:
    """Parse a .csv or .vcf file into contacts and per-row problems."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportProblem(f"cannot read: {exc.strerror}", file=name) from None
    text, encoding = decode(raw, file=name)
    if encoding == "cp1252":
        # Excel's plain "CSV": right for western Windows, wrong for other code pages.
        log.warning("import read as windows-1252", extra=fields(file=name, encoding=encoding))
    suffix = path.suffix.lower()
    if suffix in (".vcf", ".vcard"):
        return parse_vcards(text, file=name, added_at=iso(now))
    if suffix in (".csv", ".txt", ".tsv"):
        return replace(parse_csv(text, file=name, added_at=iso(now)), encoding=encoding)
    raise ImportProblem("unknown file type: give a .csv or a .vcf file", file=name)


def import_file(store: Store, path: Path, *, now: datetime) -> ImportReport:
    """Merge every good row of ``path`` into the store, in one transaction.

    An unsubscribed or bounced contact stays so; custom fields that the file
    does not name are kept. A row whose address is on the suppression list and
    not stored (a forgotten person) is not imported, and reported in
    :attr:`ImportReport.suppressed`; one that is stored keeps (or gets) the
    list's status, never active.
    """
    result = read_import_file(path, now=now)
    added = updated = unchanged = 0
    suppressed: list[ImportProblem] = []
    with store.transaction() as tx:
        secret = suppression_secret(tx)
        for contact in result.contacts:
            old_doc = tx.get(CONTACTS, contact.email)
            old = Contact.from_doc(old_doc) if old_doc else None
            entry = _entry(tx, secret, contact.email) if secret else None
            if old is None and entry is not None:
                suppressed.append(
                    ImportProblem(
                        f"{contact.email}: {_refusal(entry)}", file=str(path), contact=contact.email
                    )
                )
                continue
            new = _kept_off(merge(old, contact), entry)
            if old is None:
                added += 1
            elif new == old:
                unchanged += 1
                continue
            else:
                updated += 1
            tx.put(CONTACTS, new.email, new.to_doc())
    return ImportReport(str(path), added, updated, unchanged, result.problems, tuple(suppressed))


def retag(store: Store, email: str, tags: Iterable[str], *, remove: bool = False) -> Contact:
    cleaned = clean_tags(tags)
    with store.transaction() as tx:
        contact = find(tx, email)
        if remove:
            kept = tuple(tag for tag in contact.tags if tag not in cleaned)
        else:
            kept = clean_tags((*contact.tags, *cleaned))
        contact = replace(contact, tags=kept)
        tx.put(CONTACTS, contact.email, contact.to_doc())
    return contact


def assign(store: Store, emails: Iterable[str], owner: str) -> list[Contact]:
    """Give every contact of ``emails`` to the sender ``owner`` ("" the default), all or none."""
    changed = []
    with store.transaction() as tx:
        for email in emails:
            contact = replace(find(tx, email), owner=owner)
            tx.put(CONTACTS, contact.email, contact.to_doc())
            changed.append(contact)
    return changed


_ALLOWED = {
    # new status: the statuses it may be reached from
    Status.PAUSED: {Status.ACTIVE},
    Status.ACTIVE: {Status.PAUSED, Status.BOUNCED},
    Status.UNSUBSCRIBED: {Status.ACTIVE, Status.PAUSED, Status.BOUNCED},
    Status.BOUNCED: {Status.ACTIVE, Status.PAUSED},
}


def set_status(
    store: Store, email: str, status: Status, *, now: datetime, reason: str = ""
) -> Contact:
    """Move a contact to ``status``.

    Resuming an unsubscribed contact is refused: only the person can undo
    that, by asking. Resuming a bounced one is allowed (the owner fixed the
    address or the mailbox came back), and lifts its ``bounced`` entry from the
    suppression list; a stronger entry (an objection) refuses it. Unsubscribed
    and bounced put the address on the list, in the same transaction.
    """
    with store.transaction() as tx:
        contact = find(tx, email)
        entry = suppression_of(tx, contact.email)
        if contact.status is status and not status.final:
            return contact
        if contact.status is not status and contact.status not in _ALLOWED[status]:
            raise ContactError(
                f"is {contact.status.value}; only the person can undo that", contact=contact.email
            )
        if status is Status.ACTIVE and entry is not None:
            if entry.reason is not Reason.BOUNCED:
                raise ContactError(
                    f"is on the suppression list ({entry.describe()}); only the "
                    "person can undo that",
                    contact=contact.email,
                )
            _lift(tx, contact.email)
        if status.final:
            suppress(tx, contact.email, _REASONS[status], now=now, by=reason)
        if contact.status is not status:
            contact = with_status(contact, status, at=iso(now), reason=reason)
            tx.put(CONTACTS, contact.email, contact.to_doc())
    return contact


def unsubscribe(store: Store, email: str, *, now: datetime, by: str) -> Contact | None:
    """The person asked to stop: suppress ``email`` and mark its contact unsubscribed.

    One transaction, durable when this returns: the one-click endpoint answers
    only after it. The address goes on the suppression list even when no
    contact has it (a forgotten person pressing an old link). Idempotent.
    Returns the contact, or None when there is none.
    """
    with store.transaction() as tx:
        key = _contact_key(email)
        suppress(tx, key, Reason.UNSUBSCRIBED, now=now, by=by)
        doc = tx.get(CONTACTS, key)
        if doc is None:
            return None
        contact = Contact.from_doc(doc)
        if contact.status is not Status.UNSUBSCRIBED:
            contact = with_status(contact, Status.UNSUBSCRIBED, at=iso(now), reason=by)
            tx.put(CONTACTS, contact.email, contact.to_doc())
    return contact


def forget(store: Store, email: str, *, now: datetime) -> int:
    """Erase a contact and everything stored about them; returns the records removed.

    The address stays on the suppression list (as ``unsubscribed`` if the
    person had unsubscribed, else ``forgotten``): forgetting erases the
    personal data, not the objection, and an erasure request means "never
    again" too.
    """
    removed = 0
    with store.transaction() as tx:
        contact = find(tx, email)
        reason = Reason.UNSUBSCRIBED if contact.status is Status.UNSUBSCRIBED else Reason.FORGOTTEN
        suppress(tx, contact.email, reason, now=now, by="toma contacts forget")
        tx.delete(CONTACTS, contact.email)
        removed += 1
        if isinstance(tx, Forgetting):
            tx.forget_keys()  # no key naming them left in a change feed either
        for table in (ENROLMENTS, MESSAGES, CONVERSATIONS):
            for key, _doc in list(matching(tx, table, contact=contact.email)):
                tx.delete(table, key)
                removed += 1
    return removed


# --- the suppression list ------------------------------------------------------


_REASONS = {Status.UNSUBSCRIBED: Reason.UNSUBSCRIBED, Status.BOUNCED: Reason.BOUNCED}


def suppression_secret(reader: Reader) -> bytes | None:
    """The list's secret, or None while nothing was ever suppressed."""
    doc = reader.get(META, SUPPRESSION_SECRET_KEY)
    if doc is None:
        return None
    try:
        secret = base64.b64decode(str(doc["secret"]), validate=True)
    except (KeyError, binascii.Error, ValueError):
        secret = b""
    if len(secret) < SECRET_BYTES:
        # Never carry on without it: every entry would silently stop matching.
        raise StoreError(
            f"{META}/{SUPPRESSION_SECRET_KEY}: the suppression list's secret is "
            "damaged; restore the data directory from a backup"
        )
    return secret


def suppression_of(reader: Reader, email: str) -> Entry | None:
    """The suppression entry for ``email`` (any spelling), or None."""
    secret = suppression_secret(reader)
    return _entry(reader, secret, email) if secret else None


def put(tx: Transaction, contact: Contact, *, now: datetime, by: str) -> None:
    """Store ``contact`` inside ``tx``; a final status also puts it on the suppression list.

    For writers that decide a contact's status themselves (the inbox): an
    unsubscribe or a bounce read from mail must outlive ``forget`` as well.
    """
    tx.put(CONTACTS, contact.email, contact.to_doc())
    reason = _REASONS.get(contact.status)
    if reason is not None:
        suppress(tx, contact.email, reason, now=now, by=by)


def suppress(tx: Transaction, email: str, reason: Reason, *, now: datetime, by: str = "") -> Entry:
    """Put ``email`` on the suppression list inside ``tx`` (the secret is made on first use).

    An entry already there is kept if it is as strong (see
    :func:`toma.core.suppression.merged`). ``by`` says how (never the address).
    Returns the entry now stored. For the inbox (an unsubscribe by mail, a
    bounce) and any other writer of a final status.
    """
    secret = suppression_secret(tx)
    if secret is None:
        secret = secrets.token_bytes(SECRET_BYTES)
        tx.put(
            META,
            SUPPRESSION_SECRET_KEY,
            {"secret": base64.b64encode(secret).decode("ascii"), "created_at": iso(now)},
        )
    key = key_for(email, secret)
    old_doc = tx.get(SUPPRESSION, key)
    old = Entry.from_doc(old_doc) if old_doc else None
    entry = merged(old, Entry(reason, iso(now), by))
    if entry != old:
        tx.put(SUPPRESSION, key, entry.to_doc())
    return entry


def _lift(tx: Transaction, email: str) -> None:
    secret = suppression_secret(tx)
    if secret is not None:
        tx.delete(SUPPRESSION, key_for(email, secret))


def _entry(reader: Reader, secret: bytes, email: str) -> Entry | None:
    doc = reader.get(SUPPRESSION, key_for(email, secret))
    return None if doc is None else Entry.from_doc(doc)


def _kept_off(contact: Contact, entry: Entry | None) -> Contact:
    """``contact``, with the list's status if it is on the list and not already final."""
    if entry is None or contact.status.final:
        return contact
    return with_status(
        contact,
        entry.reason.status,
        at=entry.at,
        reason=f"on the suppression list: {entry.describe()}",
    )


def _refusal(entry: Entry) -> str:
    return (
        f"on the suppression list ({entry.describe()}): they are not to be "
        "written to, so nothing was stored"
    )


def _contact_key(email: str) -> str:
    try:
        return normalize_address(email)
    except ContactError:
        return email.strip()
