"""The data store: named tables of JSON documents, durable and shared between processes.

``open_store(data_dir)`` gives the embedded implementation (TinyDB tables kept
as a snapshot plus an append-only journal); ``open_configured(config)`` the one
``[store]`` names, embedded or PostgreSQL (:mod:`toma.store.postgres`). The rest
of toma depends only on the :class:`Store` protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from toma.config import Config


def open_store(data_dir: Path) -> Store:
    """Open (creating if needed, owner-only) the store in ``data_dir``."""
    return TinyStore(data_dir)


def open_configured(config: Config) -> Store:
    """The store ``[store]`` names: embedded in ``[paths] data``, or PostgreSQL."""
    if config.store.kind == "postgres":
        # Imported here: psycopg is needed only by those who use it.
        from toma.store.postgres import PgStore

        dsn = config.store.dsn.reveal()
        assert dsn is not None  # noqa: S101 - [store] requires dsn_env or dsn_file
        return PgStore(dsn)
    return TinyStore(config.paths.data)


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
    "open_configured",
    "open_store",
]
