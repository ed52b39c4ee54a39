"""The owner's IMAP folder as the inbox (imapclient, which blocks: run it in a thread).

Theory of operation
-------------------

:class:`ImapSource` keeps one connection open between fetches. Each fetch
EXAMINEs the folder (read-only, so the server cannot set ``\\Recent`` or
``\\Seen`` on toma's account), compares its UIDVALIDITY with the cursor's and
fetches ``BODY.PEEK[]`` for the UIDs above the cursor's last one: toma never
marks mail read or changes the mailbox. A new UIDVALIDITY (the folder was
re-created, or the server renumbered it) means the old UIDs mean nothing: the
folder is read again from the start and the batch says ``resynced``; the
caller's dedupe by Message-ID keeps that from logging anything twice.

Failures are sorted where they happen::

    connect, TLS, a dropped connection, a timeout   retried with back-off, a few
                                                    times, then InboxUnavailable
    login refused                                   InboxLoginError at once
    untrusted certificate, no STARTTLS, no folder   InboxError at once

Retrying a refused login would only lock the account; a bad certificate will
not get better in two seconds.

:class:`ImapWatcher` has its own connection in a background thread and calls
``on_new()`` when the server reports new mail (EXISTS or RECENT), using IDLE
where the server offers it — re-issued before the 29 minutes after which
servers may drop an idle client — and NOOP every ``poll_every`` otherwise. It
calls ``on_new()`` after every (re)connection as well, since mail may have
arrived while it was not watching. A dropped connection is re-opened with
bounded exponential back-off, for as long as the watcher runs.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import CapabilityError, IMAPClientError, LoginError

from toma.config import Imap
from toma.errors import TomaError
from toma.hosts import is_loopback
from toma.inbox.base import (
    Batch,
    Cursor,
    Inbound,
    InboxError,
    InboxLoginError,
    InboxUnavailable,
    check_limit,
)
from toma.logs import fields

log = logging.getLogger(__name__)

IDLE_RENEW = 25 * 60.0  # RFC 2177: servers may log out a client idle for 30 minutes
# A server that takes the connection but never greets (one shutting down, say)
# must not hold a reconnection for the whole read timeout.
CONNECT_TIMEOUT = 15.0
# How often a waiting IDLE wakes up by itself. stop() interrupts sooner by shutting
# the socket down; this only bounds the wait should that ever not wake it.
_WAKE = 5.0


class Connector:
    """Opens logged-in connections for one ``[imap]`` section; shared by source and watcher."""

    def __init__(self, config: Imap, ssl_context: ssl.SSLContext | None, timeout: float) -> None:
        if config.security not in ("tls", "starttls", "none"):
            raise InboxError(
                f'security must be "tls", "starttls" or "none", got {config.security!r}',
                key="imap.security",
            )
        if config.security == "none" and not is_loopback(config.host):
            raise InboxError(
                f'security = "none" sends your password and mail in clear text; it is only '
                f"allowed for a server on this machine, not {config.host!r}",
                key="imap.security",
            )
        if not config.username:
            raise InboxError("imap.username is not set", key="imap.username")
        self.config = config
        self.where = f"{config.host}:{config.port}"
        self.timeout = timeout
        self._tls: ssl.SSLContext | None = None
        if config.security != "none":
            self._tls = ssl_context or _default_context(config)

    def open(self) -> tuple[IMAPClient, dict[bytes, Any]]:
        """A connection, logged in, with the folder examined (read-only), and its numbers."""
        config = self.config
        password = config.password.reveal()  # a missing secret is a ConfigError: let it out
        if password is None:
            raise InboxError(
                "no IMAP password: set imap.password_env or imap.password_file",
                key="imap.username",
            )
        with self.step("connect"):
            client = IMAPClient(
                config.host,
                port=config.port,
                ssl=config.security == "tls",
                ssl_context=self._tls,
                timeout=SocketTimeout(
                    connect=min(CONNECT_TIMEOUT, self.timeout), read=self.timeout
                ),
            )
        try:
            # Aware datetimes for INTERNALDATE, instead of naive local time.
            client.normalise_times = False
            if config.security == "starttls":
                with self.step("STARTTLS"):
                    client.starttls(self._tls)
            with self.step("login"):
                client.login(config.username, password)
            info = self.examine(client)
        except BaseException:
            discard(client)
            raise
        return client, info

    def examine(self, client: IMAPClient) -> dict[bytes, Any]:
        with self.step("select"):
            info: dict[bytes, Any] = client.select_folder(self.config.folder, readonly=True)
        return info

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        """Turn the library's errors into ours, saying what failed and what to do."""
        config = self.config
        try:
            yield
        except InboxError:
            raise
        except LoginError as exc:
            raise InboxLoginError(
                f"{self.where} refused the login of {config.username!r} "
                f"({_text(exc)}): check imap.username and the password",
                key="imap.username",
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise InboxError(
                f"the certificate of {self.where} is not trusted ({exc.verify_message}): "
                "set imap.ca_file to the CA that signed it, or fix the server's certificate",
                key="imap.ca_file",
            ) from None
        except CapabilityError:
            raise InboxError(
                f'{self.where} does not offer STARTTLS: use security = "tls" (usually port 993)',
                key="imap.security",
            ) from None
        except IMAPClientError as exc:
            if what == "select" and not isinstance(exc, IMAPClient.AbortError):
                raise InboxError(
                    f"cannot open the folder {config.folder!r} on {self.where} "
                    f"({_text(exc)}): check imap.folder",
                    key="imap.folder",
                ) from None
            raise InboxUnavailable(
                f"{what} failed on {self.where}: {_text(exc)}", key="imap.host"
            ) from None
        except OSError as exc:
            raise InboxUnavailable(
                f"{what} failed on {self.where}: {_text(exc)}", key="imap.host"
            ) from None


def _default_context(config: Imap) -> ssl.SSLContext:
    """Certificate and host name checks on; only ``ca_file`` trusted when given."""
    try:
        return ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise InboxError(
            f"cannot use the CA file {config.ca_file}: {exc}", key="imap.ca_file"
        ) from None


def _text(exc: BaseException) -> str:
    """One line for a log field or a message: ours without the config key, theirs as is."""
    raw = exc.message if isinstance(exc, TomaError) else str(exc)
    text = " ".join(raw.split()) or type(exc).__name__
    return text[:300]


def discard(client: IMAPClient | None) -> None:
    """Close a connection that may already be dead, without waiting on the server."""
    if client is None:
        return
    with contextlib.suppress(Exception):
        client.shutdown()


class ImapSource:
    """Fetch new messages from one IMAP folder, read-only. Blocking: call it in a thread.

    ``attempts`` bounds the tries per ``fetch`` for a failure worth retrying,
    ``first_delay`` the first pause between them (doubled each time).
    """

    def __init__(
        self,
        config: Imap,
        *,
        ssl_context: ssl.SSLContext | None = None,
        attempts: int = 3,
        first_delay: float = 1.0,
        timeout: float = 60.0,
    ) -> None:
        self._connector = Connector(config, ssl_context, timeout)
        self._config = config
        self._attempts = max(1, attempts)
        self._first_delay = first_delay
        self._client: IMAPClient | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def fetch(self, cursor: Cursor | None, *, limit: int = 500) -> Batch:
        check_limit(limit)
        failures = 0
        while True:
            reused = self._client is not None
            try:
                return self._fetch_once(cursor, limit)
            except InboxUnavailable as exc:
                self._drop()
                if reused:
                    # A kept connection the server closed while we were away (an
                    # autologout, a restart) is expected: open a new one at once.
                    log.warning(
                        "imap reopen", extra=fields(server=self._connector.where, error=exc.message)
                    )
                    continue
                failures += 1
                if failures >= self._attempts:
                    raise InboxUnavailable(
                        f"{exc.message} (tried {failures} times); toma will try again later",
                        key="imap.host",
                    ) from None
                delay = self._first_delay * 2 ** (failures - 1)
                log.warning(
                    "imap retry",
                    extra=fields(
                        server=self._connector.where,
                        attempt=failures,
                        delay=delay,
                        error=exc.message,
                    ),
                )
                time.sleep(delay)
            except BaseException:
                self._drop()
                raise

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:  # noqa: BLE001 - closing a connection that may be gone
            discard(client)

    def _drop(self) -> None:
        client, self._client = self._client, None
        discard(client)

    def _fetch_once(self, cursor: Cursor | None, limit: int) -> Batch:
        connector = self._connector
        folder = self._config.folder
        if self._client is None:
            self._client, info = connector.open()
            log.info("imap connected", extra=fields(server=connector.where, folder=folder))
        else:
            # EXAMINE again on every fetch: the server reports a new UIDVALIDITY
            # only in answer to a SELECT or EXAMINE.
            info = connector.examine(self._client)
        client = self._client
        if not isinstance(info.get(b"UIDVALIDITY"), int):
            # Without it a UID cannot be trusted from one session to the next.
            raise InboxError(
                f"{connector.where} gave no UIDVALIDITY for {folder!r}; this server cannot "
                "be read safely over IMAP",
                key="imap.host",
            )
        uidvalidity: int = info[b"UIDVALIDITY"]
        cursor = cursor or Cursor()
        same = cursor.uidvalidity == uidvalidity and cursor.folder in (None, folder)
        resynced = cursor.uidvalidity is not None and not same
        if resynced:
            log.warning(
                "imap resync", extra=fields(folder=folder, old=cursor.uidvalidity, new=uidvalidity)
            )
        last = cursor.last_uid if same else 0
        position = Cursor(folder=folder, uidvalidity=uidvalidity, last_uid=last)
        uidnext = info.get(b"UIDNEXT")
        if isinstance(uidnext, int) and uidnext <= last + 1:
            return Batch(messages=(), cursor=position, resynced=resynced)
        with connector.step("search"):
            found: Sequence[int] = client.search(["UID", f"{last + 1}:*"])
        # "N:*" always matches the highest UID, even below N.
        uids = sorted(uid for uid in found if uid > last)[:limit]
        if not uids:
            return Batch(messages=(), cursor=position, resynced=resynced)
        with connector.step("fetch"):
            items: dict[int, dict[bytes, Any]] = client.fetch(uids, ["BODY.PEEK[]", "INTERNALDATE"])
        messages = []
        positions = []
        for uid in uids:
            item = items.get(uid)
            body = item.get(b"BODY[]") if item else None
            if body is None:
                continue  # expunged between SEARCH and FETCH: nothing left to read
            positions.append(Cursor(folder=folder, uidvalidity=uidvalidity, last_uid=uid))
            messages.append(
                Inbound(
                    key=f"imap:{folder}:{uidvalidity}:{uid}",
                    data=bytes(body),
                    received_at=_aware(item.get(b"INTERNALDATE") if item else None),
                )
            )
        log.info("imap fetch", extra=fields(folder=folder, count=len(messages), last_uid=uids[-1]))
        return Batch(
            messages=tuple(messages),
            cursor=Cursor(folder=folder, uidvalidity=uidvalidity, last_uid=uids[-1]),
            resynced=resynced,
            positions=tuple(positions),
        )


def _aware(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


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
                    extra=fields(server=self._connector.where, folder=self._config.folder),
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
            log.info("imap idle", extra=fields(folder=self._config.folder))
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
        log.info("imap poll", extra=fields(folder=self._config.folder, every=every))
        while not self._stop.wait(every):
            _, responses = client.noop()
            if _has_new(responses):
                self._notify()
