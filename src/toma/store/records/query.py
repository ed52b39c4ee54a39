"""Asking a table for the documents whose fields equal some values.

The embedded store holds every table in memory, and answers by reading them
all; PostgreSQL answers with an indexed query (:meth:`toma.store.postgres.PgStore.where`).
The records modules ask through :func:`matching`, so the difference lives here.
"""

from __future__ import annotations

from collections.abc import Iterator
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
