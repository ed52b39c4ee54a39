"""TinyStore: every table in memory, kept on disk as a TinyDB snapshot plus a journal.

Theory of operation
-------------------
The files (see :mod:`toma.store.embedded.journal`) are the truth shared between
processes: a snapshot that is a TinyDB database file (``TinyDB(path)`` opens
it), and a journal of the transactions committed since. Each
:class:`TinyStore` holds the whole store in memory, table -> key -> document,
and remembers how far it has read the files: a generation and an offset in its
journal. Catching up means replaying the journal lines appended since that
offset, or, when another process has compacted meanwhile, loading the new
snapshot.

Documents are held compactly rather than as TinyDB's dicts: a document is a
tuple of its values followed by its *shape* (its field names, shared by every
document with the same fields), nested dicts and lists frozen the same way.
Null and "" values are left out, the shape knows where they go; equal strings,
and equal flat lists and dicts of strings (tags, custom fields), are one object
(see :class:`Freezer`). A contact, an enrolment or an outbox record then costs
about a quarter of its dict, and mostly what it shares with the others. Every
read builds a new dict from the tuple (``dict(zip(fields, values))``, or a copy
of the shape's template with the values put in: cheaper than a deep copy), so
callers may change what they get without changing the store.

Two ``fcntl.flock`` locks, which vanish with the process holding them:

- ``store.lock``: exclusive for a transaction (catch up, append, maybe
  compact); shared while opening and in :meth:`refresh`, so that nobody reads
  a journal or snapshot while it is being written or replaced.
- ``daemon.lock``: held by ``toma run`` for its whole life.

A transaction collects its writes, each encoded to JSON when it is put: a
document that JSON cannot hold fails at the ``put`` that brought it, and later
changes to the caller's dict do not leak in. A clean exit appends all of them
as one journal line, fsyncs it, and only then applies them to memory, so an
exception or a failed write leaves both disk and memory as they were. What
memory gets is the JSON decoded again, which is exactly what another process
replaying the journal gets.

**The change feed.** Every change applied to memory after it was loaded (a
commit of this instance, or one replayed from the journal) is noted as
``(table, key, deleted)``, so that :meth:`TinyStore.changes_since` can tell a reader
that keeps its own decoded model (the daemon's planner) which keys to read
again, instead of everything. Memory loaded anew (another process compacted)
starts a new feed: readers of the old one are told to reload everything. So is
a reader that fell more than ``_FEED_LIMIT`` changes behind.

Compaction writes a new snapshot when the journal has grown larger than the
snapshot (and than ``compact_min_bytes``), so each rewrite of the snapshot is
paid for by at least as many bytes of commits: amortised, a flush costs in
proportion to what it changed.

A TinyStore is not thread-safe; two instances, in one process or in two, are
as safe as two processes.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, NamedTuple

from toma.durable import TEMP_SUFFIX, atomic_write
from toma.errors import StoreError, StoreLocked
from toma.logs import fields
from toma.store.base import (
    META,
    SCHEMA_VERSION,
    TABLES,
    Changed,
    ChangeMark,
    Document,
    Transaction,
)
from toma.store.embedded import journal, snapshot
from toma.store.embedded.locks import (
    describe_holder,
    make_private_dir,
    open_lock_file,
    read_pid,
    try_flock,
    write_pid,
)
from toma.store.embedded.memory import (
    Memory,
    MemoryTransaction,
    Write,
    check_table,
)
from toma.store.embedded.snapshot import STORE_META_KEY

log = logging.getLogger(__name__)

STORE_LOCK = "store.lock"
DAEMON_LOCK = "daemon.lock"
DEFAULT_COMPACT_MIN_BYTES = 8 << 20
DEFAULT_LOCK_TIMEOUT = 30.0

_intern = sys.intern


class PinnedFile(NamedTuple):
    """A file of the data directory, open, and how many of its bytes are the state."""

    name: str
    handle: BinaryIO
    size: int


# -- the store ---------------------------------------------------------------------------


class TinyStore:
    """The embedded :class:`~toma.store.base.Store` (see the module docstring).

    Opening creates ``data_dir`` (0700) and an empty store if there is none,
    and loads it. ``compact_min_bytes`` is the journal size below which the
    snapshot is never rewritten; ``lock_timeout`` bounds the wait for
    ``store.lock`` before :class:`StoreLocked`. Every failure is a
    :class:`StoreError` naming the file concerned.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        compact_min_bytes: int = DEFAULT_COMPACT_MIN_BYTES,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        self._dir = Path(data_dir)
        self._compact_min = compact_min_bytes
        self._lock_timeout = lock_timeout
        self._in_transaction = False
        self._closed = False
        make_private_dir(self._dir)
        self._memory = self._open()

    @property
    def data_dir(self) -> Path:
        return self._dir

    @property
    def generation(self) -> int:
        """The snapshot generation this instance has read up to."""
        return self._memory.generation

    # Reader

    def get(self, table: str, key: str) -> Document | None:
        self._check(table)
        return self._memory.get(table, key)

    def all(self, table: str) -> Iterator[tuple[str, Document]]:
        self._check(table)
        return self._memory.items(table)

    def count(self, table: str) -> int:
        self._check(table)
        return self._memory.count(table)

    def changes_since(self, mark: ChangeMark | None) -> tuple[ChangeMark, list[Changed] | None]:
        """See :meth:`toma.store.base.Store.changes_since` and the module docstring."""
        self._check()
        memory = self._memory
        return memory.mark(), None if mark is None else memory.changed_since(mark)

    # Store

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        self._check()
        if self._in_transaction:
            raise StoreError(
                "a transaction is already open on this store; nested transactions are not "
                "supported",
                file=self._dir,
            )
        self._in_transaction = True
        try:
            with self._locked(exclusive=True):
                self._catch_up(exclusive=True)
                tx = MemoryTransaction(self._memory, self._dir)
                try:
                    yield tx
                    # Only reached when the block ended without an exception.
                    changes = tx.changes()
                finally:
                    tx.close()
                self._commit(changes)
        finally:
            self._in_transaction = False

    def refresh(self) -> None:
        self._check()
        if self._in_transaction:
            return  # the lock is held: nobody else can have written since it was taken
        with self._locked(exclusive=False):
            self._catch_up(exclusive=False)

    @contextmanager
    def daemon_lock(self) -> Iterator[None]:
        self._check()
        path = self._dir / DAEMON_LOCK
        fd = open_lock_file(path)
        try:
            if not try_flock(fd, fcntl.LOCK_EX, path):
                pid = read_pid(fd)
                who = "another toma run" + (f" (pid {pid})" if pid is not None else "")
                raise StoreLocked(f"{who} is using {self._dir}", file=path)
            write_pid(fd)
            try:
                yield
            finally:
                os.pwrite(fd, b" " * 19 + b"\n", 0)
        finally:
            os.close(fd)  # closing the file releases the lock

    def compact(self) -> None:
        """Write a new snapshot now and start an empty journal."""
        self._check()
        if self._in_transaction:
            raise StoreError("cannot compact inside a transaction", file=self._dir)
        with self._locked(exclusive=True):
            self._catch_up(exclusive=True)
            self._compact()

    # for toma.ops: backups and migrations

    @property
    def schema_version(self) -> int:
        """The schema version of the data as loaded (see :data:`toma.store.base.SCHEMA_VERSION`)."""
        self._check()
        return self._schema_version()

    def _schema_version(self) -> int:
        meta = self._memory.get(META, STORE_META_KEY) or {}
        version = meta.get("schema_version")
        return version if isinstance(version, int) else SCHEMA_VERSION

    def set_schema_version(self, version: int) -> None:
        """Write a new snapshot that says ``version``: the last step of a migration."""
        self._check()
        with self._locked(exclusive=True):
            self._catch_up(exclusive=True)
            self._compact(schema_version=version)

    @contextmanager
    def pinned_files(self) -> Iterator[list[PinnedFile]]:
        """Every file of the data directory as it stands between two commits.

        The shared lock is held only while the files are opened: no commit or
        compaction runs meanwhile. Afterwards the open handles still give that
        state while the daemon goes on: a snapshot is never written in place (a
        compaction writes a new file and removes the old name, not the open
        file), and the journal only grows past the committed end, which is as
        far as its handle is to be read. Other files (the unsubscribe key) are
        written whole by rename, and are taken whole. Lock files and unfinished
        ``*.tmp`` files are left out.
        """
        self._check()
        pinned: list[PinnedFile] = []
        try:
            with self._locked(exclusive=False):
                self._catch_up(exclusive=False)
                memory = self._memory
                current = journal.journal_path(self._dir, memory.generation).name
                for path in sorted(self._dir.iterdir()):
                    name = path.name
                    if name in (STORE_LOCK, DAEMON_LOCK) or name.endswith(TEMP_SUFFIX):
                        continue
                    if name.startswith(".") or not path.is_file():
                        continue
                    if name.startswith(("snapshot-", "journal-")) and name not in (
                        current,
                        journal.snapshot_path(self._dir, memory.generation).name,
                    ):
                        continue  # left by a crash or a compaction: not part of the state
                    handle = path.open("rb")
                    size = (
                        memory.journal_end if name == current else os.fstat(handle.fileno()).st_size
                    )
                    pinned.append(PinnedFile(name, handle, size))
            yield pinned
        except OSError as exc:
            raise StoreError(
                f"cannot read the store's files: {exc.strerror}", file=self._dir
            ) from exc
        finally:
            for item in pinned:
                item.handle.close()

    def close(self) -> None:
        # No file stays open between calls; closing only forbids further use.
        self._closed = True

    def __enter__(self) -> TinyStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # opening and catching up

    def _open(self) -> Memory:
        with self._locked(exclusive=False):
            current = journal.scan(self._dir).current
            if current is not None:
                return self._load(current)
        with self._locked(exclusive=True):
            layout = journal.scan(self._dir)
            if layout.current is None:
                self._create(layout)
            return self._load(journal.scan(self._dir).current or 1)

    def _create(self, layout: journal.Layout) -> None:
        if layout.journals:
            raise StoreError(
                "journal files but no snapshot: restore the snapshot-N.json file", file=self._dir
            )
        tables: list[tuple[str, list[tuple[str, Document]]]] = [
            (name, []) for name in TABLES if name != META
        ]
        tables.append((META, [(STORE_META_KEY, snapshot.store_meta(1))]))
        atomic_write(journal.snapshot_path(self._dir, 1), snapshot.encode_snapshot(tables))

    def _load(self, generation: int) -> Memory:
        path = journal.snapshot_path(self._dir, generation)
        memory = Memory(generation, snapshot.file_size(path))
        freezer = memory.freezer
        freeze, share = freezer.freeze, freezer.share
        tables = memory.tables
        for table, key, doc in snapshot.read_snapshot(path):
            docs = tables.get(table)
            if docs is None:
                docs = tables[table] = {}
            elif key in docs:
                raise StoreError(f"table {table}: key {key!r} is stored twice", file=path)
            docs[share(key)] = freeze(doc)
        snapshot.check_meta(memory.get(META, STORE_META_KEY), path, generation)
        self._replay(memory)
        freezer.prune()
        memory.feeding = True
        return memory

    def _replay(self, memory: Memory) -> None:
        """Apply what was appended to the journal since ``memory`` last read it."""
        path = journal.journal_path(self._dir, memory.generation)
        freeze = memory.freezer.freeze
        # A tail found before is either still there or cut by now.
        known, memory.torn = memory.torn, None

        def torn(tail: journal.TornTail) -> None:
            if tail != known:  # logged once, not at every catch-up until it is cut
                journal.log_torn(tail)
            memory.torn = tail

        commits = journal.read_journal(
            path,
            offset=memory.journal_end,
            line=memory.journal_lines,
            checked=memory.journal_checked,
            torn=torn,
        )
        # Each commit is applied as it is read, so that memory only ever holds
        # whole commits, and a huge journal is never in memory at once.
        for changes, end, lines, checked in commits:
            for table, key, doc in changes:
                memory.apply(table, key, None if doc is None else freeze(doc))
            memory.journal_end, memory.journal_lines = end, lines
            memory.journal_checked = checked
        memory.freezer.prune_if_grown()

    def _catch_up(self, *, exclusive: bool) -> None:
        layout = journal.scan(self._dir)
        current = layout.current
        if current is None:
            raise StoreError("no snapshot file: was the data directory emptied?", file=self._dir)
        if current != self._memory.generation:
            self._memory = self._load(current)
        else:
            self._replay(self._memory)
        if exclusive:
            # Under the exclusive lock no compaction is running, so these are leftovers.
            journal.remove_files(layout.stale(self._dir))

    # writing

    def _commit(self, changes: list[tuple[str, str, Write]]) -> None:
        if not changes:
            return
        memory = self._memory
        if memory.torn is not None:
            # This append cuts the torn tail: keep a note of it for `toma status`.
            changes = [*changes, (META, journal.DAMAGE_META_KEY, self._damage_note(memory.torn))]
        line = journal.encode_commit((table, key, w.encoded) for table, key, w in changes)
        path = journal.journal_path(self._dir, memory.generation)
        end = journal.append_line(path, memory.journal_end, line)
        memory.torn = None
        memory.journal_checked = True
        try:
            for table, key, write in changes:
                memory.apply(table, key, write.frozen)
        except BaseException:
            # Durable on disk but half applied here: make the next catch-up reload.
            memory.generation = -1
            raise
        memory.journal_end = end
        memory.journal_lines += 1
        memory.freezer.prune_if_grown()
        if end > max(memory.snapshot_size, self._compact_min):
            self._compact_after_commit()

    def _damage_note(self, tail: journal.TornTail) -> Write:
        doc = {**tail.to_doc(), "cut_at": datetime.now(UTC).isoformat(timespec="seconds")}
        encoded, copy = snapshot.normalise_doc(doc)
        return Write(encoded, self._memory.freezer.freeze(copy))

    def _compact_after_commit(self) -> None:
        try:
            self._compact()
        except StoreError as exc:
            # The commit is durable in the journal; a later commit tries again.
            log.warning("store.compact_failed", extra=fields(dir=str(self._dir), error=str(exc)))

    def _compact(self, schema_version: int | None = None) -> None:
        started = time.monotonic()
        memory = self._memory
        old, new = memory.generation, memory.generation + 1
        # A compaction keeps the schema version the data has: only a migration raises it.
        meta = snapshot.store_meta(new, schema_version or self._schema_version())
        # A journal for the new generation can only be debris; it must not count as commits.
        journal.remove_files([journal.journal_path(self._dir, new)])
        size = atomic_write(
            journal.snapshot_path(self._dir, new),
            snapshot.encode_snapshot(
                (name, memory.snapshot_docs(name, meta)) for name in memory.tables
            ),
        )
        memory.apply(META, STORE_META_KEY, memory.freezer.freeze(meta))
        memory.generation, memory.snapshot_size = new, size
        memory.journal_end = memory.journal_lines = 0
        memory.journal_checked = False
        journal.remove_files(
            [journal.journal_path(self._dir, old), journal.snapshot_path(self._dir, old)]
        )
        log.info(
            "store.compacted",
            extra=fields(
                dir=str(self._dir),
                generation=new,
                bytes=size,
                seconds=round(time.monotonic() - started, 3),
            ),
        )

    @contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        path = self._dir / STORE_LOCK
        fd = open_lock_file(path)
        try:
            self._wait_for_lock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, path)
            if exclusive:
                write_pid(fd)  # names the holder for whoever times out waiting
            yield
        finally:
            os.close(fd)

    def _wait_for_lock(self, fd: int, kind: int, path: Path) -> None:
        # flock has no timeout of its own: poll, backing off to 50 ms.
        deadline = time.monotonic() + self._lock_timeout
        pause = 0.001
        while not try_flock(fd, kind, path):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StoreLocked(
                    f"{self._dir} stayed locked by {describe_holder(fd)} for "
                    f"{self._lock_timeout:g} s",
                    file=path,
                )
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.05)

    def _check(self, table: str | None = None) -> None:
        if self._closed:
            raise StoreError("the store is closed", file=self._dir)
        if table is not None:
            check_table(table, self._dir)
