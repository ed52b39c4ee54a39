"""The files of the embedded store: snapshots, journals, atomic replacement.

Theory of operation
-------------------
A data directory holds the state of one *generation* ``g`` in two files:

``snapshot-g.json``
    Every table as a TinyDB database, ``{"table": {"doc_id": {...}}}``, so that
    ``TinyDB("snapshot-g.json", access_mode="r")`` opens it for inspection. Each
    stored document carries its store key in the field ``_key``. The ``meta``
    table holds the document ``store`` with the schema version and ``g``.
    A snapshot is only ever written whole, by :func:`atomic_write`.

``journal-g.jsonl``
    What was committed since that snapshot: one line per transaction,
    ``{"ops": [[table, key, doc], ...]}`` with ``doc`` null for a delete.
    A transaction is one ``write`` of its line followed by ``fsync``; it is
    committed once its terminating newline is on disk. A crash during the
    append can therefore only damage the *last* line, which readers ignore and
    the next writer truncates. A bad line anywhere else is corruption.

The current generation is the highest ``g`` with a snapshot file. Compaction
writes ``snapshot-(g+1).json`` through a temporary file, fsync and rename, so
``g+1`` becomes current in one atomic step; only then are ``journal-g.jsonl``
and ``snapshot-g.json`` removed. A crash at any point leaves either the old
generation complete, or the new one complete plus stale files that the next
writer removes. Leftover ``*.tmp`` files are unfinished snapshots.

These functions do no locking; :mod:`toma.store.tinydb` holds the lock around
every use of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from toma.errors import StoreError
from toma.store.base import META, SCHEMA_VERSION, Document

KEY_FIELD = "_key"
STORE_META_KEY = "store"
TEMP_SUFFIX = ".tmp"
FILE_MODE = 0o600

_SNAPSHOT_RE = re.compile(r"snapshot-(\d+)\.json")
_JOURNAL_RE = re.compile(r"journal-(\d+)\.jsonl")
# Documents per encoded piece of a snapshot: large enough for the C encoder to
# do the work, small enough not to hold a second copy of a big table in memory.
_SNAPSHOT_CHUNK_DOCS = 5000
_READ_CHUNK = 1 << 20

# One encoder for every document: json.dumps with options builds a new encoder
# per call, which costs as much as encoding a small document.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))

Tables = dict[str, dict[str, Document]]
"""TinyDB's layout: table name -> document id (a decimal string) -> stored document."""

Change = tuple[str, str, Document | None]
"""One effect of a transaction: (table, key, new document or None for a delete)."""


def snapshot_path(data_dir: Path, generation: int) -> Path:
    return data_dir / f"snapshot-{generation}.json"


def journal_path(data_dir: Path, generation: int) -> Path:
    return data_dir / f"journal-{generation}.jsonl"


@dataclass(frozen=True)
class Layout:
    """The store files found in a data directory."""

    snapshots: tuple[int, ...] = ()
    journals: tuple[int, ...] = ()
    temps: tuple[Path, ...] = ()

    @property
    def current(self) -> int | None:
        return max(self.snapshots, default=None)

    def stale(self, data_dir: Path) -> list[Path]:
        """Files a crash or a finished compaction left behind; safe to remove under the lock."""
        current = self.current
        if current is None:
            return []
        old_snapshots = [snapshot_path(data_dir, g) for g in self.snapshots if g < current]
        old_journals = [journal_path(data_dir, g) for g in self.journals if g < current]
        return [*self.temps, *old_snapshots, *old_journals]


def scan(data_dir: Path) -> Layout:
    snapshots: list[int] = []
    journals: list[int] = []
    temps: list[Path] = []
    try:
        names = [entry.name for entry in data_dir.iterdir()]
    except OSError as exc:
        raise StoreError(f"cannot list the data directory: {exc.strerror}", file=data_dir) from exc
    for name in names:
        if (match := _SNAPSHOT_RE.fullmatch(name)) is not None:
            snapshots.append(int(match.group(1)))
        elif (match := _JOURNAL_RE.fullmatch(name)) is not None:
            journals.append(int(match.group(1)))
        elif name.startswith("snapshot-") and name.endswith(TEMP_SUFFIX):
            temps.append(data_dir / name)
    return Layout(tuple(sorted(snapshots)), tuple(sorted(journals)), tuple(sorted(temps)))


