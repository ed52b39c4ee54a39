"""The contacts table: adding, importing, tagging, status changes and forgetting.

Each operation is one store transaction, so a crash leaves either all of it or
none of it. Status rules live in :mod:`toma.contacts`; this module applies them
to what is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from toma.contacts import (
    Contact,
    ImportResult,
    Status,
    clean_tags,
    decode_import,
    merge,
    normalize_address,
    parse_csv,
    parse_vcards,
    with_status,
)
from toma.errors import ContactError, ImportProblem
from toma.logs import fields
from toma.store.base import CONTACTS, CONVERSATIONS, ENROLMENTS, MESSAGES, Reader, Store
from toma.timeutil import iso

log = logging.getLogger(__name__)


def all_contacts(reader: Reader) -> Iterator[Contact]:
    for _key, doc in reader.all(CONTACTS):
        yield Contact.from_doc(doc)


def find(reader: Reader, email: str) -> Contact:
    """The contact for ``email`` (any spelling), or a :class:`ContactError`."""
    key = normalize_address(email)
    doc = reader.get(CONTACTS, key)
    if doc is None:
        raise ContactError("no such contact (see `toma contacts list`)", contact=key)
    return Contact.from_doc(doc)


def add(store: Store, contact: Contact, *, now: datetime) -> tuple[Contact, bool]:
    """Store ``contact``, merged into an existing one of the same address.

    Returns the stored contact and whether it is new.
    """
    with store.transaction() as tx:
        old_doc = tx.get(CONTACTS, contact.email)
        old = Contact.from_doc(old_doc) if old_doc else None
        new = merge(old, replace(contact, added_at=contact.added_at or iso(now)))
        tx.put(CONTACTS, new.email, new.to_doc())
    return new, old is None


@dataclass(frozen=True)
class ImportReport:
    file: str
    added: int
    updated: int
    unchanged: int
    problems: tuple[ImportProblem, ...]


def read_import_file(path: Path, *, now: datetime) -> ImportResult:
    """Parse a .csv or .vcf file into contacts and per-row problems."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportProblem(f"cannot read: {exc.strerror}", file=name) from None
    text, encoding = decode_import(raw, file=name)
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
    does not name are kept.
    """
    result = read_import_file(path, now=now)
    added = updated = unchanged = 0
    with store.transaction() as tx:
        for contact in result.contacts:
            old_doc = tx.get(CONTACTS, contact.email)
            old = Contact.from_doc(old_doc) if old_doc else None
            new = merge(old, contact)
            if old is None:
                added += 1
            elif new == old:
                unchanged += 1
                continue
            else:
                updated += 1
            tx.put(CONTACTS, new.email, new.to_doc())
    return ImportReport(str(path), added, updated, unchanged, result.problems)


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
    address or the mailbox came back).
    """
    with store.transaction() as tx:
        contact = find(tx, email)
        if contact.status is status:
            return contact
        if contact.status not in _ALLOWED[status]:
            raise ContactError(
                f"is {contact.status.value}; only the person can undo that", contact=contact.email
            )
        contact = with_status(contact, status, at=iso(now), reason=reason)
        tx.put(CONTACTS, contact.email, contact.to_doc())
    return contact


def forget(store: Store, email: str) -> int:
    """Erase a contact and everything stored about them; returns the records removed."""
    removed = 0
    with store.transaction() as tx:
        contact = find(tx, email)
        tx.delete(CONTACTS, contact.email)
        removed += 1
        for table in (ENROLMENTS, MESSAGES, CONVERSATIONS):
            for key, doc in list(tx.all(table)):
                if doc.get("contact") == contact.email:
                    tx.delete(table, key)
                    removed += 1
    return removed
