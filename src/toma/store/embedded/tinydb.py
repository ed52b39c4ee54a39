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
(see :class:`_Freezer`). A contact, an enrolment or an outbox record then costs
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

import contextlib
import fcntl
import gc
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, NamedTuple

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
from toma.store.embedded import journal
from toma.store.embedded.journal import STORE_META_KEY

log = logging.getLogger(__name__)

STORE_LOCK = "store.lock"
DAEMON_LOCK = "daemon.lock"
DEFAULT_COMPACT_MIN_BYTES = 8 << 20
DEFAULT_LOCK_TIMEOUT = 30.0
_DIR_MODE = 0o700
# Changes remembered for the change feed; a reader further behind reloads everything.
_FEED_LIMIT = 1 << 16

_intern = sys.intern


# -- documents in memory -----------------------------------------------------------------


Shape = tuple[tuple[str, ...], tuple[int, ...], int]
"""The names of the fields whose values a frozen dict holds, the positions among
them that hold a frozen dict or list, and the number of the dict's template in
:data:`_TEMPLATES` (``_NO_TEMPLATE`` when every field is held)."""

Frozen = tuple[Any, ...]
"""A frozen dict, ``(*values, shape)``, or a frozen list, ``(*values, _FLAT_LIST)`` or
``(*values, _DEEP_LIST)`` when it holds dicts or lists itself.

Values are strings (shared, see :class:`_Freezer`), numbers, booleans, None or
frozen dicts and lists. Only plain tuples of such values: the garbage collector
stops tracking them after one look, so a million documents do not slow every
collection down (a dict in a shape would keep every document tracked; hence
the template's number rather than the template).
"""


# The ends of frozen lists (a frozen dict ends with its shape, a tuple).
_FLAT_LIST = None
_DEEP_LIST = False

# A field whose value is null or "" is left out of its frozen dict, and put back
# from the shape's template: documents are full of them (no error code, no retry
# date, an unknown last name), a slot each. Found by a dict lookup, which never
# takes 0, False or 0.0 for "" (they hash alike but compare unequal).
_OMITTED: dict[Any, int] = {None: 0, "": 1}
_OMITTED_VALUES: tuple[Any, ...] = (None, "")

# Every field of a dict in its order, with the omitted values: a thawed dict is a
# copy of its template with the held values put in, so it keeps the order of the
# dict that was frozen. Shared by every store of the process; never changed once
# added, and as few as the distinct (fields, omitted fields) seen.
_TEMPLATES: list[Document] = []
_TEMPLATE_NUMBERS: dict[tuple[tuple[str, ...], tuple[int | None, ...]], int] = {}
_NO_TEMPLATE = -1

# The types of the values of the frozen lists and dicts that are shared.
_SHAREABLE = frozenset({str, type(None), tuple})

_Fields = tuple[tuple[str, ...], tuple[int, ...]]
"""A dict's field names, and the positions of the dicts and lists among its values."""


class _Layout(NamedTuple):
    """How to freeze the dicts of some fields, some of them null or "" (see _Freezer)."""

    # The omitted values of a dict, taken out of its values (None: nothing is
    # omitted); a dict can be frozen so if they equal ``omitted``.
    probe: Callable[[list[Any]], Any] | None
    omitted: Any
    shape: Shape
    # The frozen dict, from its values followed by the shape.
    pick: Callable[[list[Any]], Frozen]


def _make_layout(fields: _Fields, codes: tuple[int | None, ...], values: list[Any]) -> _Layout:
    """The layout of the dicts of ``fields`` that omits the values ``codes`` name (the
    codes of ``_OMITTED`` of ``values``, one of those dicts)."""
    names, nested = fields
    held = [i for i, code in enumerate(codes) if code is None]
    stored_names = tuple([_intern(names[i]) for i in held])
    if len(held) == len(names):
        return _Layout(None, None, (stored_names, nested, _NO_TEMPLATE), tuple)
    number = _TEMPLATE_NUMBERS.get((names, codes))
    if number is None:
        template = {
            _intern(name): None if code is None else _OMITTED_VALUES[code]
            for name, code in zip(names, codes, strict=True)
        }
        _TEMPLATES.append(template)
        number = _TEMPLATE_NUMBERS[names, codes] = len(_TEMPLATES) - 1
    # Dicts and lists are never omitted: their positions among the held values.
    shape = (stored_names, tuple([held.index(i) for i in nested]), number)
    probe = itemgetter(*[i for i, code in enumerate(codes) if code is not None])
    # itemgetter of one position gives the item itself, not a tuple of it.
    pick = itemgetter(*held, len(names)) if held else _shape_only
    return _Layout(probe, probe(values), shape, pick)


