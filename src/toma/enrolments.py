"""The enrolments table by hand: ``toma enroll`` and ``toma unenroll``.

Enrolment by tag happens in the daemon's tick; these are the owner's own
decisions, one store transaction each.
"""

from __future__ import annotations

from datetime import datetime

from toma.errors import TomaError
from toma.sequences import Enrolment, enrolment_key
from toma.store import CONTACTS, ENROLMENTS, Store


def enrol(store: Store, contact: str, sequence: str, *, now: datetime) -> Enrolment:
    """Enrol ``contact`` in ``sequence`` by hand (or start again a stopped enrolment)."""
    with store.transaction() as tx:
        if tx.get(CONTACTS, contact) is None:
            raise TomaError("no such contact (see `toma contacts list`)", contact=contact)
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
