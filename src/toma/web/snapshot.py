"""The store as the dashboard reads it: every table's documents kept in memory.

Decoding a document from the store costs microseconds; a page over a year of
history (80k outbox records at 10k contacts) would spend most of its time
there on every view. A :class:`Snapshot` reads each table once, then before
each page applies only the writes the store's change feed names (the daemon's,
the CLI's, the dashboard's own), as :class:`toma.daemon.cache.PlanCache` does
for the planner.

A page asking for some documents by their fields (a contact's messages, the
invoice reminders: :func:`toma.store.records.query.matching`) is answered from
an index of that field (:meth:`Snapshot.where`), made at the first such
question and kept up to date by :meth:`sync`, rather than by reading the whole
table (80k records: some 60 ms a question).

The documents handed out are shared between pages: readers never change them.

A store that keeps its documents elsewhere (PostgreSQL) can hold more than a
process should: some 1.6 kB of memory a document, a gigabyte at 100,000
contacts in three sequences. Given ``most``, :meth:`Snapshot.sync` counts
before it reads everything and refuses (:class:`TooLargeToHold`) a store
larger than that, rather than take a daemon's memory with it; it counts again
after ``RECOUNT_EVERY``, not at every page.
"""

from __future__ import annotations

import logging
import time as monotonic
from collections.abc import Hashable, Iterator

from toma.errors import TomaError
from toma.logs import fields
from toma.store import TABLES, Document, Store
from toma.store.base import ChangeMark

MAX_WRITTEN = 100_000  # keys of writes remembered; past it, derived views start afresh
RECOUNT_EVERY = 600.0  # seconds a store found too large stays refused without a count

log = logging.getLogger(__name__)


class TooLargeToHold(TomaError):
    """The store holds more documents than may be read into memory (``max_documents``)."""

    def __init__(self, count: int, most: int) -> None:
        super().__init__(
            f"this store holds {count:,} documents, more than the {most:,} the dashboard"
            " may read into memory (about 1.6 kB each): toma plan, toma status and"
            " toma log answer from the store itself, or raise the limit on a machine"
            " with the memory for it",
            key="dashboard.max_documents",
        )
        self.count = count
        self.most = most


