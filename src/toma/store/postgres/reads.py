"""Reading the PostgreSQL store: by key, by table, by indexed field, and who can be due.

What both :class:`~toma.store.postgres.store.PgStore` and its transactions
answer, on a connection each gives (see the package docstring).
"""

from __future__ import annotations

import json
import sys
from collections import deque
from collections.abc import Collection, Iterator
from concurrent.futures import CancelledError, Executor, Future
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg import sql

from toma.core.earliest import Earliest
from toma.errors import StoreError
from toma.store.base import TABLES, Document
from toma.store.postgres import due

PAGE = 5000  # documents read per query by all()
ANY_PAGE = 2000  # values asked per query by where_any(), the next page fetched meanwhile
QUERY_FIELDS = frozenset({"state", "contact", "kind", "ref", "answers", "status"})
"""The document fields :meth:`PgStore.where` may test: each has an index (migrations)."""
RANGE_FIELDS = frozenset({"updated_at"})  # :meth:`PgStore.where_from`'s, indexed (0002)

Conn = psycopg.Connection[tuple[Any, ...]]

# Documents come as text and are decoded here: json.loads on bytes (psycopg's own
# loader) first guesses their encoding, a third of the time of reading a table.
# msgspec decodes them in about half json's time, the interning below included: a
# tick's read of 20,000 contacts at 1M took 2.95 s with json, 2.18 s with msgspec
# (bench/pg_decode.py, which prints both). It gives what json gives, integers of any
# size included, or refuses: what it refuses (a number past a double, which jsonb
# keeps) json decodes as it always did.
_fast = msgspec.json.Decoder().decode
_json = json.JSONDecoder().decode
_intern = sys.intern


def decode(text: str) -> Document:
    """A document, its string values (and those of its flat lists) interned.

    Every message and enrolment repeats its contact's address, its sequence, its
    state: decoded apart, each would be a string of its own in the daemon's
    model of the store, several times the memory (the embedded store shares them
    the same way). Interned strings are freed with their last user.
    """
    try:
        doc: Document = _fast(text)
    except msgspec.DecodeError:
        doc = _json(text)
    for name, value in doc.items():
        kind = type(value)
        if kind is str:
            doc[name] = _intern(value)
        elif kind is list and all(type(item) is str for item in value):
            doc[name] = [_intern(item) for item in value]
    return doc


def check_table(table: str, where: str) -> None:
    if table not in TABLES:
        raise StoreError(f"unknown table {table!r} (known: {', '.join(TABLES)})", file=where)


@contextmanager
def pg_errors(where: str) -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(f"PostgreSQL: {text}", file=where) from exc


def _where_clause(table: str, equal: dict[str, str | None]) -> sql.Composed:
    parts = [sql.SQL("tbl = {}").format(sql.Literal(table))]
    for name, value in equal.items():
        # Literal field names, so that the planner matches the expression indexes.
        field = sql.SQL("doc ->> {}").format(sql.Literal(name))
        if value is None:
            parts.append(sql.SQL("{} IS NULL").format(field))
        else:
            parts.append(sql.SQL("{} = {}").format(field, sql.Literal(value)))
    return sql.SQL(" AND ").join(parts)


