"""The suppression list: who must never be written to again, without keeping who they are.

Theory of operation
-------------------

A contact record says whether a person unsubscribed; ``forget`` erases that
record, and a later import of the owner's spreadsheet would bring the person
back as new. The suppression list outlives both: one entry per address that
objected (unsubscribed), bounced for good, or was forgotten at the person's
request, kept in the store's ``suppression`` table as::

    key = "h1:" hex(HMAC-SHA256(secret, "toma-suppression-v1:" + canonical(address)))
    doc = {"reason": "unsubscribed" | "bounced" | "forgotten", "at": ISO moment, "by": how}

No address is stored: the entry is found again by computing the key of an
address one has in hand (an import row, ``contacts add``), never listed back
into addresses. The secret is 32 random bytes kept in the store itself (the
``meta`` table, made by the first entry, see :mod:`toma.store.records.contacts`), so that
the list and its key are written, copied, backed up and restored together: a
list whose key was lost would silently suppress nobody, the worst way for this
list to fail. (The unsubscribe secret is deliberately not reused: replacing it
is how an owner revokes leaked links, and that must not empty this list.)

``canonical`` is the contact key (:func:`toma.core.contacts.normalize_address`), so
every spelling of an address finds the same entry.

Entries only ever get stronger (:func:`merged`): an objection outranks an
erasure, which outranks a bounce. Only a ``bounced`` entry can be lifted, by the
owner resuming the contact (they fixed the address); an objection is the
person's and stays.

Everything here is pure: the secret, the moment and the address come in.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from toma.core.contacts import Status, normalize_address
from toma.errors import ContactError

KEY_PREFIX: Final = "h1:"
_LABEL: Final = b"toma-suppression-v1:"
SECRET_BYTES: Final = 32
MIN_SECRET_BYTES: Final = 16


class Reason(StrEnum):
    """Why an address is on the list; later members outrank earlier ones."""

    BOUNCED = "bounced"
    FORGOTTEN = "forgotten"
    UNSUBSCRIBED = "unsubscribed"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def status(self) -> Status:
        """The status a stored contact with this entry must have."""
        return Status.BOUNCED if self is Reason.BOUNCED else Status.UNSUBSCRIBED


_RANK = {reason: number for number, reason in enumerate(Reason)}


@dataclass(frozen=True, slots=True)
class Entry:
    """One address on the list: why, since when (ISO), and by what (never the address)."""

    reason: Reason
    at: str
    by: str = ""

    def to_doc(self) -> dict[str, Any]:
        return {"reason": self.reason.value, "at": self.at, "by": self.by}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Entry:
        return cls(Reason(doc["reason"]), str(doc.get("at", "")), str(doc.get("by", "")))

    def describe(self) -> str:
        """ "unsubscribed on 2026-11-25 (one-click unsubscribe)", for the owner."""
        day = self.at[:10]
        text = f"{self.reason.value} on {day}" if day else self.reason.value
        return f"{text} ({self.by})" if self.by else text


def canonical(address: str) -> str:
    """The one spelling hashed: the contact key, or, for what is no valid address
    (a bounce's odd recipient), the text stripped and lowered."""
    try:
        return normalize_address(address)
    except ContactError:
        return address.strip().strip("<>").strip().lower()


def key_for(address: str, secret: bytes) -> str:
    """The list's key for ``address``: a keyed hash, the same for every spelling."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the suppression secret must be at least {MIN_SECRET_BYTES} bytes")
    mac = hmac.new(secret, _LABEL + canonical(address).encode("utf-8"), hashlib.sha256)
    return KEY_PREFIX + mac.hexdigest()


def merged(old: Entry | None, new: Entry) -> Entry:
    """What the list keeps when ``new`` is added where ``old`` is: the stronger reason;
    of equal ones, the first (the date the person first asked)."""
    if old is None or new.reason.rank > old.reason.rank:
        return new
    return old


def entry_for(
    address: str, reason: Reason, at: str, secret: bytes, *, by: str = ""
) -> tuple[str, dict[str, Any]]:
    """``(key, doc)`` to put in the ``suppression`` table for ``address``.

    For a writer that has the secret in hand and does its own merging; most
    callers want :func:`toma.store.records.contacts.suppress`, which does both in a
    transaction.
    """
    return key_for(address, secret), Entry(reason, at, by).to_doc()