class Snapshot:
    """A :class:`~toma.store.Reader` over one store's tables as of the last :meth:`sync`."""

    def __init__(self, *, most: int | None = None) -> None:
        self._most = most
        self._refused: tuple[float, TooLargeToHold] | None = None  # when, and why
        self._tables: dict[str, dict[str, Document]] = {}
        self._store: Store | None = None
        self._mark: ChangeMark | None = None
        self._versions: dict[str, int] = {}
        # Every key written since the last full read, in order, for those who keep
        # something derived up to date (:meth:`written_since`).
        self._epoch = 0
        self._written: list[tuple[str, str]] = []
        self._indexes: dict[tuple[str, str], _Index] = {}  # by (table, field)

    @property
    def refused(self) -> bool:
        """Whether the store was found too large to hold (see the module docstring)."""
        return self._refused is not None

    def sync(self, store: Store) -> bool:
        """Catch up with ``store``; True when anything changed since the last call.

        A store holding more than ``most`` documents is not read whole:
        :class:`TooLargeToHold` is raised instead, and nothing changes here.
        """
        if self._refused is not None:
            since, refusal = self._refused
            if monotonic.monotonic() - since < RECOUNT_EVERY:
                raise refusal
        mark, changes = store.changes_since(self._mark if store is self._store else None)
        if changes is None and self._most is not None:
            count = sum(store.count(table) for table in TABLES)
            if count > self._most:
                refusal = TooLargeToHold(count, self._most)
                if self._refused is None:
                    log.warning(
                        "dashboard not held", extra=fields(documents=count, most=self._most)
                    )
                self._refused = (monotonic.monotonic(), refusal)
                raise refusal
        self._refused = None
        if changes is None or len(self._written) + len(changes) > MAX_WRITTEN:
            self._epoch += 1
            self._written = []
        if changes is None:
            self._tables = {table: dict(store.all(table)) for table in TABLES}
            self._indexes.clear()
            for table in TABLES:
                self._bump(table)
        else:
            for table in {table for table, _key, _deleted in changes}:
                self._bump(table)
            self._written.extend((table, key) for table, key, _deleted in changes)
            indexed = {table for table, _field in self._indexes}
            for table, key, deleted in changes:
                rows = self._tables.setdefault(table, {})
                doc = None if deleted else store.get(table, key)
                old = rows.pop(key, None) if doc is None else rows.get(key)
                if doc is not None:
                    rows[key] = doc
                if table in indexed:
                    self._reindex(table, key, old, doc)
        self._store, self._mark = store, mark
        return changes is None or bool(changes)

    def _bump(self, table: str) -> None:
        self._versions[table] = self._versions.get(table, 0) + 1

    def version(self, *tables: str) -> tuple[int, ...]:
        """Changes whenever one of ``tables`` changed: a key for what is derived from them."""
        return tuple(self._versions.get(table, 0) for table in tables)

    @property
    def position(self) -> tuple[int, int]:
        """Where the record of writes stands now: for :meth:`written_since`."""
        return self._epoch, len(self._written)

    def written_since(self, position: tuple[int, int] | None) -> list[tuple[str, str]] | None:
        """The (table, key) written since ``position``; None: read everything again."""
        if position is None or position[0] != self._epoch:
            return None
        return self._written[position[1] :]

    def get(self, table: str, key: str) -> Document | None:
        return self._tables.get(table, {}).get(key)

    def all(self, table: str) -> Iterator[tuple[str, Document]]:
        yield from self._tables.get(table, {}).items()

    def count(self, table: str) -> int:
        return len(self._tables.get(table, {}))

    def where(self, table: str, **equal: str | None) -> Iterator[tuple[str, Document]]:
        """The documents whose fields equal ``equal``, in the table's order (see
        :func:`toma.store.records.query.matching`), from the index of one field."""
        rows = self._tables.get(table, {})
        if not equal:
            yield from rows.items()
            return
        keys = min((self._index(table, name).keys(value) for name, value in equal.items()), key=len)
        for key in keys:
            doc = rows[key]
            if all(doc.get(name) == value for name, value in equal.items()):
                yield key, doc

    def prepare(self, table: str, *names: str) -> None:
        """Make the indexes of these fields now, before the first question needs them."""
        for name in names:
            self._index(table, name)

    def _index(self, table: str, name: str) -> _Index:
        index = self._indexes.get((table, name))
        if index is None:
            rows = self._tables.setdefault(table, {})
            index = self._indexes[table, name] = _Index(name, rows)
        return index

    def _reindex(self, table: str, key: str, old: Document | None, new: Document | None) -> None:
        for (indexed, _name), index in self._indexes.items():
            if indexed == table:
                index.move(key, old, new)


class _Index:
    """The keys of one table's documents by the value of one field, each in the table's order.

    A key keeps its place in its table when its document is written again; so
    a key whose value changed goes into its new list out of order, and that
    list is made again from the table when next asked (seldom: the fields
    asked for, such as a message's contact, hardly ever change).
    """

    def __init__(self, name: str, rows: dict[str, Document]) -> None:
        self.name = name
        self._rows = rows
        self._keys: dict[Hashable, dict[str, None]] = {}
        self._unordered: set[Hashable] = set()
        for key, doc in rows.items():
            self._keys.setdefault(_value(doc, name), {})[key] = None

    def keys(self, value: Hashable) -> dict[str, None]:
        if value in self._unordered:
            self._unordered.discard(value)
            self._keys[value] = {
                key: None for key, doc in self._rows.items() if _value(doc, self.name) == value
            }
        return self._keys.get(value, {})

    def move(self, key: str, old: Document | None, new: Document | None) -> None:
        """Follow one write: ``key``'s document was ``old``, is now ``new`` (None: absent)."""
        was = None if old is None else _value(old, self.name)
        now = None if new is None else _value(new, self.name)
        if old is not None and (new is None or was != now):
            self._keys.get(was, {}).pop(key, None)
        if new is not None and (old is None or was != now):
            self._keys.setdefault(now, {})[key] = None
            if old is not None:
                self._unordered.add(now)  # the key kept its old place in the table


def _value(doc: Document, name: str) -> Hashable:
    value = doc.get(name)
    # A list (or any value no dict can hold) equals no string asked for: it is
    # kept under its text, where no question finds it.
    return value if isinstance(value, Hashable) else ("unhashable", repr(value))
