"""TinyStore: TinyDB tables in memory, kept on disk as a snapshot plus a journal.

Theory of operation
-------------------
Each :class:`TinyStore` holds the whole store in memory as a TinyDB database
over ``MemoryStorage``, in exactly the layout of the snapshot file (table ->
document id -> document carrying its ``_key``), plus an index key -> document
id per table, so that :meth:`get` is a dict lookup. The files (see
:mod:`toma.store.journal`) are the truth shared between processes; memory
remembers how far it has read them: a generation and an offset in its journal.
Catching up means replaying the journal lines appended since that offset, or,
when another process has compacted meanwhile, loading the new snapshot.

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
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from tinydb import TinyDB
from tinydb.storages import MemoryStorage
from tinydb.table import Document as TinyDocument
from tinydb.table import Table

from toma.errors import StoreError, StoreLocked
from toma.store import journal
from toma.store.base import META, TABLES, Document, Transaction
from toma.store.journal import KEY_FIELD, STORE_META_KEY

log = logging.getLogger(__name__)

STORE_LOCK = "store.lock"
DAEMON_LOCK = "daemon.lock"
DEFAULT_COMPACT_MIN_BYTES = 8 << 20
DEFAULT_LOCK_TIMEOUT = 30.0
_DIR_MODE = 0o700


# -- TinyDB, updated in place ------------------------------------------------------------


class _IdView(MutableMapping[int, Any]):
    """A stored table (string ids, as TinyDB keeps them) seen with int ids, without a copy."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self._raw = raw

    def __getitem__(self, doc_id: int) -> Any:
        return self._raw[str(doc_id)]

    def __setitem__(self, doc_id: int, doc: Any) -> None:
        self._raw[str(doc_id)] = doc

    def __delitem__(self, doc_id: int) -> None:
        del self._raw[str(doc_id)]

    def __iter__(self) -> Iterator[int]:
        return (int(doc_id) for doc_id in self._raw)

    def __len__(self) -> int:
        return len(self._raw)


class _Table(Table):
    """TinyDB's table, with writes that cost what they change.

    ``Table._update_table`` rebuilds the whole table twice (ids to int and
    back) on every insert, update or remove: with 500k messages each write
    would cost ~0.1 s. Handing the updater a view of the stored dict keeps
    TinyDB's own insert/update/remove logic and makes each write O(1).
    """

    def _update_table(self, updater: Callable[[dict[int, Mapping[str, Any]]], None]) -> None:
        tables = self._storage.read() or {}
        raw = tables.setdefault(self.name, {})
        # The updaters only use the mapping protocol, which the view provides.
        updater(cast(dict[int, Mapping[str, Any]], _IdView(raw)))
        self._storage.write(tables)
        self.clear_cache()


class _TinyDB(TinyDB):
    table_class = _Table


# -- documents handed out are copies -----------------------------------------------------


def _deep_copy(value: Any) -> Any:
    # Stored values come from JSON: dicts and lists are the only mutable ones.
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def _detach(stored: Mapping[str, Any]) -> Document:
    """The caller's copy of a stored document, without the key field."""
    doc = {k: v for k, v in stored.items() if k != KEY_FIELD}
    for name, value in doc.items():
        if isinstance(value, dict | list):
            doc[name] = _deep_copy(value)
    return doc


# -- memory ------------------------------------------------------------------------------


