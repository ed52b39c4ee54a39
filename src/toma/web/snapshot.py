"""The store as the dashboard reads it: every table's documents kept in memory.

Decoding a document from the store costs microseconds; a page over a year of
history (80k outbox records at 10k contacts) would spend most of its time
there on every view. A :class:`Snapshot` reads each table once, then before
each page applies only the writes the store's change feed names (the daemon's,
the CLI's, the dashboard's own), as :class:`toma.daemon.cache.PlanCache` does
for the planner.

The documents handed out are shared between pages: readers never change them.
"""

from __future__ import annotations

from collections.abc import Iterator

from toma.store import TABLES, Document, Store
from toma.store.base import ChangeMark

MAX_WRITTEN = 100_000  # keys of writes remembered; past it, derived views start afresh


class Snapshot:
    """A :class:`~toma.store.Reader` over one store's tables as of the last :meth:`sync`."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[str, Document]] = {}
        self._store: Store | None = None
        self._mark: ChangeMark | None = None
        self._versions: dict[str, int] = {}
        # Every key written since the last full read, in order, for those who keep
        # something derived up to date (:meth:`written_since`).
        self._epoch = 0
        self._written: list[tuple[str, str]] = []

    def sync(self, store: Store) -> bool:
        """Catch up with ``store``; True when anything changed since the last call."""
        mark, changes = store.changes_since(self._mark if store is self._store else None)
        if changes is None or len(self._written) + len(changes) > MAX_WRITTEN:
            self._epoch += 1
            self._written = []
        if changes is None:
            self._tables = {table: dict(store.all(table)) for table in TABLES}
            for table in TABLES:
                self._bump(table)
        else:
            for table in {table for table, _key, _deleted in changes}:
                self._bump(table)
            self._written.extend((table, key) for table, key, _deleted in changes)
            for table, key, deleted in changes:
                rows = self._tables.setdefault(table, {})
                doc = None if deleted else store.get(table, key)
                if doc is None:
                    rows.pop(key, None)
                else:
                    rows[key] = doc
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
