"""One pass over the mailbox: fetch, read, and hand each batch to be recorded.

Theory of operation
-------------------

What was read is recorded (:mod:`toma.inbox.record`) in a store transaction
together with the source's new position (its cursor), so a crash either
records those messages and moves past them, or does neither; and every inbound
message is keyed by its Message-ID, so a resync (a UIDVALIDITY change, a
Maildir read again) logs nothing twice. Normally that is one transaction per
fetched batch.

An IMAP mailbox is read folder by folder: each of ``[imap] folders`` (or
``folder``), then the Sent folder (``[imap] read_sent``), each with its own
cursor (its UIDVALIDITY and last UID) under its own key in the ``sync`` table,
and its own first-sync moment (what was in it before is history). All go over
one connection. What the Sent folder holds is read as the owner's own mail
(:mod:`toma.inbox.handwritten`).

Reading yields to the rest of the daemon. Between two messages :func:`sync`
asks ``should_stop`` (the daemon's SIGTERM flag) and looks at its time
``budget``; when either says so it records what it has read, with the cursor
right after the last message recorded (:meth:`Batch.cursor_after`), and
returns with ``more`` set: the next sync resumes exactly there. At least one
message is read per sync, so a small budget still makes progress.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from toma.config import Config
from toma.core.reading.classify import READ_BUDGET, Reading, read_message, unknown
from toma.inbox.base import Cursor, InboxError, InboxUnavailable, Source
from toma.inbox.record import (
    ASIDE_PREFIX,
    FIELD_CAP,
    LIST_CAP,
    RISKY_BYTES,
    SUBJECT_CAP,
    TEXT_CAP,
    SyncReport,
    _Read,
    _record,
    _Window,
    arrived,
    aside_key,
    conversation_key,
    location,
)
from toma.logs import fields
from toma.store import SYNC, Store
from toma.store.records import conversations

__all__ = [
    "ASIDE_PREFIX",
    "BATCH",
    "FIELD_CAP",
    "LIST_CAP",
    "MAX_BUDGET",
    "RISKY_BYTES",
    "SUBJECT_CAP",
    "TEXT_CAP",
    "SyncReport",
    "arrived",
    "aside_key",
    "budget_for",
    "conversation_key",
    "cursor_key",
    "first_read",
    "folder_key",
    "location",
    "safe_read",
    "source_for",
    "sync",
    "unsubscribe_addresses",
]

log = logging.getLogger(__name__)

BATCH = 200
MAX_BUDGET = 60.0  # seconds of inbox reading per tick, at most


def source_for(config: Config) -> Source:
    if config.inbox.kind == "imap":
        from toma.inbox.imap import ImapSource

        return ImapSource(config.imap)
    from toma.inbox.maildir import MaildirSource

    assert config.inbox.path is not None  # noqa: S101 - the config always gives one
    return MaildirSource(config.inbox.path)


def cursor_key(config: Config) -> str:
    """Where the position in the (first) inbox folder is kept, in the ``sync`` table."""
    if config.inbox.kind == "imap":
        return folder_key(config, config.imap.inbox_folders[0])
    return f"inbox:maildir:{config.inbox.path}"


def folder_key(config: Config, folder: str) -> str:
    """Where the position in one IMAP folder is kept: each folder has its own."""
    return f"inbox:imap:{config.imap.host}:{config.imap.username}:{folder}"


def readings(config: Config, source: Source) -> list[tuple[str, Source, bool]]:
    """(cursor key, source, is the Sent folder) for each folder a sync reads, in order."""
    if config.inbox.kind != "imap":
        return [(cursor_key(config), source, False)]
    from toma.inbox.imap import ImapSource

    if not isinstance(source, ImapSource):
        return [(cursor_key(config), source, False)]
    folders = config.imap.inbox_folders
    found: list[tuple[str, Source, bool]] = [
        (folder_key(config, name), source if name == source.folder else source.reading(name), False)
        for name in folders
    ]
    if config.imap.read_sent:
        try:
            sent = source.sent_folder()
        except InboxUnavailable:
            raise
        except InboxError as exc:
            # The inbox is read all the same; the Sent folder waits until it can be found.
            log.warning("sent folder not found", extra=fields(error=exc.message))
            sent = None
        if sent is not None and sent not in folders:
            found.append((folder_key(config, sent), source.reading(sent), True))
    return found


def budget_for(config: Config) -> float:
    """Seconds a tick may spend reading the inbox: half a tick, at most a minute."""
    try:
        every = config.daemon.tick_every.approx().total_seconds()
    except (OverflowError, ValueError):
        return MAX_BUDGET
    return max(1.0, min(MAX_BUDGET, every / 2))


def safe_read(data: bytes, config: Config, now: datetime) -> Reading:
    """``read_message`` within :data:`toma.core.reading.classify.READ_BUDGET`; it must never raise,
    and if it does the message is "unknown" with ``unread`` saying why."""
    try:
        return read_message(
            data,
            unsubscribe_addresses=unsubscribe_addresses(config),
            now=now,
            deadline=time.monotonic() + READ_BUDGET,
            clock=time.monotonic,
        )
    except Exception as exc:  # noqa: BLE001 - one bad message must not stop the inbox
        return unknown(
            "unreadable",
            (f"{type(exc).__name__}: {exc}",),
            unread=f"unreadable: {type(exc).__name__}",
        )


def unsubscribe_addresses(config: Config) -> tuple[str, ...]:
    address = config.inbox.unsubscribe_address
    return (address,) if address else ()


def sync(
    store: Store,
    config: Config,
    source: Source,
    *,
    now: datetime,
    should_stop: Callable[[], bool] | None = None,
    budget: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SyncReport:
    """Fetch and record what is new in ``source``, within ``budget`` seconds; say what was done.

    An IMAP source is read in every configured folder, then in the Sent folder
    (see the module docstring). Stops between two messages when
    ``should_stop()`` is true or ``budget`` (measured with ``clock``) is spent,
    having read at least one message; ``SyncReport.more`` then says that more
    is left for the next sync.
    """
    report = SyncReport()
    started = clock()
    handled = [0]

    def stop_now() -> bool:
        if should_stop is not None and should_stop():
            return True
        return budget is not None and handled[0] > 0 and clock() - started >= budget

    store.refresh()
    seen, aside = conversations.read_sources(store)
    for key, folder, sent in readings(config, source):
        doc = store.get(SYNC, key)
        cursor = Cursor.from_doc(doc["cursor"]) if doc else None
        first = first_read(doc, now)
        window = _Window(since=config.inbox.since or first, first=first, sent=sent)
        reader = _FolderReader(store, config, key, now, report, window, seen, aside)
        if not reader.read(folder, cursor, stop_now, handled):
            report.more = True
            return report
    return report


class _FolderReader:
    """Reads one folder from its cursor to its end, or until asked to stop."""

    def __init__(
        self,
        store: Store,
        config: Config,
        key: str,
        now: datetime,
        report: SyncReport,
        window: _Window,
        seen: set[str],
        aside: set[str],
    ) -> None:
        self.store, self.config, self.key, self.now = store, config, key, now
        self.report, self.window, self.seen, self.aside = report, window, seen, aside

    def record(self, items: list[_Read], cursor: Cursor, marker: _Read | None = None) -> None:
        _record(
            self.store,
            self.config,
            items,
            cursor,
            self.key,
            self.now,
            self.report,
            self.window,
            marker=marker,
        )

    def read(
        self,
        source: Source,
        cursor: Cursor | None,
        stop_now: Callable[[], bool],
        handled: list[int],
    ) -> bool:
        """True once the folder is read to its end; False when stopped early."""
        report, seen, aside = self.report, self.seen, self.aside
        while True:
            if stop_now():
                return False
            batch = source.fetch(cursor, limit=BATCH)
            report.fetched += len(batch.messages)
            pending: list[_Read] = []
            for index, inbound in enumerate(batch.messages):
                resume = batch.cursor_after(index)
                if resume is not None and stop_now():
                    self.record(pending, resume)
                    return False
                handled[0] += 1
                if inbound.key in seen:
                    continue
                digest = hashlib.sha256(inbound.data).hexdigest()
                if digest in aside:
                    report.duplicates += 1  # the same unreadable message under another key
                    continue
                past = batch.cursor_after(index + 1)
                if len(inbound.data) >= RISKY_BYTES and past is not None:
                    self.record(pending, past, marker=_Read(inbound, _UNREAD_MARK, digest))
                    pending = []
                    log.info(
                        "inbound reading", extra=fields(source=inbound.key, size=len(inbound.data))
                    )
                reading = safe_read(inbound.data, self.config, self.now)
                pending.append(_Read(inbound, reading, digest))
                seen.add(inbound.key)
                if reading.unread is not None:
                    aside.add(digest)
            self.record(pending, batch.cursor)
            cursor = batch.cursor
            if len(batch.messages) < BATCH:
                return True


_BEING_READ = "reading it did not finish: toma stopped or crashed while reading it"
_UNREAD_MARK = unknown("being read", unread=_BEING_READ)


def first_read(doc: Mapping[str, Any] | None, now: datetime) -> datetime:
    """When toma first read this mailbox, from its sync state; ``now`` if it never did.

    A mailbox read before this was kept counts from its last sync: what arrived
    since then is new to toma.
    """
    for name in ("since", "synced_at"):
        value = doc.get(name) if doc else None
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                continue
    return now