def _shape_only(values: list[Any]) -> Frozen:
    return (values[-1],)


class _Freezer:
    """Makes frozen dicts, keeping one :data:`Shape` per distinct set of fields and
    omitted values.

    Equal values are shared: one string object for every copy of a string (a
    contact's address is its key, its ``email`` and the ``contact`` of each of
    its enrolments and messages), and one frozen list or dict for every copy
    of a flat one of strings (tags, custom fields). The tables that find them
    are the store's own rather than :func:`sys.intern`'s, so that they can
    forget what is not shared (see :meth:`prune`): at 100k contacts the strings
    held in one place only (message keys, message ids, enrolment keys) would
    otherwise cost tens of MB of table for nothing.

    The null and "" values of a dict are left out (see ``_OMITTED``). Which
    fields are left out is decided per set of fields, from the last dict that
    did not fit: a dict whose values are null or "" where the last one's were
    is frozen without asking anything else of it; a dict that has a few more
    of them merely keeps those.
    """

    def __init__(self) -> None:
        self._layouts: dict[_Fields, _Layout] = {}  # the last one used, per set of fields
        self._every_layout: dict[tuple[_Fields, tuple[int | None, ...]], _Layout] = {}
        self._strings: dict[str, str] = {}
        self._flat: dict[Frozen, Frozen] = {}
        self._pruned_size = 0

    def share(self, text: str) -> str:
        """The shared copy of ``text``."""
        return self._strings.setdefault(text, text)

    def freeze(self, doc: Mapping[str, Any]) -> Frozen:
        """``doc`` frozen; it must be a dict of JSON values (str, int, float, bool, None,
        dict, list), as json decodes them."""
        share = self._strings.setdefault
        values = [share(v, v) if type(v) is str else v for v in doc.values()]
        nested: tuple[int, ...] = ()
        # A dict holding only strings, numbers and None is not tracked by the
        # garbage collector (see gc.is_tracked): most documents skip the search.
        if gc.is_tracked(doc):
            nested = tuple([i for i, v in enumerate(values) if type(v) is dict or type(v) is list])
            for i in nested:
                values[i] = self._freeze_nested(values[i])
        fields = (tuple(doc), nested)
        layout = self._layouts.get(fields)
        if layout is None or (layout.probe is not None and layout.probe(values) != layout.omitted):
            key = (fields, tuple(map(_OMITTED.get, values)))
            layout = self._every_layout.get(key)
            if layout is None:
                layout = self._every_layout[key] = _make_layout(fields, key[1], values)
            self._layouts[fields] = layout
        values.append(layout.shape)
        return layout.pick(values)

    def _freeze_nested(self, value: Any) -> Frozen:
        if type(value) is dict:
            frozen = self.freeze(value)
            flat = not frozen[-1][1]
        else:
            share = self._strings.setdefault
            items = [share(v, v) if type(v) is str else v for v in value]
            end = _FLAT_LIST
            for i, item in enumerate(items):
                if type(item) is dict or type(item) is list:
                    items[i], end = self._freeze_nested(item), _DEEP_LIST
            items.append(end)
            frozen = tuple(items)
            flat = end is _FLAT_LIST
        # Only strings and None (and the shape, the one tuple in a flat dict):
        # equal numbers of other types (1, 1.0, True) would be taken for one another.
        if flat and all(map(_SHAREABLE.__contains__, map(type, frozen))):
            return self._flat.setdefault(frozen, frozen)
        return frozen

    def prune(self) -> None:
        """Forget the values held in fewer than :data:`_SHARED_PLACES` places.

        A value that a document or two hold (a message id, a key) is not worth
        its place in a table; one that many hold (a sequence name, a moment
        written by one commit, an address) is kept, for the documents to come.
        Whatever the documents no longer hold at all goes too, so that the
        tables never keep removed documents alive.
        """
        self._strings = _shared(self._strings)
        self._flat = _shared(self._flat)
        self._pruned_size = len(self._strings) + len(self._flat)

    def prune_if_grown(self) -> None:
        """:meth:`prune` once the tables have doubled since it last ran."""
        if len(self._strings) + len(self._flat) > max(2 * self._pruned_size, _PRUNE_MIN):
            self.prune()


