"""A copy of every message toma sends, in the owner's Sent folder (IMAP APPEND).

Theory of operation
-------------------

The owner's mail program must show what "they" said, so every message toma
sends over SMTP is appended to their Sent folder, flagged ``\\Seen``, dated
when it went. Copying is a step of its own, after the send, never a part of
it: a copy that fails never blocks, delays or repeats a send.

**Keeping the bytes.** A message is rebuilt byte for byte from nothing stored
(its template may have changed since), so the sender keeps the very bytes it
handed over: once the server has taken a message (SMTP 250), :class:`Spool`
writes them to ``<data>/sent-copies/<digest>.eml`` under the message's outbox
key, before the outcome is recorded. A written spool file therefore exists for
every record that becomes ``sent``. (The file is renamed into place but not
fsynced: a power cut in the second after a send may lose its copy, never the
send.)

**Copying.** :func:`copy_sent` runs after each send and at every tick, so a
crash between the send and the copy is finished at the next run. It reads
the outbox record of each spooled message and decides (:func:`fate`):

    sent                              copy it, then remove the spool file
    unknown, sending                  wait: the owner's verdict (or the crash
                                      recovery) says whether it went
    planned, failed, skipped, gone    it did not go: remove the file
    sent longer ago than GIVE_UP      give up (the Sent folder is missing, the
                                      server refuses): remove, with a warning

**Never two copies.** Before appending, the Message-IDs already in the Sent
folder since the oldest message to copy are read (one SEARCH, one FETCH of the
Message-ID headers); a message found there is not appended again, only its
spool file is removed. A crash after the APPEND and before the removal is
therefore made good at the next run without a second copy, and so is a
provider that filed the message itself.

**When there is no copy.** ``[imap] sent_copy``: ``"never"``; ``"auto"`` (the
default) skips a server that files submitted mail in Sent by itself (Gmail,
known by its ``X-GM-EXT-1`` capability); ``"always"`` copies anyway. No copy
is kept for the Maildir default (``[transport] kind = "maildir"`` or
``[inbox] kind = "maildir"``): there is no Sent folder to put it in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from toma.config import Config
from toma.config.senders import spool_name
from toma.inbox.base import InboxError, InboxUnavailable
from toma.logs import fields
from toma.store import MESSAGES, Store
from toma.timeutil import stored_moment

if TYPE_CHECKING:
    from imapclient import IMAPClient

    from toma.inbox.imap import ImapSource

log = logging.getLogger(__name__)

SPOOL = "sent-copies"
GIVE_UP = timedelta(days=7)  # a copy not made in a week is not worth making
_SUFFIX = ".eml"
# A server that files what its SMTP server takes in Sent by itself (Gmail).
_FILES_ITS_OWN = ("X-GM-EXT-1",)

Fate = Literal["copy", "wait", "drop", "give up"]


def copies_enabled(config: Config) -> bool:
    """Whether a copy of what is sent is kept at all (see the module docstring)."""
    return (
        config.transport.kind == "smtp"
        and config.inbox.kind == "imap"
        and config.imap.sent_copy != "never"
        # The provider presets know who files what its SMTP takes in Sent (Gmail).
        and not (config.imap.sent_copy == "auto" and config.imap.files_sent_itself)
    )


def fate(record: Mapping[str, Any] | None, now: datetime) -> Fate:
    """What becomes of a spooled message whose outbox record is ``record`` (a document)."""
    if record is None:
        return "drop"  # forgotten: nothing about them is kept
    state = record.get("state")
    if state in ("unknown", "sending"):
        return "wait"
    if state != "sent":
        return "drop"
    sent_at = stored_moment(record.get("sent_at")) or stored_moment(record.get("updated_at"))
    if sent_at is not None and now - sent_at > GIVE_UP:
        return "give up"
    return "copy"


class Spool:
    """The bytes of each message sent, kept until its copy is made (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._made = False

    @classmethod
    def of(cls, config: Config) -> Spool:
        # Each sender's copies wait apart: each goes to that sender's own Sent folder.
        return cls(config.paths.data / spool_name(config, SPOOL))

    def path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
        return self.folder / f"{digest}{_SUFFIX}"

    def keep(self, key: str, data: bytes) -> None:
        """Keep ``data`` for the message ``key``; a failure is logged, never raised."""
        path = self.path(key)
        temp = path.with_suffix(".tmp")
        try:
            if not self._made:
                self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._made = True
            with open(temp, "wb") as handle:  # noqa: PTH123 - one write, no fsync (see above)
                handle.write(json.dumps({"key": key}).encode("utf-8") + b"\n")
                handle.write(data)
            temp.replace(path)
        except OSError as exc:
            log.warning("sent copy not kept", extra=fields(key=key, error=exc.strerror))

    def pending(self) -> list[tuple[str, Path]]:
        """(outbox key, file) of every message kept, oldest file first."""
        try:
            entries = [p for p in self.folder.iterdir() if p.suffix == _SUFFIX]
        except FileNotFoundError:
            return []
        found = []
        for path in sorted(entries, key=_mtime):
            try:
                with open(path, "rb") as handle:  # noqa: PTH123
                    head = json.loads(handle.readline())
            except (OSError, ValueError):
                continue
            if isinstance(head, dict) and isinstance(head.get("key"), str):
                found.append((head["key"], path))
        return found

    @staticmethod
    def data(path: Path) -> bytes:
        raw = path.read_bytes()
        return raw.partition(b"\n")[2]

    @staticmethod
    def done(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def sent_spool(config: Config) -> Spool | None:
    """The spool the sender keeps what it sent in, or None when no copy is made."""
    return Spool.of(config) if copies_enabled(config) else None


@dataclass
class CopyReport:
    copied: int = 0
    present: int = 0  # already in the Sent folder: not appended again
    dropped: int = 0  # did not go (or gave up): no copy
    waiting: int = 0  # in doubt: waits for the owner's verdict
    failed: int = 0  # the APPEND was refused: tried again at the next run
    skipped: str = ""  # why nothing was copied (the server files its own, no Sent folder)
    more: bool = False  # stopped early (out of time, asked to): the rest at the next run


def copy_sent(
    store: Store,
    config: Config,
    now: datetime,
    *,
    timeout: float = 30.0,
    budget: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> CopyReport:
    """Copy what was sent and is not yet in the Sent folder (blocking: run it in a thread).

    Stops between two APPENDs once ``budget`` seconds are spent or
    ``should_stop()`` says so (``CopyReport.more``); the rest is copied at the
    next run. An APPEND costs a round trip and the server's write: 500 copies
    took 7 s against the test Dovecot on a busy two-core machine.
    Raises :class:`toma.inbox.base.InboxError` when the server cannot be reached
    or logged in to; what is spooled stays for the next run.
    """
    started = clock()

    def stop_now() -> bool:
        if should_stop is not None and should_stop():
            return True
        return budget is not None and clock() - started >= budget

    report = CopyReport()
    if not copies_enabled(config):
        return report
    spool = Spool.of(config)
    pending = spool.pending()
    if not pending:
        return report  # no connection for nothing to do
    store.refresh()
    to_copy: list[tuple[str, Path, Mapping[str, Any]]] = []
    for key, path in pending:
        record = store.get(MESSAGES, key)
        what = fate(record, now)
        if what == "copy" and record is not None:
            to_copy.append((key, path, record))
        elif what == "wait":
            report.waiting += 1
        else:
            if what == "give up":
                log.warning("sent copy given up", extra=fields(key=key, after=str(GIVE_UP)))
            spool.done(path)
            report.dropped += 1
    if to_copy:
        _append_all(config, spool, to_copy, report, timeout, stop_now)
    return report


def _append_all(
    config: Config,
    spool: Spool,
    items: list[tuple[str, Path, Mapping[str, Any]]],
    report: CopyReport,
    timeout: float,
    stop_now: Callable[[], bool],
) -> None:
    from imapclient import IMAPClient

    from toma.inbox.imap import ImapSource

    with ImapSource(config.imap, timeout=timeout, attempts=1) as source:
        client = source.connection()
        if config.imap.sent_copy == "auto" and any(
            client.has_capability(name) for name in _FILES_ITS_OWN
        ):
            report.skipped = "the server files what is sent in Sent by itself"
            for _key, path, _record in items:
                spool.done(path)
            return
        folder = source.sent_folder()
        if folder is None:
            report.skipped = "no Sent folder: set [imap] sent_folder"
            report.failed += len(items)
            log.warning("sent copy: no sent folder", extra=fields(waiting=len(items)))
            return
        try:
            present = _present(source, client, folder, (record for _k, _p, record in items))
        except InboxUnavailable:
            raise
        except InboxError as exc:
            # The folder cannot be opened (it does not exist): nothing is appended to it.
            report.failed += len(items)
            log.warning("sent copy: folder", extra=fields(folder=folder, error=exc.message))
            return
        for index, (key, path, record) in enumerate(items):
            if index and stop_now():  # at least one each run: a small budget still progresses
                report.more = True
                break
            message_id = _bare(record.get("message_id"))
            if message_id and message_id in present:
                spool.done(path)
                report.present += 1
                continue
            sent_at = stored_moment(record.get("sent_at"))
            try:
                client.append(folder, spool.data(path), flags=(rb"\Seen",), msg_time=sent_at)
            except (OSError, IMAPClient.AbortError) as exc:
                raise InboxUnavailable(
                    f"append failed on {source.where}: {exc}", key="imap.host"
                ) from None
            except IMAPClient.Error as exc:
                # Refused (no such folder, over quota): tried again at the next run.
                report.failed += 1
                log.warning("sent copy refused", extra=fields(key=key, error=str(exc)[:300]))
                continue
            spool.done(path)
            if message_id:
                present.add(message_id)
            report.copied += 1
    log.info(
        "sent copies",
        extra=fields(
            folder=folder, copied=report.copied, present=report.present, failed=report.failed
        ),
    )


def _present(
    source: ImapSource, client: IMAPClient, folder: str, records: Iterable[Mapping[str, Any]]
) -> set[str]:
    """The Message-IDs in ``folder`` that arrived since the oldest of ``records`` went."""
    moments = [
        moment for record in records if (moment := stored_moment(record.get("sent_at"))) is not None
    ]
    with source.step("select", folder=folder):
        client.select_folder(folder, readonly=True)
    criteria: list[Any] = ["ALL"]
    if moments:
        # A day early: SINCE compares dates in the server's zone.
        criteria = ["SINCE", (min(moments) - timedelta(days=1)).date()]
    with source.step("search", folder=folder):
        uids = client.search(criteria)
    found: set[str] = set()
    if not uids:
        return found
    with source.step("fetch", folder=folder):
        items = client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
    for item in items.values():
        raw = next((v for k, v in item.items() if k.startswith(b"BODY[HEADER")), b"")
        text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else ""
        _name, _, value = text.partition(":")
        bare = _bare(" ".join(value.split()))
        if bare:
            found.add(bare)
    return found


def _bare(message_id: object) -> str:
    if not isinstance(message_id, str):
        return ""
    return message_id.strip().strip("<>").strip()
