"""PgStore: the store's tables as rows of one PostgreSQL relation (see the package docstring)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from types import TracebackType

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from toma.errors import StoreError
from toma.logs import fields
from toma.store.base import (
    MESSAGES,
    META,
    Changed,
    ChangeMark,
    Document,
    Transaction,
)
from toma.store.embedded import snapshot
from toma.store.postgres import schema
from toma.store.postgres.reads import (
    Conn,
    Reads,
    check_table,
    decode,
    pg_errors,
)
from toma.store.postgres.schema import LOCK_CLASS

log = logging.getLogger(__name__)

FEED_LIMIT = 1 << 16  # changes kept for the feed; a reader further behind reloads

WRITE_LOCK = 1  # pg_advisory_xact_lock(LOCK_CLASS, WRITE_LOCK): one writer at a time
DAEMON_CLASS = 0x746F6D62  # "tomb": pg_advisory_lock(DAEMON_CLASS, n) held by daemon n
KEEPALIVE = (
    ("tcp_keepalives_idle", 60),
    ("tcp_keepalives_interval", 10),
    ("tcp_keepalives_count", 3),
)
# A claim: a session-level advisory lock on the daemon's own connection, keyed by a
# 64-bit hash of the message's key (the one-number form, apart from the two-number
# locks above). Two keys sharing a hash only make one of them wait for a later tick.
_CLAIM = "pg_try_advisory_lock(hashtextextended('toma:' || k, 0))"
_UNCLAIM = "pg_advisory_unlock(hashtextextended('toma:' || k, 0))"
_LIVE_DAEMONS = (
    "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint = %s"
    " AND objsubid = 2 AND granted"
)


_ADD_CHANGES = (
    "INSERT INTO toma_changes (tbl, key, deleted)"
    " SELECT * FROM unnest(%b::text[], %b::text[], %b::boolean[])"
)
# ... and the newest change with the feed's floor, to know when to trim it.
_ADD_CHANGES_COUNTED = sql.SQL(
    "WITH added AS ({} RETURNING seq)"
    " SELECT (SELECT max(seq) FROM added), (SELECT floor FROM toma_feed)"
).format(sql.SQL(_ADD_CHANGES))
# The write lock, then whether this daemon still holds its number: the materialised
# CTE runs first, so the lock table is read only once the lock is granted.
_LOCK_AND_CHECK = sql.SQL(
    "WITH locked AS MATERIALIZED (SELECT pg_advisory_xact_lock(%s, %s))"
    " SELECT %s IN ({}) FROM locked"
).format(sql.SQL(_LIVE_DAEMONS))


def _columns(entries: list[tuple[str, str, bool]]) -> tuple[list[str], list[str], list[bool]]:
    return [t for t, _k, _d in entries], [k for _t, k, _d in entries], [d for _t, _k, d in entries]


def _check_key(table: str, key: str, where: str) -> None:
    check_table(table, where)
    if not isinstance(key, str):
        raise StoreError(f"{table}: a key must be a string, not {key!r}", file=where)
    if "\x00" in key:
        raise StoreError(f"{table}: a key cannot hold a NUL character", file=where)
    if table == META and key == snapshot.STORE_META_KEY:
        raise StoreError(
            f"{META}/{snapshot.STORE_META_KEY} is kept by the store itself", file=where
        )


def encode(table: str, key: str, doc: Document, where: str) -> str:
    """The JSON text of ``doc``, refused exactly as the embedded store refuses it."""
    _check_key(table, key, where)
    at = f"{table}/{key}"
    if not isinstance(doc, dict):
        raise StoreError(f"{at}: a document must be a dict", file=where)
    if snapshot.KEY_FIELD in doc:
        raise StoreError(f"{at}: the field {snapshot.KEY_FIELD} is reserved", file=where)
    try:
        return snapshot.json_text(doc)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{at}: the document is not JSON: {exc}", file=where) from exc


def describe(dsn: str) -> str:
    """Where a DSN points, without its password: for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "postgresql (an unreadable DSN)"
    host = info.get("host") or "localhost"
    port = info.get("port") or 5432
    return f"postgresql://{host}:{port}/{info.get('dbname') or info.get('user') or ''}"


