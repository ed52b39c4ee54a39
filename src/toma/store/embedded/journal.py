"""The files of the embedded store: snapshots, journals, atomic replacement.

Theory of operation
-------------------
A data directory holds the state of one *generation* ``g`` in two files:

``snapshot-g.json``
    Every table as a TinyDB database, ``{"table": {"doc_id": {...}}}``, so that
    ``TinyDB("snapshot-g.json", access_mode="r")`` opens it for inspection. Each
    stored document carries its store key in the field ``_key``. The ``meta``
    table holds the document ``store`` with the schema version and ``g``.
    A snapshot is only ever written whole, by :func:`atomic_write`, one
    document per line (see :func:`encode_snapshot`), so that it can be read
    back a few thousand documents at a time instead of as one giant object;
    any other layout of the same JSON (an older toma's, TinyDB's own) is read
    whole.

``journal-g.jsonl``
    What was committed since that snapshot: one line per transaction,
    ``{"c":"xxxxxxxx","ops":[[table, key, doc], ...]}`` with ``doc`` null for a
    delete, and ``c`` the CRC32 (8 hex digits) of the bytes after ``c``'s
    comma, up to the newline: ``"ops":[...]}``. A transaction is one ``write``
    of its line followed by ``fsync``; it is committed once its terminating
    newline is on disk. A crash during the append can therefore only damage the
    *last* line, which readers drop (logging ``store.journal_tail_dropped``
    with the file, offset and bytes) and the next writer truncates, recording
    what it cut in ``meta/journal_damage`` for ``toma status``. A bad line
    anywhere else is corruption: a :class:`StoreError` naming the file and the
    line, never skipped. The checksum finds damage that is still valid JSON (a
    digit or a letter changed), which a parse alone took for a commit.

    Journals written before checksums hold lines ``{"ops":[...]}``: such a
    line is read as before, as long as no line with a checksum came before it
    in the file (after one, a line without is damage). A line must hold exactly
    these keys, so a damaged ``"c"`` is not taken for an old line. Readers take
    the journal a line at a time (:func:`read_journal`): it may grow as large as
    the snapshot before compaction. CRC32 (zlib, in C) costs well under a
    microsecond per kilobyte, next to the fsync of every commit.

The current generation is the highest ``g`` with a snapshot file. Compaction
writes ``snapshot-(g+1).json`` through a temporary file, fsync and rename, so
``g+1`` becomes current in one atomic step; only then are ``journal-g.jsonl``
and ``snapshot-g.json`` removed. A crash at any point leaves either the old
generation complete, or the new one complete plus stale files that the next
writer removes. Leftover ``*.tmp`` files are unfinished snapshots.

These functions do no locking; :mod:`toma.store.embedded.tinydb` holds the lock around
every use of them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toma.durable import TEMP_SUFFIX, fsync_dir
from toma.errors import StoreError
from toma.logs import fields
from toma.store.base import Document
from toma.store.embedded.snapshot import KEY_FIELD, encode_str

log = logging.getLogger(__name__)

DAMAGE_META_KEY = "journal_damage"  # the last torn tail a writer cut (see TornTail)
FILE_MODE = 0o600

_SNAPSHOT_RE = re.compile(r"snapshot-(\d+)\.json")
_JOURNAL_RE = re.compile(r"journal-(\d+)\.jsonl")
Change = tuple[str, str, Document | None]
"""One effect of a transaction: (table, key, new document or None for a delete)."""

_CHECKED = b'{"c":"'  # how a line with a checksum starts: then 8 hex digits and '",'
_BODY_AT = len(_CHECKED) + 10
_CHECKED_KEYS = frozenset({"c", "ops"})
_OLD_KEYS = frozenset({"ops"})


@dataclass(frozen=True)
class TornTail:
    """What :func:`read_journal` dropped at the end of a journal: an uncommitted write."""

    file: str
    offset: int  # where the dropped bytes start
    size: int  # how many bytes were dropped
    line: int  # the line number they would have been

    def to_doc(self) -> Document:
        return {"file": self.file, "offset": self.offset, "bytes": self.size, "line": self.line}


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


def remove_files(paths: Iterable[Path]) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot remove a stale file: {exc.strerror}", file=path) from exc


# -- the journal -------------------------------------------------------------------------


def encode_commit(ops: Iterable[tuple[str, str, bytes | None]]) -> bytes:
    """One journal line from already encoded documents (None: delete)."""
    parts = [
        b"["
        + encode_str(table)
        + b","
        + encode_str(key)
        + b","
        + (doc if doc is not None else b"null")
        + b"]"
        for table, key, doc in ops
    ]
    body = b'"ops":[' + b",".join(parts) + b"]}"
    return b'%s%08x",%s\n' % (_CHECKED, zlib.crc32(body), body)


def read_journal(
    path: Path,
    *,
    offset: int,
    line: int,
    checked: bool = False,
    torn: Callable[[TornTail], None] | None = None,
) -> Iterator[tuple[list[Change], int, int, bool]]:
    """The transactions committed after ``offset`` (just after line number ``line``).

    Yields ``(changes, end, line, checked)`` per transaction, ``end`` being the
    offset just past its line and ``checked`` whether a line so far had a
    checksum: a caller that applies each as it comes is always at a commit
    boundary. A last line without its newline, or a damaged last line,
    is a commit torn by a crash: it is left out, logged, and handed to ``torn``.
    A damaged line before the last is a :class:`StoreError` naming the line.
    ``checked`` says that a line read before ``offset`` had a checksum, so that
    every line from here on must have one.
    """
    try:
        with path.open("rb") as src:
            size = os.fstat(src.fileno()).st_size
            if size < offset:
                raise StoreError(
                    f"the file is shorter ({size} bytes) than what was already read ({offset})",
                    file=path,
                )
            src.seek(offset)
            text = src.readline()
            while text.endswith(b"\n"):
                following = src.readline()
                try:
                    record, checked = _decode_line(text, checked)
                except ValueError as exc:
                    if not following:
                        # The last line, damaged by a crash during its append.
                        _dropped(path, offset, len(text), line + 1, torn)
                        return
                    raise StoreError(
                        f"journal line is damaged: {exc}", file=path, line=line + 1
                    ) from None
                offset += len(text)
                line += 1
                yield _changes(record, path, line), offset, line, checked
                text = following
            if text:
                _dropped(path, offset, len(text), line + 1, torn)
    except FileNotFoundError:
        if offset:
            raise StoreError("the journal disappeared while in use", file=path) from None
    except OSError as exc:
        raise StoreError(f"cannot read: {exc.strerror}", file=path) from exc


def _decode_line(text: bytes, checked: bool) -> tuple[Any, bool]:
    """The JSON of one journal line and whether it had a checksum; ValueError if damaged."""
    if text.startswith(_CHECKED):
        digits, body = text[len(_CHECKED) : _BODY_AT - 2], text[_BODY_AT:-1]
        try:
            # int() would also take " +1_f": no such text is ever the CRC of its line.
            crc = int(digits, 16)
        except ValueError:
            raise ValueError("its checksum is unreadable") from None
        if crc != zlib.crc32(body) or text[_BODY_AT - 2 : _BODY_AT] != b'",':
            raise ValueError("its checksum does not match its contents")
        keys, checked = _CHECKED_KEYS, True
    elif checked:
        raise ValueError("it has no checksum, unlike the lines before it")
    else:
        keys = _OLD_KEYS
    try:
        record = json.loads(text)
    except RecursionError:
        raise ValueError("it is nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise ValueError(f"it is not valid JSON: {exc}") from None
    if not isinstance(record, dict) or record.keys() != keys:
        raise ValueError(f"it does not hold exactly the keys {', '.join(sorted(keys))}")
    return record, checked


def _dropped(
    path: Path, offset: int, size: int, line: int, torn: Callable[[TornTail], None] | None
) -> None:
    tail = TornTail(file=str(path), offset=offset, size=size, line=line)
    if torn is None:
        log_torn(tail)
    else:
        torn(tail)


def log_torn(tail: TornTail) -> None:
    log.warning("store.journal_tail_dropped", extra=fields(**tail.to_doc()))


def _changes(record: Any, path: Path, line: int) -> list[Change]:
    ops = record.get("ops") if isinstance(record, dict) else None
    if not isinstance(ops, list):
        raise StoreError("journal line has no list of ops", file=path, line=line)
    changes: list[Change] = []
    for op in ops:
        if not (
            isinstance(op, list)
            and len(op) == 3
            and isinstance(op[0], str)
            and isinstance(op[1], str)
            and (op[2] is None or (isinstance(op[2], dict) and KEY_FIELD not in op[2]))
        ):
            raise StoreError(
                f"journal op is not [table, key, doc]: {op!r:.80}", file=path, line=line
            )
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
            raise StoreError(
                f"the journal is shorter ({size} bytes) than committed ({offset})", file=path
            )
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
