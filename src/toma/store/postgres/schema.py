"""The PostgreSQL store's schema: plain versioned SQL files, each applied in a transaction.

``migrations/NNNN_name.sql`` are applied in order of ``NNNN``, each in the same
transaction as the row of ``toma_schema`` that records it, under an advisory
lock so that two processes opening a new database at once apply each file
once. PostgreSQL's DDL is transactional: a file that fails leaves the
database as it was before it. A database whose schema is newer than this
toma knows is refused rather than written to.

Why not Alembic: the schema is one relation of documents, a change feed and
a sequence, with no model classes to derive it from; Alembic would bring
SQLAlchemy for what a dozen lines do here, and the SQL a user reads before
upgrading would be one step removed from what runs.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import psycopg

from toma.errors import StoreError

MIGRATIONS = "migrations"
LOCK_CLASS = 0x746F6D61  # "toma": the class of toma's advisory locks
MIGRATION_LOCK = 2
_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every migration shipped, in order."""
    folder = resources.files(__package__).joinpath(MIGRATIONS)
    found = []
    for entry in folder.iterdir():
        match = _NAME.fullmatch(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def latest() -> int:
    return migrations()[-1][0]


def migrate(conn: psycopg.Connection[tuple[Any, ...]], *, where: str) -> int:
    """Bring the database up to the latest schema; return its version."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, MIGRATION_LOCK))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS toma_schema ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT coalesce(max(version), 0) FROM toma_schema").fetchone()
        current = int(row[0]) if row else 0
        known = migrations()
        if current > known[-1][0]:
            raise StoreError(
                f"the database's schema is version {current}, newer than this toma knows "
                f"({known[-1][0]}): upgrade toma",
                file=where,
            )
        for version, name, text in known:
            if version > current:
                conn.execute(text.encode())
                conn.execute(
                    "INSERT INTO toma_schema (version, name) VALUES (%s, %s)", (version, name)
                )
                current = version
    return current