# How many places (documents, table keys, or anything else) must hold a value for
# the freezer's tables to keep it through a prune. A message's key is held by its
# table and its document, and in the daemon twice more by the planner's model:
# four places, and still not a value that documents to come will repeat.
_SHARED_PLACES = 5
# References to a value while _shared looks at it: the table's key and value, the
# comprehension's variable, getrefcount's argument.
_TABLE_REFS = 4
# Tables smaller than this are never pruned between loads: not worth the pass.
_PRUNE_MIN = 1 << 16


def _shared(table: dict[Any, Any]) -> dict[Any, Any]:
    """The entries of ``table`` whose value is held in at least _SHARED_PLACES places."""
    count = sys.getrefcount
    limit = _TABLE_REFS + _SHARED_PLACES
    return {value: value for value in table if count(value) >= limit}


def _thaw(frozen: Frozen) -> Document:
    """A new dict (and new nested dicts and lists) from a frozen one."""
    fields, nested, template = frozen[-1]
    # zip stops at the last field, before the shape.
    if template == _NO_TEMPLATE:
        doc = dict(zip(fields, frozen, strict=False))
    else:
        # Copying a dict and replacing values is no slower than building one.
        doc = _TEMPLATES[template].copy()
        doc.update(zip(fields, frozen, strict=False))
    for i in nested:
        doc[fields[i]] = _thaw_nested(frozen[i])
    return doc


def _thaw_nested(frozen: Frozen) -> Any:
    end = frozen[-1]
    if end is _FLAT_LIST:
        return list(frozen[:-1])
    if end is _DEEP_LIST:
        return [_thaw_nested(v) if type(v) is tuple else v for v in frozen[:-1]]
    return _thaw(frozen)


# -- memory ------------------------------------------------------------------------------


class _Memory:
    """The tables as of one point of the files: ``generation``, ``journal_end``."""

    def __init__(self, generation: int, snapshot_size: int) -> None:
        self.tables: dict[str, dict[str, Frozen]] = {name: {} for name in TABLES}
        # A freezer per memory: its tables find the values this memory holds.
        self.freezer = _Freezer()
        self.generation = generation
        self.snapshot_size = snapshot_size
        self.journal_end = 0
        self.journal_lines = 0
        self.journal_checked = False  # a line of the journal so far had a checksum
        self.torn: journal.TornTail | None = None  # found at the journal's end, not yet cut
        # The change feed (see the module docstring): ``feed[i]`` is change number
        # ``feed_start + i`` of this memory, whose identity is ``feed_token``.
        self.feed_token = object()
        self.feed: list[Changed] = []
        self.feed_start = 0
        self.feeding = False  # off while loading: a new memory starts a new feed anyway

    def has(self, table: str, key: str) -> bool:
        return key in self.tables.get(table, {})

    def get(self, table: str, key: str) -> Document | None:
        frozen = self.tables.get(table, {}).get(key)
        return None if frozen is None else _thaw(frozen)

    def items(self, table: str) -> Iterator[tuple[str, Document]]:
        docs = self.tables.get(table, {})
        # Keys are taken now, so writes during the iteration cannot break it.
        return self._yield(docs, list(docs))

    @staticmethod
    def _yield(docs: dict[str, Frozen], keys: list[str]) -> Iterator[tuple[str, Document]]:
        for key in keys:
            frozen = docs.get(key)
            if frozen is not None:
                yield key, _thaw(frozen)

    def count(self, table: str) -> int:
        return len(self.tables.get(table, {}))

    def apply(self, table: str, key: str, frozen: Frozen | None) -> None:
        docs = self.tables.setdefault(table, {})
        if frozen is None:
            if docs.pop(key, None) is None:
                return
        else:
            key = self.freezer.share(key)
            # Replacing in place keeps the document's position in all().
            docs[key] = frozen
        if self.feeding:
            feed = self.feed
            feed.append((table, key, frozen is None))
            if len(feed) > _FEED_LIMIT:
                drop = len(feed) // 2
                del feed[:drop]
                self.feed_start += drop

    def mark(self) -> ChangeMark:
        return ChangeMark(self.feed_token, self.feed_start + len(self.feed))

    def changed_since(self, mark: ChangeMark) -> list[Changed] | None:
        if mark.source is not self.feed_token or mark.position < self.feed_start:
            return None
        return self.feed[mark.position - self.feed_start :]

    def snapshot_docs(self, table: str, meta: Document) -> Iterator[tuple[str, Document]]:
        """The documents of ``table`` to write to a snapshot whose store document is ``meta``."""
        for key, frozen in self.tables[table].items():
            if table == META and key == STORE_META_KEY:
                yield key, meta
            else:
                yield key, _thaw(frozen)


