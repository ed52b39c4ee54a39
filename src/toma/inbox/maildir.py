"""A local Maildir as the inbox: read-only, paged by inode change time.

Theory of operation
-------------------

Messages are the files in ``new/`` and ``cur/`` (names starting with a dot are
not messages, by the Maildir convention). Nothing is ever moved, renamed or
flagged: the owner's mail client stays the only writer. A message's key is the
unique part of its file name, before ``:2,``, so it survives the client moving
it from ``new/`` to ``cur/`` or changing its flags.

Files are handed over in order of their inode change time (``st_ctime``), then
name. Not the modification time: tools that copy or synchronise mail often set
``mtime`` to the message's date, so a message arriving today could carry last
year's mtime and sort before a position already passed. The change time is set
by the kernel when a file is renamed into the Maildir and cannot be set back,
so a message that arrives after a fetch always sorts after what that fetch
returned — except within the clock's granularity and the instant of a scan. To
close that gap the cursor keeps the change time of the last file handed over
and the names handed over within :data:`OVERLAP_NS` before it; the next fetch
looks back that far and skips only those names.

A mail client's rename (new/ to cur/, a flag change) updates the change time,
so the message is handed over again; the caller dedupes by key. ``received_at``
is the modification time, the best guess at when the message was delivered.

A batch also carries the cursor after each of its messages — what a fetch
limited to that many would have returned — so a caller that stops part-way
resumes right after the last message it recorded.
"""

from __future__ import annotations

import bisect
import logging
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from toma.inbox.base import Batch, Cursor, Inbound, InboxError, check_limit

log = logging.getLogger(__name__)

# How far back each fetch looks before the cursor. Far more than the kernel's
# timestamp granularity (a few milliseconds) and the length of one scan.
OVERLAP_NS = 2_000_000_000
_SUBDIRS = ("new", "cur")


@dataclass(frozen=True)
class _Entry:
    changed_ns: int
    name: str  # the unique part: the key without "maildir:"
    path: Path
    modified_ns: int


class MaildirSource:
    """Read a Maildir without changing it; a missing one is created (mode 0700)."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        try:
            for sub in ("", "new", "cur", "tmp"):
                # Owner-only: this is somebody's mail. mkdir leaves existing folders as they are.
                (self._path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise InboxError(
                f"cannot use {self._path} as a Maildir: {exc.strerror or exc}",
                key="inbox.path",
            ) from None

    @property
    def path(self) -> Path:
        return self._path

    def fetch(self, cursor: Cursor | None, *, limit: int = 500) -> Batch:
        check_limit(limit)
        cursor = cursor or Cursor()
        entries = self._scan()
        if cursor.changed_ns is None:
            skip: frozenset[str] = frozenset()
            wanted = entries
        else:
            since = cursor.changed_ns - OVERLAP_NS
            skip = frozenset(cursor.recent)
            wanted = [e for e in entries if e.changed_ns >= since and e.name not in skip]
        messages: list[Inbound] = []
        taken: list[_Entry] = []
        for entry in wanted:
            if len(messages) >= limit:
                break
            data = self._read(entry)
            if data is None:
                continue
            taken.append(entry)
            messages.append(
                Inbound(
                    key="maildir:" + entry.name,
                    data=data,
                    received_at=datetime.fromtimestamp(entry.modified_ns / 1e9, tz=UTC),
                )
            )
        return Batch(
            messages=tuple(messages),
            cursor=_advance(cursor, taken, entries, skip),
            positions=_positions(cursor, taken, entries, skip),
        )

    def close(self) -> None:
        """Nothing is held open between fetches."""

    def _scan(self) -> list[_Entry]:
        by_name: dict[str, _Entry] = {}
        for sub in _SUBDIRS:
            folder = self._path / sub
            try:
                children = list(os.scandir(folder))
            except FileNotFoundError:
                continue  # removed by hand; nothing in it to read
            except OSError as exc:
                raise InboxError(
                    f"cannot list {folder}: {exc.strerror or exc}", key="inbox.path"
                ) from None
            for child in children:
                if child.name.startswith("."):
                    continue
                try:
                    info = child.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # moved by a mail client while we looked; found next time
                if not stat.S_ISREG(info.st_mode):
                    continue
                name = unique_name(child.name)
                entry = _Entry(info.st_ctime_ns, name, Path(child.path), info.st_mtime_ns)
                # During a client's move the same message can be seen in both folders.
                if name not in by_name or entry.changed_ns > by_name[name].changed_ns:
                    by_name[name] = entry
        return sorted(by_name.values(), key=lambda e: (e.changed_ns, e.name))

    def _read(self, entry: _Entry) -> bytes | None:
        try:
            return entry.path.read_bytes()
        except FileNotFoundError:
            # Renamed between the scan and now: its new change time puts it after
            # the cursor, so the next fetch reads it under its new name.
            return None
        except OSError as exc:
            raise InboxError(
                f"cannot read {entry.path}: {exc.strerror or exc}", key="inbox.path"
            ) from None


def unique_name(filename: str) -> str:
    """The part of a Maildir file name that identifies the message, without its flags."""
    for separator in (":2,", ":1,", "!2,"):  # "!" is the Windows-safe colon of some tools
        if separator in filename:
            return filename.split(separator, 1)[0]
    return filename


def _positions(
    cursor: Cursor, taken: list[_Entry], entries: list[_Entry], skip: frozenset[str]
) -> tuple[Cursor, ...]:
    """The cursor after each of ``taken``: ``_advance`` of every prefix, without rescanning.

    ``taken`` is in change-time order, so the names of a prefix that fall in the
    look-back window are a tail of it, found by bisection.
    """
    skipped = [e for e in entries if e.name in skip]
    times = [e.changed_ns for e in taken]
    out: list[Cursor] = []
    for count in range(1, len(taken) + 1):
        newest = max(cursor.changed_ns or 0, times[count - 1])
        since = newest - OVERLAP_NS
        first = bisect.bisect_left(times, since, 0, count)
        recent = sorted(
            [e.name for e in skipped if e.changed_ns >= since]
            + [e.name for e in taken[first:count]]
        )
        out.append(Cursor(changed_ns=newest, recent=tuple(recent)))
    return tuple(out)


def _advance(
    cursor: Cursor, taken: list[_Entry], entries: list[_Entry], skip: frozenset[str]
) -> Cursor:
    """The cursor after ``taken``: the newest change time, and the names just before it."""
    if not taken:
        return cursor if cursor.changed_ns is not None else Cursor()
    newest = max(cursor.changed_ns or 0, taken[-1].changed_ns)
    since = newest - OVERLAP_NS
    handed = skip | {e.name for e in taken}
    # Only names still in the Maildir and inside the window matter; the rest are
    # either gone or older than anything the next fetch looks at.
    recent = sorted(e.name for e in entries if e.name in handed and e.changed_ns >= since)
    return Cursor(changed_ns=newest, recent=tuple(recent))
