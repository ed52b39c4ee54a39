"""Delivery into a local Maildir: toma without a mail server, and dry runs.

Each message is delivered by the Maildir protocol, as :mod:`mailbox` does it:
write it under ``tmp/`` with a name no other delivery can choose, fsync it, link
it into ``new/`` (rename where the filesystem has no links), remove the ``tmp/``
name. A reader of ``new/`` therefore never sees half a message, and a crash
leaves at worst a stray file in ``tmp/``. The link is the hand-over: the
caller's ``handing``, asked before the write into ``tmp/``, is awaited just
before it (a message only in ``tmp/`` was delivered to nobody). ``new/`` is
fsynced too, so a message reported SENT is still there after a power cut.

Messages are stored with LF line endings, the local convention every Maildir
reader expects; the CRLF of the wire format is restored by whoever sends them
on. The directories are created owner-only (0700), the files 0600: they hold
other people's mail.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Generic, Self, TypeVar

from toma.durable import fsync_dir, write_new
from toma.errors import TransportError
from toma.logs import fields
from toma.transports.base import Envelope, Handing, Outcome, Result, one_line

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

_SUBDIRS = ("tmp", "new", "cur")
# Part of every file name; process-wide because uniqueness must hold across all
# instances writing into the same directory from this process.
_SEQUENCE = itertools.count(1)
_ATTEMPTS = 5
# Filesystems without hard links (some FUSE and network mounts) answer with these.
_NO_LINKS = frozenset({errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EPERM})


def _host() -> str:
    # "/" and ":" have meanings in a Maildir name; escape them as mailbox does.
    return socket.gethostname().replace("/", r"\057").replace(":", r"\072") or "localhost"


def unique_name(host: str) -> str:
    """``seconds.M<µs>P<pid>Q<n>R<random>.host``: unique per host, process and call."""
    now = time.time()
    seconds = int(now)
    micros = int((now - seconds) * 1_000_000)
    return f"{seconds}.M{micros:06d}P{os.getpid()}Q{next(_SEQUENCE)}R{secrets.token_hex(4)}.{host}"


class Grouped(Generic[T, R]):
    """Calls of a blocking function, gathered: what is asked while one call runs in a
    thread is run by the next, as one list.

    A thread's start and its answer each cost a hand-over of the interpreter
    lock; at a thousand messages a second, sent a few at a time, those
    hand-overs cost more CPU than the files themselves.
    """

    def __init__(self, run_all: Callable[[list[T]], list[R]]) -> None:
        self._run_all = run_all
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._running: asyncio.Task[None] | None = None

    async def run(self, item: T) -> R:
        answer: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, answer))
        if self._running is None:
            self._running = asyncio.get_running_loop().create_task(self._drain())
        return await answer

    async def _drain(self) -> None:
        group: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                try:
                    results = await asyncio.to_thread(self._run_all, [item for item, _ in group])
                except Exception as exc:  # noqa: BLE001 - handed to every caller of the group
                    for _, answer in group:
                        if not answer.done():
                            answer.set_exception(exc)
                    continue
                for (_, answer), result in zip(group, results, strict=True):
                    if not answer.done():
                        answer.set_result(result)
                group = []
        finally:
            self._running = None
            # Ended otherwise (the loop cancelled it): nobody will run what waits.
            for _, answer in group + self._waiting:
                answer.cancel()
            self._waiting = []


# Messages delivered at once. Each hand-over waits for the journal's next write, which
# takes every hand-over queued by then: the more deliveries under way, the fewer
# writes. On PostgreSQL at 1M contacts, two ticks of 10,000 messages with building
# left out, so that the journal sets the pace (the daemon of ``bench/postgres.py
# --copy-built``, Maildir on tmpfs, runs alternated), made 1,424 writes at 16 and 760
# at 64; the ticks took 12.3-15.5 s and 9.6-12.0 s (four each). With building, on
# disk, where this machine's CPU was the limit: 15.2-21.1 s and 15.6-17.3 s.
CONCURRENCY = 64


class MaildirTransport:
    """Write each envelope's message into the Maildir at ``path`` (created if missing)."""

    def __init__(self, path: Path, *, concurrency: int = CONCURRENCY) -> None:
        self._path = Path(path)
        self._concurrency = max(1, concurrency)
        self._host = _host()
        self._open = False
        self._staging = Grouped(self._stage_all)
        self._publishing = Grouped(self._publish_all)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def concurrency(self) -> int:
        return self._concurrency

    async def __aenter__(self) -> Self:
        try:
            await asyncio.to_thread(self._create)
        except OSError as exc:
            raise TransportError(
                f"cannot use the Maildir {self._path}: {exc.strerror or exc}", key="transport.path"
            ) from None
        # The sends under way share each trip to a thread: one for the files written
        # into tmp/ meanwhile, one for those moved into new/ (and one fsync of new/).
        # Made afresh at each opening: a group belongs to the event loop it ran in.
        self._staging = Grouped(self._stage_all)
        self._publishing = Grouped(self._publish_all)
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._open = False

    def _create(self) -> None:
        self._path.mkdir(mode=0o700, parents=True, exist_ok=True)
        for sub in _SUBDIRS:
            (self._path / sub).mkdir(mode=0o700, exist_ok=True)

    async def send(self, envelope: Envelope, handing: Handing | None = None) -> Result:
        if not self._open:
            raise TransportError("the Maildir transport is not open (use `async with`)")
        if handing is None:
            return await asyncio.to_thread(self.deliver, envelope)
        handed = handing(envelope.key)  # noted by the caller while the message is written
        written = await self._staging.run(envelope)
        if isinstance(written, Result):
            return written
        try:
            go_on = await handed
        except BaseException:
            await asyncio.to_thread(self._discard, self._path / "tmp" / written)
            raise
        if not go_on:
            await asyncio.to_thread(self._discard, self._path / "tmp" / written)
            return Result(envelope.key, Outcome.WITHDRAWN, None, "withdrawn before the hand-over")
        return await self._publishing.run((envelope, written))

    def deliver(self, envelope: Envelope) -> Result:
        """Deliver one message, blocking (``send`` runs this in a thread)."""
        written = self._stage(envelope)
        if isinstance(written, Result):
            return written
        return self._publish_all([(envelope, written)])[0]

    def _stage_all(self, envelopes: list[Envelope]) -> list[str | Result]:
        return [self._stage(envelope) for envelope in envelopes]

    def _stage(self, envelope: Envelope) -> str | Result:
        """The message written under ``tmp/``: its name, or a TEMPORARY result."""
        data = envelope.data.replace(b"\r\n", b"\n")
        try:
            return self._write_tmp(data)
        except OSError as exc:
            # Nothing reached new/: safe to try again (disk full, permissions).
            return Result(
                envelope.key,
                Outcome.TEMPORARY,
                None,
                one_line(f"cannot write into {self._path / 'tmp'}: {exc}"),
            )

    def _publish_all(self, staged: list[tuple[Envelope, str]]) -> list[Result]:
        """Move messages written under ``tmp/`` into ``new/``: delivered, once ``new/`` is
        fsynced (once for them all)."""
        results: list[Result] = []
        for envelope, name in staged:
            try:
                self._move_to_new(name)
            except OSError as exc:
                self._discard(self._path / "tmp" / name)
                results.append(
                    Result(
                        envelope.key,
                        Outcome.TEMPORARY,
                        None,
                        one_line(f"cannot deliver into {self._path / 'new'}: {exc}"),
                    )
                )
            else:
                results.append(Result(envelope.key, Outcome.SENT, None, f"new/{name}"))
        try:
            fsync_dir(self._path / "new")
        except OSError as exc:
            # The messages are in new/ for every reader; only their durability is in doubt.
            log.warning(
                "maildir fsync failed", extra=fields(path=str(self._path / "new"), error=str(exc))
            )
        return results

    def _write_tmp(self, data: bytes) -> str:
        for attempt in range(_ATTEMPTS):
            name = unique_name(self._host)
            target = self._path / "tmp" / name
            try:
                write_new(target, data)
            except FileExistsError:
                if attempt == _ATTEMPTS - 1:
                    raise
                continue
            except BaseException:
                if target.exists():  # created, then the write failed
                    self._discard(target)
                raise
            return name
        raise FileExistsError(f"no unique name in {self._path / 'tmp'}")  # pragma: no cover

    def _move_to_new(self, name: str) -> None:
        source = self._path / "tmp" / name
        target = self._path / "new" / name
        try:
            # A link fails if the name is taken, where a rename would replace a message.
            os.link(source, target)
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            log.debug(
                "maildir link unavailable, renaming",
                extra=fields(path=str(self._path), error=str(exc)),
            )
            source.rename(target)
            return
        self._discard(source)

    @staticmethod
    def _discard(path: Path) -> None:
        try:
            path.unlink()
        except OSError as exc:
            log.warning("maildir cleanup failed", extra=fields(path=str(path), error=str(exc)))
