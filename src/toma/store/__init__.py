"""The data store: named tables of JSON documents, durable and shared between processes.

``open_store(data_dir)`` gives the embedded implementation (TinyDB tables kept
as a snapshot plus an append-only journal); the rest of toma depends only on
the :class:`Store` protocol.
"""

from __future__ import annotations

from pathlib import Path

from toma.store.base import (
    CONTACTS,
    CONVERSATIONS,
    ENROLMENTS,
    INVOICES,
    MESSAGES,
    META,
    SCHEMA_VERSION,
    SUPPRESSION,
    SYNC,
    TABLES,
    Document,
    Reader,
    Store,
    Transaction,
)
from toma.store.embedded.tinydb import TinyStore


def open_store(data_dir: Path) -> Store:
    """Open (creating if needed, owner-only) the store in ``data_dir``."""
    return TinyStore(data_dir)


__all__ = [
    "CONTACTS",
    "CONVERSATIONS",
    "ENROLMENTS",
    "INVOICES",
    "MESSAGES",
    "META",
    "SCHEMA_VERSION",
    "SUPPRESSION",
    "SYNC",
    "TABLES",
    "Document",
    "Reader",
    "Store",
    "TinyStore",
    "Transaction",
    "open_store",
]
