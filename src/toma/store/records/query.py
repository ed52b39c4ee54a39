"""Asking a table for the documents whose fields equal some values.

The embedded store holds every table in memory, and answers by reading them
all; PostgreSQL answers with an indexed query (:meth:`toma.store.postgres.PgStore.where`).
The records modules ask through :func:`matching`, so the difference lives here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator
from typing import Protocol, runtime_checkable

from toma.store.base import Document, Reader


@runtime_checkable
class Querying(Protocol):
    def where(self, table: str, **equal: str | None) -> Iterator[tuple[str, Document]]: ...


def matching(reader: Reader, table: str, **equal: str | None) -> Iterator[tuple[str, Document]]:
    """The documents of ``table`` (key, document) whose fields equal ``equal``, in store order."""
    if isinstance(reader, Querying):
        return reader.where(table, **equal)
    return (
        (key, doc)
        for key, doc in reader.all(table)
        if all(doc.get(name) == value for name, value in equal.items())
    )


@runtime_checkable
class Forgetting(Protocol):
    """A transaction that can keep no trace of the keys it deletes (PostgreSQL's feed)."""

    def forget_keys(self) -> None: ...


@runtime_checkable
class Counting(Protocol):
    def counted_by(self, table: str, name: str, **equal: str | None) -> dict[str, int]: ...


def counted_by(reader: Reader, table: str, name: str, **equal: str | None) -> dict[str, int]:
    """How many documents of ``table`` whose fields equal ``equal`` hold each value of the
    field ``name`` (``""`` for none): counted by PostgreSQL, by reading them elsewhere."""
    if isinstance(reader, Counting):
        return reader.counted_by(table, name, **equal)
    counts: Counter[str] = Counter()
    for _key, doc in matching(reader, table, **equal):
        value = doc.get(name)
        counts["" if value is None else str(value)] += 1
    return dict(counts)


@runtime_checkable
class QueryingAny(Protocol):
    def where_any(
        self, table: str, name: str, values: Collection[str]
    ) -> Iterator[tuple[str, Document]]: ...


def by_keys(reader: Reader, table: str, keys: Collection[str]) -> dict[str, Document]:
    """The documents of ``table`` under ``keys``, those that exist: one indexed query on
    PostgreSQL (a round trip per key would cost more than the rest of a write), a
    lookup per key elsewhere."""
    if isinstance(reader, QueryingAny):
        return dict(reader.where_any(table, "key", keys))
    found = {}
    for key in keys:
        doc = reader.get(table, key)
        if doc is not None:
            found[key] = doc
    return found


def matching_any(
    reader: Reader, table: str, name: str, values: Collection[str]
) -> Iterator[tuple[str, Document]]:
    """The documents of ``table`` whose key (``name`` "key") or field ``name`` is one of
    ``values``: an indexed query on PostgreSQL, a reading of the table elsewhere."""
    if isinstance(reader, QueryingAny):
        return reader.where_any(table, name, values)
    wanted = set(values)
    if name == "key":
        return ((key, doc) for key, doc in reader.all(table) if key in wanted)
    return ((key, doc) for key, doc in reader.all(table) if doc.get(name) in wanted)


@runtime_checkable
class QueryingKeys(Protocol):
    def keyed_from(self, table: str, prefix: str) -> Iterator[tuple[str, Document]]: ...


def keyed_from(reader: Reader, table: str, prefix: str) -> Iterator[tuple[str, Document]]:
    """The documents of ``table`` whose key starts with ``prefix``, in store order: only
    those are read from PostgreSQL, the table is read elsewhere."""
    if isinstance(reader, QueryingKeys):
        return reader.keyed_from(table, prefix)
    return ((key, doc) for key, doc in reader.all(table) if key.startswith(prefix))


@runtime_checkable
class QueryingFrom(Protocol):
    def where_from(self, table: str, name: str, lowest: str) -> Iterator[tuple[str, Document]]: ...


def matching_from(
    reader: Reader, table: str, name: str, lowest: str
) -> Iterator[tuple[str, Document]]:
    """The documents of ``table`` whose text field ``name`` is ``lowest`` or after, compared
    as text: an indexed range on PostgreSQL, a reading of the table elsewhere."""
    if isinstance(reader, QueryingFrom):
        return reader.where_from(table, name, lowest)
    return (
        (key, doc)
        for key, doc in reader.all(table)
        if isinstance(doc.get(name), str) and doc[name] >= lowest
    )
