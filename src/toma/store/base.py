"""The storage interface: named tables of JSON documents keyed by strings.

The rest of toma sees only this protocol, so that a server database can take
the embedded store's place. Theory of operation:

- Reads see the state as of the last :meth:`Store.refresh` or transaction.
- All writes happen inside :meth:`Store.transaction`, which takes the store's
  write lock, catches up with what other processes wrote, yields a
  :class:`Transaction`, and on a clean exit makes the whole transaction durable
  at once (one atomic flush whose cost is proportional to what changed). An
  exception inside the block discards every change made in it.
- :meth:`Store.daemon_lock` is held by ``toma run`` for its whole life: one
  daemon per data directory. Short commands (``toma contacts add``) do not need
  it and may write while the daemon runs.
- :meth:`Store.changes_since` is a change feed: a reader that keeps a decoded
  model of some tables (the daemon's planner, from tick to tick) learns which
  keys to read again instead of reading everything.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

Document = dict[str, Any]

CONTACTS = "contacts"
ENROLMENTS = "enrolments"
MESSAGES = "messages"
CONVERSATIONS = "conversations"
INVOICES = "invoices"
SYNC = "sync"
META = "meta"
SUPPRESSION = "suppression"  # keyed hashes of addresses never to write to (toma.core.suppression)
TABLES = (CONTACTS, ENROLMENTS, MESSAGES, CONVERSATIONS, INVOICES, SYNC, META, SUPPRESSION)

SCHEMA_VERSION = 1


class Reader(Protocol):
    def get(self, table: str, key: str) -> Document | None: ...

    def all(self, table: str) -> Iterator[tuple[str, Document]]: ...

    def count(self, table: str) -> int: ...


class Transaction(Reader, Protocol):
    def put(self, table: str, key: str, doc: Document) -> None: ...

    def delete(self, table: str, key: str) -> None: ...


@dataclass(frozen=True, slots=True)
class ChangeMark:
    """A point in one store's change feed; only the store that gave it can read it."""

    source: object  # which feed: a feed starts again when the store reloads everything
    position: int


Changed = tuple[str, str, bool]
"""One write in a change feed: (table, key, whether it deleted the key)."""


class Store(Reader, Protocol):
    def transaction(self) -> AbstractContextManager[Transaction]: ...

    def refresh(self) -> None: ...

    def changes_since(self, mark: ChangeMark | None) -> tuple[ChangeMark, list[Changed] | None]:
        """The mark of what reads see now, and the writes made visible since ``mark``.

        The writes come in the order they were made, one entry per put or
        delete, so that a reader replaying them (then reading each key's
        document as it is now) can keep even the order of :meth:`all`. ``None``
        instead of the list means "read everything again": no ``mark``, a mark
        from another feed, or one too far behind.
        """
        ...

    def daemon_lock(self) -> AbstractContextManager[None]: ...

    def close(self) -> None: ...