@dataclass
class _Memory:
    """The tables as of one point of the files: ``generation``, ``journal_end``."""

    db: TinyDB
    ids: dict[str, dict[str, int]]
    next_ids: dict[str, int]
    generation: int
    snapshot_size: int
    journal_end: int = 0
    journal_lines: int = 0

    @classmethod
    def from_snapshot(cls, snapshot: journal.Snapshot, generation: int, size: int) -> _Memory:
        for name in TABLES:
            snapshot.tables.setdefault(name, {})
            snapshot.ids.setdefault(name, {})
        db = _TinyDB(storage=MemoryStorage)
        db.storage.write(snapshot.tables)
        next_ids = {name: max(ids.values(), default=0) + 1 for name, ids in snapshot.ids.items()}
        return cls(db, snapshot.ids, next_ids, generation, size)

    def has(self, table: str, key: str) -> bool:
        return key in self.ids.get(table, {})

    def get(self, table: str, key: str) -> Document | None:
        doc_id = self.ids.get(table, {}).get(key)
        if doc_id is None:
            return None
        stored = self.db.table(table).get(doc_id=doc_id)
        return None if stored is None else _detach(stored)

    def items(self, table: str) -> Iterator[tuple[str, Document]]:
        # Ids are taken now, so writes during the iteration cannot break it.
        return self._yield(table, list(self.ids.get(table, {}).values()))

    def _yield(self, table: str, doc_ids: list[int]) -> Iterator[tuple[str, Document]]:
        tiny = self.db.table(table)
        for doc_id in doc_ids:
            stored = tiny.get(doc_id=doc_id)
            if stored is not None:
                yield stored[KEY_FIELD], _detach(stored)

    def count(self, table: str) -> int:
        return len(self.ids.get(table, {}))

    def apply(self, table: str, key: str, doc: Document | None) -> None:
        ids = self.ids.setdefault(table, {})
        tiny = self.db.table(table)
        doc_id = ids.get(key)
        if doc is None:
            if doc_id is not None:
                tiny.remove(doc_ids=[doc_id])
                del ids[key]
            return
        stored = {KEY_FIELD: key, **doc}
        if doc_id is None:
            doc_id = self.next_ids.get(table, 1)
            self.next_ids[table] = doc_id + 1
            tiny.insert(TinyDocument(stored, doc_id=doc_id))
            ids[key] = doc_id
        else:
            # Replacing in place keeps the document's position in all().
            tiny.update(_replace_with(stored), doc_ids=[doc_id])

    def tables(self) -> journal.Tables:
        return cast(journal.Tables, self.db.storage.read())


def _replace_with(stored: Document) -> Callable[[MutableMapping[str, Any]], None]:
    def replace(old: MutableMapping[str, Any]) -> None:
        old.clear()
        old.update(stored)

    return replace


# -- checks shared by the store and its transactions -------------------------------------


def _check_table(table: str, data_dir: Path) -> None:
    if table not in TABLES:
        raise StoreError(f"unknown table {table!r} (known: {', '.join(TABLES)})", file=data_dir)


def _check_key(table: str, key: str, data_dir: Path) -> None:
    _check_table(table, data_dir)
    if not isinstance(key, str):
        raise StoreError(f"{table}: a key must be a string, not {key!r}", file=data_dir)
    if table == META and key == STORE_META_KEY:
        raise StoreError(f"{META}/{STORE_META_KEY} is kept by the store itself", file=data_dir)


# -- transactions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Write:
    encoded: bytes | None  # None: delete
    doc: Document | None


_DELETE = _Write(None, None)