# -- durable file operations -------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    """Make a created, renamed or removed directory entry survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, chunks: Iterable[bytes]) -> int:
    """Replace ``path`` with ``chunks``, all or nothing, and return the size written.

    The temporary file lives in the same directory (a rename is only atomic
    within one file system) and is created 0600 by ``mkstemp``.
    """
    try:
        fd, temp_name = tempfile.mkstemp(
            dir=path.parent, prefix=f"{path.name}.", suffix=TEMP_SUFFIX
        )
    except OSError as exc:
        raise StoreError(f"cannot create a temporary file: {exc.strerror}", file=path) from exc
    temp = Path(temp_name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        temp.replace(path)
        fsync_dir(path.parent)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise StoreError(f"cannot write: {exc.strerror}", file=path) from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return size


def remove_files(paths: Iterable[Path]) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot remove a stale file: {exc.strerror}", file=path) from exc


# -- documents and snapshots -------------------------------------------------------------


def encode_doc(doc: Mapping[str, Any]) -> bytes:
    """The JSON of one document; ValueError, TypeError or UnicodeError if it has none."""
    return _ENCODER.encode(doc).encode()


def decode_doc(encoded: bytes) -> Document:
    doc: Document = json.loads(encoded)
    return doc


def _encode_str(text: str) -> bytes:
    return _ENCODER.encode(text).encode()


def encode_snapshot(tables: Mapping[str, Mapping[str, Document]]) -> Iterator[bytes]:
    """TinyDB's JSON, in pieces, so that a large store is never one giant string."""
    yield b"{"
    for number, (name, docs) in enumerate(tables.items()):
        yield (b"," if number else b"") + _encode_str(name) + b":{"
        items = iter(docs.items())
        first = True
        while piece := dict(islice(items, _SNAPSHOT_CHUNK_DOCS)):
            # Encoding a sub-dict and dropping its braces keeps the work in C.
            yield (b"" if first else b",") + encode_doc(piece)[1:-1]
            first = False
        yield b"}"
    yield b"}"


def store_meta(generation: int) -> Document:
    """The store's own document in the meta table (key ``store``)."""
    return {"schema_version": SCHEMA_VERSION, "generation": generation}


@dataclass
class Snapshot:
    """A decoded snapshot, with the key index rebuilt from the ``_key`` fields."""

    tables: Tables
    ids: dict[str, dict[str, int]] = field(default_factory=dict)


def decode_snapshot(data: bytes, path: Path, generation: int) -> Snapshot:
    try:
        tables = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"the snapshot is not valid JSON: {exc}", file=path) from exc
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise StoreError("the snapshot is not a TinyDB database", file=path)
    snapshot = Snapshot(tables, {name: _index(name, docs, path) for name, docs in tables.items()})
    _check_meta(snapshot, path, generation)
    return snapshot


def _index(table: str, docs: dict[str, Any], path: Path) -> dict[str, int]:
    ids: dict[str, int] = {}
    for doc_id, doc in docs.items():
        key = doc.get(KEY_FIELD) if isinstance(doc, dict) else None
        if not isinstance(key, str) or not (doc_id.isascii() and doc_id.isdigit()):
            raise StoreError(
                f"table {table}: document {doc_id} has no string {KEY_FIELD}", file=path
            )
        if key in ids:
            raise StoreError(f"table {table}: key {key!r} is stored twice", file=path)
        ids[key] = int(doc_id)
    return ids


def _check_meta(snapshot: Snapshot, path: Path, generation: int) -> None:
    doc_id = snapshot.ids.get(META, {}).get(STORE_META_KEY)
    meta = snapshot.tables[META][str(doc_id)] if doc_id is not None else {}
    version = meta.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise StoreError("the snapshot has no schema version", file=path)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the data store has schema version {version}, newer than this toma knows "
            f"({SCHEMA_VERSION}); upgrade toma",
            file=path,
        )
    if meta.get("generation") != generation:
        raise StoreError(
            f"the snapshot says generation {meta.get('generation')}, its name {generation}",
            file=path,
        )