class PinnedFile(NamedTuple):
    """A file of the data directory, open, and how many of its bytes are the state."""

    name: str
    handle: BinaryIO
    size: int


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


class _Write(NamedTuple):
    encoded: bytes | None  # None: delete
    frozen: Frozen | None


_DELETE = _Write(None, None)


class _Transaction:
    """Committed state plus this transaction's own writes."""

    def __init__(self, memory: _Memory, data_dir: Path) -> None:
        self._memory = memory
        self._freezer = memory.freezer
        self._dir = data_dir
        self._writes: dict[str, dict[str, _Write]] = {}
        self._open = True

    def get(self, table: str, key: str) -> Document | None:
        self._check(table)
        write = self._writes.get(table, {}).get(key)
        if write is None:
            return self._memory.get(table, key)
        return None if write.frozen is None else _thaw(write.frozen)

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
            elif write.frozen is not None:
                yield key, _thaw(write.frozen)
        for key, write in new:
            if write.frozen is not None:
                yield key, _thaw(write.frozen)

    def count(self, table: str) -> int:
        self._check(table)
        count = self._memory.count(table)
        for key, write in self._writes.get(table, {}).items():
            exists = self._memory.has(table, key)
            count += (write.frozen is not None and not exists) - (write.frozen is None and exists)
        return count

    def put(self, table: str, key: str, doc: Document) -> None:
        self._check(table)
        _check_key(table, key, self._dir)
        where = f"{table}/{key}"
        if not isinstance(doc, dict):
            raise StoreError(f"{where}: a document must be a dict", file=self._dir)
        if journal.KEY_FIELD in doc:
            raise StoreError(f"{where}: the field {journal.KEY_FIELD} is reserved", file=self._dir)
        try:
            encoded, copy = journal.normalise_doc(doc)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{where}: the document is not JSON: {exc}", file=self._dir) from exc
        self._writes.setdefault(table, {})[key] = _Write(encoded, self._freezer.freeze(copy))

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
            if write.frozen is not None or self._memory.has(table, key)
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
            with contextlib.suppress(ValueError):
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
                    if name in (STORE_LOCK, DAEMON_LOCK) or name.endswith(journal.TEMP_SUFFIX):
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
        tables: list[tuple[str, list[tuple[str, Document]]]] = [
            (name, []) for name in TABLES if name != META
        ]
        tables.append((META, [(STORE_META_KEY, journal.store_meta(1))]))
        journal.atomic_write(journal.snapshot_path(self._dir, 1), journal.encode_snapshot(tables))

    def _load(self, generation: int) -> _Memory:
        path = journal.snapshot_path(self._dir, generation)
        memory = _Memory(generation, journal.file_size(path))
        freezer = memory.freezer
        freeze, share = freezer.freeze, freezer.share
        tables = memory.tables
        for table, key, doc in journal.read_snapshot(path):
            docs = tables.get(table)
            if docs is None:
                docs = tables[table] = {}
            elif key in docs:
                raise StoreError(f"table {table}: key {key!r} is stored twice", file=path)
            docs[share(key)] = freeze(doc)
        journal.check_meta(memory.get(META, STORE_META_KEY), path, generation)
        self._replay(memory)
        freezer.prune()
        memory.feeding = True
        return memory

    def _replay(self, memory: _Memory) -> None:
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

    def _commit(self, changes: list[tuple[str, str, _Write]]) -> None:
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

    def _damage_note(self, tail: journal.TornTail) -> _Write:
        doc = {**tail.to_doc(), "cut_at": datetime.now(UTC).isoformat(timespec="seconds")}
        encoded, copy = journal.normalise_doc(doc)
        return _Write(encoded, self._memory.freezer.freeze(copy))

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
        meta = journal.store_meta(new, schema_version or self._schema_version())
        # A journal for the new generation can only be debris; it must not count as commits.
        journal.remove_files([journal.journal_path(self._dir, new)])
        size = journal.atomic_write(
            journal.snapshot_path(self._dir, new),
            journal.encode_snapshot(
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
                    f"{self._lock_timeout:g} s",
                    file=path,
                )
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.05)

    def _check(self, table: str | None = None) -> None:
        if self._closed:
            raise StoreError("the store is closed", file=self._dir)
        if table is not None:
            _check_table(table, self._dir)
