"""The enrolments table by hand: ``toma enroll`` and ``toma unenroll``.

Enrolment by tag is decided in the daemon's tick; these are the owner's own
decisions, one store transaction each. Whoever writes an enrolment checks, in
the transaction that writes it, that its contact is still there and may be
written to: a contact unsubscribed, bounced or forgotten meanwhile (by the
one-click endpoint, another command) must not get a step "due now".
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from toma.core.contacts import Contact
from toma.core.enrolments import Enrolment, enrolment_key
from toma.errors import TomaError
from toma.store import CONTACTS, ENROLMENTS, Reader, Store
from toma.store.records.contacts import suppression_of
from toma.store.records.query import matching


def refusal(reader: Reader, contact: str) -> str | None:
    """Why ``contact`` may not be enrolled now, or None if it may."""
    doc = reader.get(CONTACTS, contact)
    if doc is None:
        return "no such contact (see `toma contacts list`)"
    found = Contact.from_doc(doc)
    if found.status.final:
        return f"is {found.status.value}: nothing is sent to them any more"
    entry = suppression_of(reader, contact)
    if entry is not None:
        return f"is on the suppression list ({entry.describe()})"
    return None


def enrol(store: Store, contact: str, sequence: str, *, now: datetime) -> Enrolment:
    """Enrol ``contact`` in ``sequence`` by hand (or start again a stopped enrolment).

    An unsubscribed, bounced or suppressed contact is refused.
    """
    with store.transaction() as tx:
        why = refusal(tx, contact)
        if why is not None:
            raise TomaError(why, contact=contact)
        old = tx.get(ENROLMENTS, enrolment_key(contact, sequence))
        if old is not None:
            enrolment = Enrolment.from_doc(old)
            if enrolment.state == "active":
                return enrolment
            enrolment = enrolment.resumed()
        else:
            enrolment = Enrolment(
                contact=contact, sequence=sequence, enrolled_at=now, source="hand"
            )
        tx.put(ENROLMENTS, enrolment.key, enrolment.to_doc())
    return enrolment


def unenrol(store: Store, contact: str, sequence: str) -> Enrolment:
    """Stop ``contact``'s enrolment in ``sequence`` (kept, so the tag does not enrol again)."""
    with store.transaction() as tx:
        old = tx.get(ENROLMENTS, enrolment_key(contact, sequence))
        if old is None:
            raise TomaError(f"is not enrolled in {sequence!r}", contact=contact)
        enrolment = Enrolment.from_doc(old).stopped("unenrolled by hand")
        tx.put(ENROLMENTS, enrolment.key, enrolment.to_doc())
    return enrolment


def record_tag_enrolments(store: Store, new: Iterable[Enrolment]) -> list[Enrolment]:
    """Write the enrolments a tick's tag rules decided, and return those written.

    Each is checked again in the transaction: one whose contact was forgotten,
    unsubscribed or bounced since the tick read the contacts (or that exists
    by now) is left out, so a tick never re-creates a forgotten person's
    records nor enrols someone who just left.
    """
    written: list[Enrolment] = []
    with store.transaction() as tx:
        for enrolment in new:
            contact = tx.get(CONTACTS, enrolment.contact)
            if contact is None or contact.get("status", "active") != "active":
                continue
            if tx.get(ENROLMENTS, enrolment.key) is not None:
                continue
            if suppression_of(tx, enrolment.contact) is not None:
                continue
            tx.put(ENROLMENTS, enrolment.key, enrolment.to_doc())
            written.append(enrolment)
    return written


def of_contact(reader: Reader, contact: str) -> list[Enrolment]:
    """``contact``'s enrolments, in every state, by sequence name."""
    found = [Enrolment.from_doc(doc) for _key, doc in matching(reader, ENROLMENTS, contact=contact)]
    return sorted(found, key=lambda e: e.sequence)


def all_enrolments(reader: Reader) -> list[Enrolment]:
    """Every enrolment, in store order."""
    return [Enrolment.from_doc(doc) for _key, doc in reader.all(ENROLMENTS)]


def keys_by_contact(reader: Reader) -> dict[str, list[str]]:
    """Each contact's enrolment keys, read in one pass (an inbound message concerns one
    contact, and the table may be large)."""
    found: dict[str, list[str]] = {}
    for key, doc in reader.all(ENROLMENTS):
        found.setdefault(doc["contact"], []).append(key)
    return found
