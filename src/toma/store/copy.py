"""Copying a whole store to another, of either backend, and proving the copy whole.

:func:`copy_store` reads every table of the source in its order and writes it
to an empty destination in transactions of ``batch`` documents (one
transaction for a million documents would hold them all in memory twice),
then reads both again: :func:`fingerprint` gives each table's count and a
checksum that does not depend on the order of the documents nor on the order
of their fields (the sum, modulo 2**256, of the SHA-256 of each key and its
canonical JSON). A copy is good when every table's fingerprint is the same on
both sides; otherwise :class:`~toma.errors.StoreError` names the tables that
differ. The store's own bookkeeping (``meta/store``) is each store's and is not
copied.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from toma.errors import StoreError
from toma.store.base import META, TABLES, Document, Reader, Store
from toma.store.embedded.snapshot import STORE_META_KEY

BATCH = 10_000
_MOD = 1 << 256


@dataclass(frozen=True)
class Fingerprint:
    count: int
    checksum: str  # 64 hex digits


def _own(table: str, key: str) -> bool:
    return table == META and key == STORE_META_KEY


def _digest(key: str, doc: Document) -> int:
    text = json.dumps([key, doc], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")


def fingerprint(reader: Reader, table: str) -> Fingerprint:
    """``table``'s count and order-free checksum (see the module docstring)."""
    count = total = 0
    for key, doc in reader.all(table):
        if _own(table, key):
            continue
        count += 1
        total = (total + _digest(key, doc)) % _MOD
    return Fingerprint(count, f"{total:064x}")


def copy_store(
    source: Store,
    destination: Store,
    *,
    batch: int = BATCH,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, Fingerprint]:
    """Copy every table of ``source`` into the empty ``destination``, then verify it.

    Returns each table's fingerprint, the same on both sides.
    """
    source.refresh()
    destination.refresh()
    full = [t for t in TABLES if any(not _own(t, key) for key, _doc in destination.all(t))]
    if full:
        raise StoreError(
            f"the destination is not empty ({', '.join(full)}): copy into an empty store only"
        )
    for table in TABLES:
        pending: list[tuple[str, Document]] = []
        done = 0
        for key, doc in source.all(table):
            if _own(table, key):
                continue
            pending.append((key, doc))
            if len(pending) >= batch:
                done += _write(destination, table, pending)
                pending = []
                if progress is not None:
                    progress(table, done)
        done += _write(destination, table, pending)
        if progress is not None:
            progress(table, done)
    destination.refresh()
    prints: dict[str, Fingerprint] = {}
    differ: list[str] = []
    for table in TABLES:
        mine, theirs = fingerprint(source, table), fingerprint(destination, table)
        prints[table] = mine
        if mine != theirs:
            differ.append(f"{table} ({mine.count} documents, copied {theirs.count})")
    if differ:
        raise StoreError(f"the copy differs from the source: {', '.join(differ)}")
    return prints


def _write(store: Store, table: str, docs: list[tuple[str, Document]]) -> int:
    if docs:
        with store.transaction() as tx:
            for key, doc in docs:
                tx.put(table, key, doc)
    return len(docs)