class PgTransaction(Reads):
    """One database transaction under the store's write lock; puts are sent in batches."""

    def __init__(self, conn: Conn, where: str, daemon: int | None) -> None:
        self._connection = conn
        self._where = where
        self._daemon = daemon
        self._puts: dict[tuple[str, str], tuple[str, int | None]] = {}
        self._changes: dict[str, dict[str, bool]] = {}  # table -> key -> deleted
        self._forgetting = False
        self._open = True

    @contextmanager
    def _conn(self) -> Iterator[Conn]:
        if not self._open:
            raise StoreError("the transaction is over; open a new one", file=self._where)
        yield self._connection

    def _before_read(self) -> None:
        self.flush()

    def put(self, table: str, key: str, doc: Document) -> None:
        if not self._open:
            raise StoreError("the transaction is over; open a new one", file=self._where)
        text = encode(table, key, doc, self._where)
        # A message recorded `sending` carries the daemon's number, for its recovery should
        # the daemon die (see the package docstring).
        claim = self._daemon if table == MESSAGES and doc.get("state") == "sending" else None
        self._puts.pop((table, key), None)
        self._puts[(table, key)] = (text, claim)
        self._changes.setdefault(table, {})[key] = False

    def delete(self, table: str, key: str) -> None:
        if not self._open:
            raise StoreError("the transaction is over; open a new one", file=self._where)
        _check_key(table, key, self._where)
        self._puts.pop((table, key), None)
        self.flush()
        with pg_errors(self._where):
            gone = self._connection.execute(
                "DELETE FROM toma_documents WHERE tbl = %s AND key = %s RETURNING key",
                (table, key),
            ).fetchone()
        if gone is not None:
            self._changes.setdefault(table, {})[key] = True
        elif not self._changes.get(table, {}).get(key, True):
            # Put and deleted within this transaction: nothing of it remains.
            del self._changes[table][key]

    def flush(self) -> None:
        if not self._puts:
            return
        tables, keys, texts, claims = [], [], [], []
        for (table, key), (text, claim) in self._puts.items():
            tables.append(table)
            keys.append(key)
            texts.append(text)
            claims.append(claim)
        self._puts = {}
        # One statement for the whole batch: a statement per row costs the daemon
        # more than the database, which is where a send's time went.
        with pg_errors(self._where):
            self._connection.execute(
                "INSERT INTO toma_documents (tbl, key, doc, ord, claimed_by)"
                " SELECT tbl, key, doc::json, nextval('toma_order'), claimed_by"
                " FROM unnest(%b::text[], %b::text[], %b::text[], %b::bigint[])"
                " AS batch(tbl, key, doc, claimed_by)"
                " ON CONFLICT (tbl, key) DO UPDATE"
                " SET doc = EXCLUDED.doc, claimed_by = EXCLUDED.claimed_by",
                (tables, keys, texts, claims),
            )

    def commit_changes(self) -> None:
        """Write what is left and this transaction's entries of the change feed.

        A transaction that erased a contact (``toma contacts forget``, see
        :meth:`forget_keys`) leaves no key of what it deleted in the feed, where
        an address would outlive the person's records: it removes their earlier
        entries too and moves the feed's floor past everything, so that readers
        read the store again.
        """
        self.flush()
        forgetting = self._forgetting
        entries = [
            (table, key, deleted)
            for table, keys in self._changes.items()
            for key, deleted in keys.items()
            if not (forgetting and deleted)
        ]
        with pg_errors(self._where), self._connection.cursor() as cur:
            if forgetting:
                if entries:
                    cur.execute(_ADD_CHANGES, _columns(entries))
                gone = [(t, k) for t, keys in self._changes.items() for k, d in keys.items() if d]
                cur.executemany("DELETE FROM toma_changes WHERE tbl = %s AND key = %s", gone)
                cur.execute(
                    "UPDATE toma_feed SET floor = greatest(floor,"
                    " (SELECT coalesce(max(seq), 0) FROM toma_changes))"
                )
                return
            if not entries:
                return
            found = cur.execute(_ADD_CHANGES_COUNTED, _columns(entries)).fetchone()
            if found and found[0] is not None and found[0] - found[1] > 2 * FEED_LIMIT:
                floor = found[0] - FEED_LIMIT
                cur.execute("DELETE FROM toma_changes WHERE seq <= %s", (floor,))
                cur.execute("UPDATE toma_feed SET floor = %s", (floor,))

    def forget_keys(self) -> None:
        """Keep no trace of the keys this transaction deletes in the change feed."""
        self._forgetting = True

    def abandoned_claims(self) -> list[tuple[str, Document]]:
        """Messages ``sending`` that no living daemon claims (see the package docstring)."""
        self.flush()
        with pg_errors(self._where):
            rows = self._connection.execute(
                "SELECT key, doc::text FROM toma_documents WHERE tbl = 'messages'"
                " AND doc ->> 'state' = 'sending'"
                " AND (claimed_by IS NULL OR claimed_by NOT IN (SELECT objid::bigint FROM pg_locks"
                " WHERE locktype = 'advisory' AND classid::bigint = %s AND objsubid = 2"
                " AND granted))"
                " ORDER BY ord",
                (DAEMON_CLASS,),
            ).fetchall()
        return [(key, decode(text)) for key, text in rows]

    def close(self) -> None:
        self._open = False