class _Transaction:
    """Committed state plus this transaction's own writes."""

    def __init__(self, memory: _Memory, data_dir: Path) -> None:
        self._memory = memory
        self._dir = data_dir
        self._writes: dict[str, dict[str, _Write]] = {}
        self._open = True

    def get(self, table: str, key: str) -> Document | None:
        self._check(table)
        write = self._writes.get(table, {}).get(key)
        if write is None:
            return self._memory.get(table, key)
        return None if write.doc is None else _deep_copy(write.doc)

    def all(self, table: str) -> Iterator[tuple[str, Document]]:
        self._check(table)
        return self._merged(table, dict(self._writes.get(table, {})))

    def _merged(self, table: str, mine: dict[str, _Write]) -> Iterator[tuple[str, Document]]:
        committed = self._memory.items(table)
        new = [(key, w) for key, w in mine.items() if not self._memory.has(table, key)]
        for key, doc in committed:
            write = mine.get(key)
            if write is None:
                yield key, doc
            elif write.doc is not None:
                yield key, _deep_copy(write.doc)
        for key, write in new:
            if write.doc is not None:
                yield key, _deep_copy(write.doc)

    def count(self, table: str) -> int:
        self._check(table)
        count = self._memory.count(table)
        for key, write in self._writes.get(table, {}).items():
            exists = self._memory.has(table, key)
            count += (write.doc is not None and not exists) - (write.doc is None and exists)
        return count

    def put(self, table: str, key: str, doc: Document) -> None:
        self._check(table)
        _check_key(table, key, self._dir)
        where = f"{table}/{key}"
        if not isinstance(doc, dict):
            raise StoreError(f"{where}: a document must be a dict", file=self._dir)
        if KEY_FIELD in doc:
            raise StoreError(f"{where}: the field {KEY_FIELD} is reserved", file=self._dir)
        try:
            encoded = journal.encode_doc(doc)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{where}: the document is not JSON: {exc}", file=self._dir) from exc
        self._writes.setdefault(table, {})[key] = _Write(encoded, journal.decode_doc(encoded))

    def delete(self, table: str, key: str) -> None:
        self._check(table)
        _check_key(table, key, self._dir)
        self._writes.setdefault(table, {})[key] = _DELETE

    def changes(self) -> list[tuple[str, str, _Write]]:
        """The writes that change something; deleting an absent key does not."""
        return [
            (table, key, write)
            for table, writes in self._writes.items()
            for key, write in writes.items()
            if write.doc is not None or self._memory.has(table, key)
        ]

    def close(self) -> None:
        self._open = False

    def _check(self, table: str) -> None:
        if not self._open:
            raise StoreError("the transaction is over; open a new one", file=self._dir)
        _check_table(table, self._dir)


# -- locks -------------------------------------------------------------------------------


def _open_lock_file(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, journal.FILE_MODE)
    except OSError as exc:
        raise StoreError(f"cannot open the lock file: {exc.strerror}", file=path) from exc


def _try_flock(fd: int, kind: int, path: Path) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        raise StoreError(f"cannot lock: {exc.strerror}", file=path) from exc
    return True


def _write_pid(fd: int) -> None:
    # Overwritten in place at a fixed width: truncating first makes ext4 flush the file
    # on close (its guard for the replace-by-truncate pattern), ~3 ms on every commit.
    os.pwrite(fd, f"{os.getpid():<19}\n".encode(), 0)


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def _lock_holders(fd: int) -> list[int]:
    """The pids holding a flock on the file of ``fd``, from /proc/locks where there is one."""
    st = os.fstat(fd)
    file_id = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    pids = []
    for line in lines:
        fields = line.split()
        # "1: FLOCK ADVISORY WRITE pid maj:min:inode 0 EOF"; waiters have "->" after "1:".
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == file_id:
            pids.append(int(fields[4]))
    return pids


def _describe_holder(fd: int) -> str:
    pids = _lock_holders(fd) or [pid for pid in [_read_pid(fd)] if pid is not None]
    if not pids:
        return "another process"
    return "pid " + ", ".join(map(str, sorted(set(pids))))


# -- the store ---------------------------------------------------------------------------


