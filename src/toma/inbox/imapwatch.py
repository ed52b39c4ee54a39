"""Waking the daemon when mail arrives in the IMAP inbox.

:class:`ImapWatcher` has its own connection in a background thread and calls
``on_new()`` when the server reports new mail (EXISTS or RECENT), using IDLE
where the server offers it — re-issued before the 29 minutes after which
servers may drop an idle client — and NOOP every ``poll_every`` otherwise. It
calls ``on_new()`` after every (re)connection as well, since mail may have
arrived while it was not watching. A dropped connection is re-opened with
bounded exponential back-off, for as long as the watcher runs.

It watches the first inbox folder (``[imap] folders``, or ``folder``): IDLE
follows one folder per connection. The other folders, and the Sent folder,
are read at every tick.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from imapclient import IMAPClient

from toma.config import Imap
from toma.errors import TomaError
from toma.inbox.base import InboxUnavailable
from toma.inbox.imap import Connector, _text, discard
from toma.logs import fields

log = logging.getLogger(__name__)

IDLE_RENEW = 25 * 60.0  # RFC 2177: servers may log out a client idle for 30 minutes
# How often a waiting IDLE wakes up by itself. stop() interrupts sooner by shutting
# the socket down; this only bounds the wait should that ever not wake it.
_WAKE = 5.0


def _has_new(responses: Sequence[Any]) -> bool:
    return any(
        isinstance(r, tuple) and len(r) >= 2 and r[1] in (b"EXISTS", b"RECENT") for r in responses
    )


def _says_bye(responses: Sequence[Any]) -> bool:
    return any(isinstance(r, tuple) and r and r[0] == b"BYE" for r in responses)


class _Dropped(Exception):
    """The server ended the session (BYE, end of stream)."""


class ImapWatcher:
    """Call ``on_new()`` from a background thread whenever new mail may be in the folder.

    ``on_new`` must be quick and thread-safe (set an event, wake the daemon).
    ``idle_renew`` is how long one IDLE lasts before it is re-issued;
    ``first_delay`` and ``max_delay`` bound the pauses between reconnection attempts.
    """

    def __init__(
        self,
        config: Imap,
        on_new: Callable[[], None],
        *,
        ssl_context: ssl.SSLContext | None = None,
        idle_renew: float = IDLE_RENEW,
        first_delay: float = 1.0,
        max_delay: float = 60.0,
        timeout: float = 60.0,
    ) -> None:
        self._connector = Connector(config, ssl_context, timeout)
        self._config = config
        self._on_new = on_new
        self._idle_renew = idle_renew
        self._first_delay = first_delay
        self._max_delay = max(max_delay, first_delay)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._client: IMAPClient | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"imap-watch {self._connector.where}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching; returns within about ``timeout`` seconds even if the server hangs."""
        self._stop.set()
        with self._lock:
            client = self._client
        if client is not None:
            # Wakes the thread out of a blocking IDLE read at once: the read sees
            # the end of the stream. The plain socket's shutdown, not TLS's, which
            # would need the other thread's cooperation.
            with contextlib.suppress(Exception):
                socket.socket.shutdown(client.socket(), socket.SHUT_RDWR)
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("imap watcher slow to stop", extra=fields(server=self._connector.where))

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                client, _info = self._connector.open()
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any failure
                failures += 1
                self._pause(failures, exc)
                continue
            with self._lock:
                self._client = client
            try:
                if self._stop.is_set():
                    return
                log.info(
                    "imap watching",
                    extra=fields(
                        server=self._connector.where, folder=self._config.inbox_folders[0]
                    ),
                )
                failures = 0
                self._notify()  # mail may have come while nobody was watching
                if self._config.idle and client.has_capability("IDLE"):
                    self._idle(client)
                else:
                    self._poll(client)
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect
                if not self._stop.is_set():
                    log.warning(
                        "imap dropped", extra=fields(server=self._connector.where, error=_text(exc))
                    )
                    failures = 1
                    self._pause(failures, exc, logged=True)
            finally:
                with self._lock:
                    self._client = None
                discard(client)

    def _pause(self, attempt: int, exc: BaseException, *, logged: bool = False) -> None:
        """Wait before the next connection attempt: doubling, bounded, a little jitter."""
        if isinstance(exc, TomaError) and not isinstance(exc, InboxUnavailable):
            # A refused login or a missing folder needs a person, not a fast retry.
            delay = self._max_delay
        else:
            delay = min(self._max_delay, self._first_delay * 2 ** (attempt - 1))
        delay *= random.uniform(0.8, 1.0)
        log.warning(
            "imap reconnect",
            extra=fields(
                server=self._connector.where,
                attempt=attempt,
                delay=round(delay, 2),
                error=None if logged else _text(exc),  # a drop was logged just before
            ),
        )
        self._stop.wait(delay)

    def _notify(self) -> None:
        try:
            self._on_new()
        except Exception:
            log.exception("imap on_new failed")

    def _idle(self, client: IMAPClient) -> None:
        while not self._stop.is_set():
            # Mail that came between two IDLEs is reported by this NOOP, not left to
            # an answer the IDLE command might keep in its read buffer.
            _, responses = client.noop()
            if _has_new(responses):
                self._notify()
            client.idle()
            log.info("imap idle", extra=fields(folder=self._config.inbox_folders[0]))
            renew_at = time.monotonic() + self._idle_renew
            while not self._stop.is_set():
                left = renew_at - time.monotonic()
                if left <= 0:
                    break
                wait = min(left, _WAKE)
                started = time.monotonic()
                responses = client.idle_check(timeout=wait)
                if self._stop.is_set():
                    return
                if _says_bye(responses):
                    raise _Dropped("the server ended the session (BYE)")
                if _has_new(responses):
                    self._notify()
                elif not responses and time.monotonic() - started < wait / 2:
                    # Readable, yet no line: the end of the stream, or TLS housekeeping.
                    # DONE tells them apart: it fails on a dead connection.
                    break
            _, responses = client.idle_done()
            if _has_new(responses):
                self._notify()

    def _poll(self, client: IMAPClient) -> None:
        every = max(1.0, float(self._config.poll_every.approx().total_seconds()))
        log.info("imap poll", extra=fields(folder=self._config.inbox_folders[0], every=every))
        while not self._stop.wait(every):
            _, responses = client.noop()
            if _has_new(responses):
                self._notify()