def _configure(conn: Conn) -> None:
    # toma asks short, indexed questions; at a million rows their estimates cross
    # the JIT's thresholds, and compiling costs far more (~0.7 s) than it saves.
    conn.execute("SET jit = off")


class PgStore(Reads):
    """The PostgreSQL :class:`~toma.store.base.Store` (see the package docstring).

    Opening connects, applies the migrations the database lacks, and keeps a
    pool of ``pool_size`` connections. Every failure is a :class:`StoreError`
    naming the database (never its password).
    """

    def __init__(self, dsn: str, *, pool_size: int = 4, timeout: float = 30.0) -> None:
        self._dsn = dsn
        self._where = describe(dsn)
        self._in_transaction = False
        self._daemon: int | None = None
        self._daemon_conn: Conn | None = None
        self._closed = False
        with pg_errors(self._where), psycopg.connect(dsn, autocommit=True) as conn:
            schema.migrate(conn, where=self._where)
            row = conn.execute("SELECT id FROM toma_feed").fetchone()
        self._feed = ("postgres", row[0] if row else "")
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            timeout=timeout,
            kwargs={"autocommit": True},
            configure=_configure,
            open=False,
        )
        with pg_errors(self._where):
            self._pool.open(wait=True, timeout=timeout)
        # Reads fetch their next pages here (see Reads._each_page), leaving one
        # connection of the pool for everything else.
        self._ahead = ThreadPoolExecutor(max(1, pool_size - 1), thread_name_prefix="toma-pg-read")

    @property
    def daemon_number(self) -> int | None:
        """This process's number while it holds :meth:`daemon_lock`."""
        return self._daemon

    @contextmanager
    def _conn(self) -> Iterator[Conn]:
        if self._closed:
            raise StoreError("the store is closed", file=self._where)
        with pg_errors(self._where), self._pool.connection() as conn:
            yield conn

    def changes_since(self, mark: ChangeMark | None) -> tuple[ChangeMark, list[Changed] | None]:
        """See :meth:`toma.store.base.Store.changes_since` and the package docstring."""
        ours = mark is not None and mark.source == self._feed
        after = mark.position if mark is not None and ours else -1
        with self._conn() as conn:
            feed = conn.execute(
                "SELECT greatest(f.floor, (SELECT coalesce(max(seq), 0) FROM toma_changes)),"
                " f.floor, c.seq, c.tbl, c.key, c.deleted FROM toma_feed f"
                " LEFT JOIN toma_changes c ON c.seq > greatest(%s, f.floor) ORDER BY c.seq",
                (after,),
            ).fetchall()
        newest, floor = (int(feed[0][0]), int(feed[0][1])) if feed else (0, 0)
        rows = [row for row in feed if row[2] is not None]
        last = int(rows[-1][2]) if rows else max(min(after, newest), floor)
        new = ChangeMark(self._feed, last)
        # A mark past the newest change was not made by this feed (a damaged one kept in
        # the store, say): nothing can be said of what changed since.
        if not ours or after < floor or after > newest:
            return new, None
        return new, [(table, key, deleted) for _n, _f, _seq, table, key, deleted in rows]

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        if self._closed:
            raise StoreError("the store is closed", file=self._where)
        if self._in_transaction:
            raise StoreError(
                "a transaction is already open on this store; nested transactions are not "
                "supported",
                file=self._where,
            )
        self._in_transaction = True
        try:
            with self._conn() as conn, conn.transaction():
                self._lock_for_writing(conn)
                tx = PgTransaction(conn, self._where, self._daemon)
                try:
                    yield tx
                    tx.commit_changes()
                finally:
                    tx.close()
        finally:
            self._in_transaction = False

    def _lock_for_writing(self, conn: Conn) -> None:
        """Take the write lock; a daemon then checks, in the same round trip, that it still
        holds its number (else others may have recovered its messages)."""
        if self._daemon is None:
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, WRITE_LOCK))
            return
        row = conn.execute(
            _LOCK_AND_CHECK, (LOCK_CLASS, WRITE_LOCK, self._daemon, DAEMON_CLASS)
        ).fetchone()
        if not (row and row[0]):
            raise StoreError(
                f"this daemon (number {self._daemon}) lost its connection to the database: "
                "its messages in flight are another daemon's to recover; start it again",
                file=self._where,
            )

    def refresh(self) -> None:
        # Reads always see what is committed: there is nothing to catch up with.
        if self._closed:
            raise StoreError("the store is closed", file=self._where)

    @contextmanager
    def daemon_lock(self) -> Iterator[None]:
        """Take a daemon number and hold its advisory lock: any number of daemons may run.

        The lock lives with this connection: a daemon that dies loses it, and its
        claims become the others' to recover (see the package docstring).
        """
        if self._closed:
            raise StoreError("the store is closed", file=self._where)
        if self._daemon is not None:
            raise StoreError("this store is a daemon's already", file=self._where)
        with pg_errors(self._where):
            conn = psycopg.connect(self._dsn, autocommit=True)
        try:
            with pg_errors(self._where):
                row = conn.execute("SELECT nextval('toma_daemons')::int").fetchone()
                number = int(row[0]) if row else 0
                conn.execute("SELECT pg_advisory_lock(%s, %s)", (DAEMON_CLASS, number))
                # A machine that vanishes (power, network) sends no FIN: the server
                # probes this idle session and ends it, and so the claims, in about
                # a minute and a half rather than the system's two hours.
                for name, seconds in KEEPALIVE:
                    conn.execute(
                        sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(seconds))
                    )
            self._daemon, self._daemon_conn = number, conn
            log.info("daemon registered", extra=fields(number=number, database=self._where))
            yield
        finally:
            self._daemon = self._daemon_conn = None
            # Released before the close returns: a closed connection's locks are
            # released by the server a moment later, when the others may already look.
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock_all()")
            conn.close()

    def claim(self, keys: Collection[str]) -> set[str]:
        """Of ``keys``, those this daemon now holds (see :mod:`toma.store.claims`).

        Each is an advisory lock of the daemon's session: one round trip for the
        batch, nothing written, and a daemon that dies leaves nothing to clear.
        Outside :meth:`daemon_lock` nobody else sends: every key is this process's.
        """
        conn = self._daemon_conn
        if conn is None:
            return set(keys)
        if not keys:
            return set()
        with pg_errors(self._where):
            rows = conn.execute(
                f"SELECT k FROM unnest(%b::text[]) AS k WHERE {_CLAIM}",  # noqa: S608 - constant
                (list(keys),),
            ).fetchall()
        return {key for (key,) in rows}

    def release(self, keys: Collection[str]) -> None:
        """Let other daemons claim ``keys`` again."""
        conn = self._daemon_conn
        if conn is None or not keys:
            return
        with pg_errors(self._where):
            conn.execute(
                f"SELECT count(*) FILTER (WHERE {_UNCLAIM}) FROM unnest(%b::text[]) AS k",  # noqa: S608
                (list(keys),),
            )

    def compact(self) -> None:
        """VACUUM the store's relations: deleted rows (a forgotten contact) leave the
        tables' files, as the embedded store's compaction leaves them out of its
        snapshot. What PostgreSQL's WAL and backups hold is the administrator's."""
        with self._conn() as conn, pg_errors(self._where):
            conn.execute("VACUUM toma_documents")
            conn.execute("VACUUM toma_changes")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._ahead is not None:
            self._ahead.shutdown(wait=True, cancel_futures=True)
        self._pool.close()

    def __enter__(self) -> PgStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