def read_file(path: Path, offset: int = 0) -> bytes:
    """The bytes of ``path`` from ``offset``; b"" for a missing file at offset 0."""
    try:
        with path.open("rb") as src:
            size = os.fstat(src.fileno()).st_size
            if size < offset:
                raise StoreError(
                    f"the file is shorter ({size} bytes) than what was already read ({offset})",
                    file=path,
                )
            src.seek(offset)
            return src.read()
    except FileNotFoundError:
        if offset:
            raise StoreError("the journal disappeared while in use", file=path) from None
        return b""
    except OSError as exc:
        raise StoreError(f"cannot read: {exc.strerror}", file=path) from exc


# -- the journal -------------------------------------------------------------------------


def encode_commit(ops: Iterable[tuple[str, str, bytes | None]]) -> bytes:
    """One journal line from already encoded documents (None: delete)."""
    parts = [
        b"[" + _encode_str(table) + b"," + _encode_str(key) + b","
        + (doc if doc is not None else b"null") + b"]"
        for table, key, doc in ops
    ]
    return b'{"ops":[' + b",".join(parts) + b"]}\n"


@dataclass(frozen=True)
class JournalRead:
    """The committed transactions found in a stretch of journal."""

    commits: list[list[Change]]
    end: int  # offset just past the last committed line
    lines: int  # line number of that line (1-based), 0 when none yet
    torn: bool  # whether uncommitted bytes follow ``end``


def parse_journal(data: bytes, *, offset: int, line: int, path: Path) -> JournalRead:
    """Decode journal bytes that start at ``offset``, just after line number ``line``."""
    commits: list[list[Change]] = []
    lines = data.split(b"\n")
    # The piece after the last newline was never committed (b"" when none).
    complete, torn = lines[:-1], lines[-1] != b""
    for number, text in enumerate(complete):
        try:
            record = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            if number == len(complete) - 1 and not torn:
                # The last line, damaged by a crash during its append.
                return JournalRead(commits, offset, line, torn=True)
            raise StoreError(f"journal line is not valid JSON: {exc}", file=path,
                             line=line + 1) from exc
        commits.append(_changes(record, path, line + 1))
        offset += len(text) + 1
        line += 1
    return JournalRead(commits, offset, line, torn)


def _changes(record: Any, path: Path, line: int) -> list[Change]:
    ops = record.get("ops") if isinstance(record, dict) else None
    if not isinstance(ops, list):
        raise StoreError("journal line has no list of ops", file=path, line=line)
    changes: list[Change] = []
    for op in ops:
        if not (isinstance(op, list) and len(op) == 3 and isinstance(op[0], str)
                and isinstance(op[1], str)
                and (op[2] is None or (isinstance(op[2], dict) and KEY_FIELD not in op[2]))):
            raise StoreError(f"journal op is not [table, key, doc]: {op!r:.80}", file=path,
                             line=line)
        changes.append((op[0], op[1], op[2]))
    return changes


def append_line(path: Path, offset: int, line: bytes) -> int:
    """Write ``line`` at ``offset`` (dropping a torn tail), fsync it, return the new end.

    On failure the file is cut back to ``offset``, so nothing half-written stays.
    """
    created = False
    try:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            created = True
        except FileExistsError:
            fd = os.open(path, os.O_WRONLY)
    except OSError as exc:
        raise StoreError(f"cannot open the journal: {exc.strerror}", file=path) from exc
    try:
        size = os.fstat(fd).st_size
        if size < offset:
            raise StoreError(f"the journal is shorter ({size} bytes) than committed ({offset})",
                             file=path)
        if size > offset:
            os.ftruncate(fd, offset)
        _write_all(fd, line, offset)
        os.fsync(fd)
        if created:
            fsync_dir(path.parent)
    except OSError as exc:
        _truncate_quietly(fd, offset)
        raise StoreError(f"cannot append to the journal: {exc.strerror}", file=path) from exc
    finally:
        os.close(fd)
    return offset + len(line)


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _truncate_quietly(fd: int, offset: int) -> None:
    # Best effort on a path that is already failing; the original error is reported.
    with contextlib.suppress(OSError):
        os.ftruncate(fd, offset)