def _make_private_dir(path: Path) -> None:
    try:
        path.mkdir(mode=_DIR_MODE, parents=True)
        # mkdir's mode passes through the umask; the store must be owner-only exactly.
        path.chmod(_DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise StoreError("the data directory is not a directory", file=path) from None
    except OSError as exc:
        raise StoreError(f"cannot create the data directory: {exc.strerror}", file=path) from exc


class TinyStore:
    """The embedded :class:`~toma.store.base.Store` (see the module docstring)."""

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
        _make_private_dir(self._dir)
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

    # Store

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        self._check()
        if self._in_transaction:
            raise StoreError(
                "a transaction is already open on this store; nested transactions are not "
                "supported", file=self._dir,
            )
        self._in_transaction = True
        try:
            with self._locked(exclusive=True):
                self._catch_up(exclusive=True)
                tx = _Transaction(self._memory, self._dir)
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
        fd = _open_lock_file(path)
        try:
            if not _try_flock(fd, fcntl.LOCK_EX, path):
                pid = _read_pid(fd)
                who = "another toma run" + (f" (pid {pid})" if pid is not None else "")
                raise StoreLocked(f"{who} is using {self._dir}", file=path)
            _write_pid(fd)
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

    def _open(self) -> _Memory:
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
        meta = {KEY_FIELD: STORE_META_KEY, **journal.store_meta(1)}
        tables: journal.Tables = {name: {} for name in TABLES}
        tables[META] = {"1": meta}
        journal.atomic_write(journal.snapshot_path(self._dir, 1), journal.encode_snapshot(tables))

    def _load(self, generation: int) -> _Memory:
        path = journal.snapshot_path(self._dir, generation)
        data = journal.read_file(path)
        snapshot = journal.decode_snapshot(data, path, generation)
        memory = _Memory.from_snapshot(snapshot, generation, len(data))
        del data, snapshot
        self._replay(memory)
        return memory

    def _replay(self, memory: _Memory) -> None:
        """Apply what was appended to the journal since ``memory`` last read it."""
        path = journal.journal_path(self._dir, memory.generation)
        data = journal.read_file(path, memory.journal_end)
        if not data:
            return
        read = journal.parse_journal(
            data, offset=memory.journal_end, line=memory.journal_lines, path=path
        )
        for commit in read.commits:
            for table, key, doc in commit:
                memory.apply(table, key, doc)
        memory.journal_end, memory.journal_lines = read.end, read.lines

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

    def _commit(self, changes: list[tuple[str, str, _Write]]) -> None:
        if not changes:
            return
        memory = self._memory
        line = journal.encode_commit((table, key, w.encoded) for table, key, w in changes)
        path = journal.journal_path(self._dir, memory.generation)
        end = journal.append_line(path, memory.journal_end, line)
        for table, key, write in changes:
            memory.apply(table, key, write.doc)
        memory.journal_end = end
        memory.journal_lines += 1
        if end > max(memory.snapshot_size, self._compact_min):
            self._compact_after_commit()

    def _compact_after_commit(self) -> None:
        try:
            self._compact()
        except StoreError as exc:
            # The commit is durable in the journal; a later commit tries again.
            log.warning("store.compact_failed dir=%s error=%s", self._dir, exc)

    def _compact(self) -> None:
        started = time.monotonic()
        memory = self._memory
        old, new = memory.generation, memory.generation + 1
        tables = dict(memory.tables())
        meta_id = str(memory.ids[META][STORE_META_KEY])
        tables[META] = {**tables[META], meta_id: {KEY_FIELD: STORE_META_KEY,
                                                  **journal.store_meta(new)}}
        # A journal for the new generation can only be debris; it must not count as commits.
        journal.remove_files([journal.journal_path(self._dir, new)])
        size = journal.atomic_write(
            journal.snapshot_path(self._dir, new), journal.encode_snapshot(tables)
        )
        memory.apply(META, STORE_META_KEY, journal.store_meta(new))
        memory.generation, memory.snapshot_size = new, size
        memory.journal_end = memory.journal_lines = 0
        journal.remove_files(
            [journal.journal_path(self._dir, old), journal.snapshot_path(self._dir, old)]
        )
        log.info(
            "store.compacted dir=%s generation=%d bytes=%d seconds=%.3f",
            self._dir, new, size, time.monotonic() - started,
        )

    @contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        path = self._dir / STORE_LOCK
        fd = _open_lock_file(path)
        try:
            self._wait_for_lock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, path)
            if exclusive:
                _write_pid(fd)  # names the holder for whoever times out waiting
            yield
        finally:
            os.close(fd)

    def _wait_for_lock(self, fd: int, kind: int, path: Path) -> None:
        # flock has no timeout of its own: poll, backing off to 50 ms.
        deadline = time.monotonic() + self._lock_timeout
        pause = 0.001
        while not _try_flock(fd, kind, path):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StoreLocked(
                    f"{self._dir} stayed locked by {_describe_holder(fd)} for "
                    f"{self._lock_timeout:g} s", file=path,
                )
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.05)

    def _check(self, table: str | None = None) -> None:
        if self._closed:
            raise StoreError("the store is closed", file=self._dir)
        if table is not None:
            _check_table(table, self._dir)
