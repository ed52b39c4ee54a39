"""The inbound-mail interface: a source hands over raw messages in batches.

Theory of operation
-------------------

A :class:`Source` reads the owner's mailbox and never changes it: nothing is
marked read, moved or deleted. ``fetch(cursor, limit=n)`` returns at most ``n``
messages, oldest first, and a :class:`Cursor` positioned after the last one
returned. The caller stores that cursor in the same store transaction as what
it made of the batch, and calls again until a batch comes back short, so a
crash either records a batch and moves past it, or does neither; a restart
resumes from the stored cursor.

A batch also gives the position after each of its messages
(:meth:`Batch.cursor_after`), so that a caller may stop part-way — asked to
stop, out of time, or to record a risky message on its own — and store a
cursor from which the next fetch resumes exactly after the last message it
recorded.

A source may hand the same message over more than once — after an IMAP
UIDVALIDITY change (``Batch.resynced``), or when a Maildir file is renamed by a
mail client — so the caller dedupes, by :attr:`Inbound.key` and by Message-ID.
What a source promises is the other direction: a message that arrives is
handed over at least once.

The cursor is one JSON-able value for every kind of source, so the caller can
keep it without knowing which kind it talks to::

    IMAP      {"folder": "INBOX", "uidvalidity": 1700000000, "last_uid": 42}
    Maildir   {"changed_ns": 1700000000123456789, "recent": ["1700000000.M1P2.host"]}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from toma.errors import TomaError


class InboxError(TomaError):
    """The mailbox cannot be read as configured: a missing folder, an untrusted certificate…"""


class InboxLoginError(InboxError):
    """The server refused the username and password; trying again will not help."""


class InboxUnavailable(InboxError):
    """The server could not be reached or dropped the connection: worth trying again later."""


@dataclass(frozen=True)
class Inbound:
    """One message as the source holds it.

    ``key`` is stable and unique within the source (``imap:INBOX:<uidvalidity>:<uid>``,
    ``maildir:<unique name>``); ``received_at`` is when the mailbox got it, aware UTC,
    if the source knows.
    """

    key: str
    data: bytes
    received_at: datetime | None


@dataclass(frozen=True)
class Cursor:
    """Where a source got to. Each kind of source uses its own fields and ignores the others.

    IMAP: the folder, its UIDVALIDITY and the highest UID handed over.
    Maildir: the inode change time of the last file handed over, and the names
    handed over shortly before it (see :mod:`toma.inbox.maildir`).
    """

    folder: str | None = None
    uidvalidity: int | None = None
    last_uid: int = 0
    changed_ns: int | None = None
    recent: tuple[str, ...] = ()

    def to_doc(self) -> dict[str, Any]:
        """A JSON-able dict holding only the fields in use."""
        doc: dict[str, Any] = {}
        if self.folder is not None:
            doc["folder"] = self.folder
        if self.uidvalidity is not None:
            doc["uidvalidity"] = self.uidvalidity
            doc["last_uid"] = self.last_uid
        if self.changed_ns is not None:
            doc["changed_ns"] = self.changed_ns
        if self.recent:
            doc["recent"] = list(self.recent)
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any] | None) -> Cursor:
        """Read back what :meth:`to_doc` wrote; an empty or missing doc is the start."""
        if not doc:
            return cls()
        bad = _bad_field(doc)
        if bad:
            raise InboxError(
                f"the stored inbox position has a bad {bad!r}: {dict(doc)!r}; remove it to "
                "read the mailbox again from the start (recorded messages are not logged twice)"
            )
        return cls(
            folder=doc.get("folder"),
            uidvalidity=doc.get("uidvalidity"),
            last_uid=doc.get("last_uid", 0),
            changed_ns=doc.get("changed_ns"),
            recent=tuple(doc.get("recent", ())),
        )


def _bad_field(doc: Mapping[str, Any]) -> str | None:
    """The first field of a stored cursor that :meth:`Cursor.to_doc` could not have written."""
    folder = doc.get("folder")
    if folder is not None and not isinstance(folder, str):
        return "folder"
    for name in ("uidvalidity", "changed_ns"):
        value = doc.get(name)
        if value is not None and not _is_int(value):
            return name
    last_uid = doc.get("last_uid", 0)
    if not _is_int(last_uid) or last_uid < 0:
        return "last_uid"
    recent = doc.get("recent", [])
    if not isinstance(recent, list | tuple) or not all(isinstance(n, str) for n in recent):
        return "recent"
    return None


def _is_int(value: object) -> bool:
    # bool is an int to Python, but True is no UID.
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Batch:
    """What one ``fetch`` returned.

    ``resynced`` is true when the source could not continue from the cursor (a
    new UIDVALIDITY, another folder) and started again from the beginning.
    ``positions[i]`` is the cursor right after ``messages[i]``; a source that
    cannot tell leaves it empty, and the batch can then only be taken whole.
    """

    messages: tuple[Inbound, ...]
    cursor: Cursor
    resynced: bool = False
    positions: tuple[Cursor, ...] = ()

    def cursor_after(self, count: int) -> Cursor | None:
        """Where to resume after the first ``count`` messages; None if that cannot be told."""
        if count >= len(self.messages):
            return self.cursor
        if count < 1 or len(self.positions) != len(self.messages):
            return None
        return self.positions[count - 1]


class Source(Protocol):
    """A mailbox read in batches. ``fetch`` blocks: the daemon calls it in a thread."""

    def fetch(self, cursor: Cursor | None, *, limit: int = 500) -> Batch: ...

    def close(self) -> None: ...


def check_limit(limit: int) -> None:
    """Refuse a limit that would make the caller's "until a short batch" loop meaningless."""
    if not _is_int(limit) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