class Reads:
    """The reads both the store and a transaction answer, on a connection given by ``_conn``."""

    _where: str
    # Where the store fetches a read's next page while its caller decodes the last
    # one; None in a transaction, whose reads share its one connection.
    _ahead: Executor | None = None

    @contextmanager
    def _conn(self) -> Iterator[Conn]:
        raise NotImplementedError
        yield  # pragma: no cover

    def _before_read(self) -> None:
        """A transaction writes what it holds first, so that its reads see it."""

    def get(self, table: str, key: str) -> Document | None:
        check_table(table, self._where)
        self._before_read()
        with self._conn() as conn, pg_errors(self._where):
            row = conn.execute(
                "SELECT doc::text FROM toma_documents WHERE tbl = %s AND key = %s", (table, key)
            ).fetchone()
        return None if row is None else decode(row[0])

    def all(self, table: str) -> Iterator[tuple[str, Document]]:
        check_table(table, self._where)
        return self._pages(sql.SQL("tbl = {}").format(sql.Literal(table)))

    def keyed_from(self, table: str, prefix: str) -> Iterator[tuple[str, Document]]:
        """The documents of ``table`` whose key starts with ``prefix``, in store order: the
        keys are tested, only the documents found are read."""
        check_table(table, self._where)
        condition = sql.SQL("tbl = {} AND starts_with(key, {})")
        return self._pages(condition.format(sql.Literal(table), sql.Literal(prefix)))

    def tagged_any(self, tags: Collection[str]) -> Iterator[tuple[str, Document]]:
        """The contacts whose ``tags`` hold at least one of ``tags``, in store order."""
        condition = sql.SQL(
            "tbl = 'contacts' AND json_typeof(doc -> 'tags') = 'array'"
            " AND (doc -> 'tags')::jsonb ?| {}"
        ).format(sql.Literal(sorted(tags)))
        return self._pages(condition)

    def where(self, table: str, **equal: str | None) -> Iterator[tuple[str, Document]]:
        """The documents of ``table`` whose fields equal ``equal``, by an indexed query."""
        check_table(table, self._where)
        unknown = set(equal) - QUERY_FIELDS
        if unknown:
            raise StoreError(f"no index on {', '.join(sorted(unknown))}", file=self._where)
        return self._pages(_where_clause(table, equal))

    def where_any(
        self, table: str, name: str, values: Collection[str]
    ) -> Iterator[tuple[str, Document]]:
        """The documents of ``table`` whose key (``name`` "key") or field ``name`` is one of
        ``values``, in store order within each batch of values, by an indexed query."""
        check_table(table, self._where)
        if name != "key" and name not in QUERY_FIELDS:
            raise StoreError(f"no index on {name}", file=self._where)
        if name == "key":
            query = sql.SQL(
                "SELECT key, doc::text FROM toma_documents WHERE tbl = {} AND key = ANY(%b::text[])"
                " ORDER BY ord"
            ).format(sql.Literal(table))
        else:
            # One index probe per value: the planner's estimates for an expression
            # index over a million distinct addresses are poor, and it would rather
            # read the whole table (seconds) than probe (milliseconds). OFFSET 0
            # keeps it from flattening the probe into a join.
            query = sql.SQL(
                "SELECT d.key, d.doc::text FROM unnest(%b::text[]) AS wanted(value)"
                " CROSS JOIN LATERAL (SELECT key, doc, ord FROM toma_documents"
                " WHERE tbl = {} AND doc ->> {} = wanted.value OFFSET 0) AS d ORDER BY d.ord"
            ).format(sql.Literal(table), sql.Literal(name))
        wanted = sorted(set(values))
        pages = [wanted[start : start + ANY_PAGE] for start in range(0, len(wanted), ANY_PAGE)]
        return self._each_page(query, pages)

    def _each_page(
        self, query: sql.Composed, pages: list[list[str]]
    ) -> Iterator[tuple[str, Document]]:
        """The rows of ``query`` for each page of values, decoded.

        On the store, the first page is asked for at once, and each next one
        while the caller works through the last: the server's time is spent
        while this process decodes, and several reads begun together (a tick's
        contacts, enrolments and messages) run at once. Two pages at most are
        held per read.
        """
        ahead = self._ahead
        if ahead is None or not pages:
            return self._pages_in_turn(query, pages)
        asked: deque[Future[list[tuple[str, str]]]] = deque(
            [ahead.submit(self._fetch_page, query, pages[0])]
        )

        def rows() -> Iterator[tuple[str, Document]]:
            try:
                for index in range(len(pages)):
                    try:
                        page = asked.popleft().result()
                    except CancelledError:  # by the store's closing
                        raise StoreError("the store is closed", file=self._where) from None
                    if index + 1 < len(pages):
                        try:
                            asked.append(ahead.submit(self._fetch_page, query, pages[index + 1]))
                        except RuntimeError:  # the store closed meanwhile: no new work
                            raise StoreError("the store is closed", file=self._where) from None
                    for key, text in page:
                        yield key, decode(text)
            finally:
                for future in asked:  # left unread: nobody waits for what it holds
                    future.cancel()

        return rows()

    def _pages_in_turn(
        self, query: sql.Composed, pages: list[list[str]]
    ) -> Iterator[tuple[str, Document]]:
        for page in pages:
            for key, text in self._fetch_page(query, page):
                yield key, decode(text)

    def _fetch_page(self, query: sql.Composed, page: list[str]) -> list[tuple[str, str]]:
        self._before_read()
        with self._conn() as conn, pg_errors(self._where):
            return conn.execute(query, (page,)).fetchall()

    def where_from(self, table: str, name: str, lowest: str) -> Iterator[tuple[str, Document]]:
        """The documents of ``table`` whose field ``name`` is ``lowest`` or after, as text."""
        check_table(table, self._where)
        if name not in RANGE_FIELDS:
            raise StoreError(f"no index on {name}", file=self._where)
        field = sql.SQL("doc ->> {}").format(sql.Literal(name))
        return self._pages(
            sql.SQL("tbl = {} AND {} >= {}").format(sql.Literal(table), field, sql.Literal(lowest))
        )

    def due_contacts(self, earliest: Earliest, horizon: datetime) -> set[str]:
        """The contacts that can have a sequence step ready by ``horizon``
        (:mod:`toma.store.postgres.due`)."""
        self._before_read()
        with self._conn() as conn, pg_errors(self._where):
            return due.due_contacts(conn, earliest, horizon)

    def tagged_unenrolled(
        self, tag: str, sequence: str, among: Collection[str] | None = None
    ) -> set[str]:
        """Active contacts carrying ``tag`` and never enrolled in ``sequence`` (among
        ``among`` when given): those a tag rule may enrol."""
        self._before_read()
        with self._conn() as conn, pg_errors(self._where):
            return due.tagged_unenrolled(
                conn, tag, sequence, None if among is None else sorted(among)
            )

    def _pages(self, condition: sql.Composable) -> Iterator[tuple[str, Document]]:
        # Pages by insertion order up to the last row that existed when the reading
        # began: writes made while the caller iterates never make it read forever.
        self._before_read()
        with self._conn() as conn, pg_errors(self._where):
            row = conn.execute(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM toma_order"
            ).fetchone()
        last = int(row[0]) if row else 0
        after = 0
        while True:
            self._before_read()
            # Every value a literal, and no parameters: a value holding a % (an address
            # may) is then never read as a placeholder.
            query = sql.SQL(
                "SELECT key, doc::text, ord FROM toma_documents WHERE {} AND ord > {} AND ord <= {}"
                " ORDER BY tbl, ord LIMIT {}"
            ).format(condition, sql.Literal(after), sql.Literal(last), sql.Literal(PAGE))
            with self._conn() as conn, pg_errors(self._where):
                rows = conn.execute(query).fetchall()
            for key, text, _ord in rows:
                yield key, decode(text)
            if len(rows) < PAGE:
                return
            after = rows[-1][2]

    def counted_by(self, table: str, name: str, **equal: str | None) -> dict[str, int]:
        """How many documents of ``table`` whose fields equal ``equal`` hold each value of
        the field ``name`` (``""``: none), counted by the database."""
        check_table(table, self._where)
        unknown = ({name} | set(equal)) - QUERY_FIELDS
        if unknown:
            raise StoreError(f"no index on {', '.join(sorted(unknown))}", file=self._where)
        query = sql.SQL(
            "SELECT coalesce(doc ->> {}, ''), count(*) FROM toma_documents WHERE {} GROUP BY 1"
        ).format(sql.Literal(name), _where_clause(table, equal))
        self._before_read()
        with self._conn() as conn, pg_errors(self._where):
            return {str(value): int(count) for value, count in conn.execute(query).fetchall()}

    def count(self, table: str) -> int:
        check_table(table, self._where)
        self._before_read()
        with self._conn() as conn, pg_errors(self._where):
            row = conn.execute(
                "SELECT count(*) FROM toma_documents WHERE tbl = %s", (table,)
            ).fetchone()
        return int(row[0]) if row else 0
