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

The watcher that wakes the daemon when mail arrives is :mod:`toma.inbox.imapwatch`.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import CapabilityError, IMAPClientError, LoginError
from imapclient.imapclient import SENT

from toma.auth import TokenSource, TokenUnavailable
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

# A server that takes the connection but never greets (one shutting down, say)
# must not hold a reconnection for the whole read timeout.
CONNECT_TIMEOUT = 15.0


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
        self._tokens = (
            TokenSource(config.oauth2)
            if config.oauth2 is not None and config.auth != "password"
            else None
        )
        self._tls: ssl.SSLContext | None = None
        if config.security != "none":
            self._tls = ssl_context or _default_context(config)

    def open(self, folder: str | None = None) -> tuple[IMAPClient, dict[bytes, Any]]:
        """A connection, logged in, with ``folder`` (default: the first inbox folder)
        examined (read-only), and its numbers."""
        config = self.config
        password = None
        if self._tokens is None:
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
            self.login(client, password)
            info = self.examine(client, folder)
        except BaseException:
            discard(client)
            raise
        return client, info

    def login(self, client: IMAPClient, password: str | None) -> None:
        """LOGIN with the password, or the OAuth2 token (refreshed once if refused)."""
        user = self.config.username or ""
        if self._tokens is None:
            with self.step("login"):
                client.login(user, password or "")
            return
        sign_in = client.oauth2_login if self.config.auth == "xoauth2" else client.oauthbearer_login
        try:
            token = self._tokens.token()  # SignInNeeded says what to do: let it out
        except TokenUnavailable as exc:
            # The token endpoint being out of reach is the server being out of reach.
            raise InboxUnavailable(exc.message, key="oauth2") from None
        with self.step("login"):
            try:
                sign_in(user, token)
            except LoginError:
                pass  # perhaps revoked before its time: one fresh token, one more try
            else:
                return
        try:
            token = self._tokens.refused(token)
        except TokenUnavailable as exc:
            raise InboxUnavailable(exc.message, key="oauth2") from None
        with self.step("login"):
            sign_in(user, token)

    def examine(self, client: IMAPClient, folder: str | None = None) -> dict[bytes, Any]:
        name = folder if folder is not None else self.config.inbox_folders[0]
        with self.step("select", folder=name):
            info: dict[bytes, Any] = client.select_folder(name, readonly=True)
        return info

    @contextlib.contextmanager
    def step(self, what: str, *, folder: str | None = None) -> Iterator[None]:
        """Turn the library's errors into ours, saying what failed and what to do."""
        config = self.config
        try:
            yield
        except InboxError:
            raise
        except LoginError as exc:
            raise InboxLoginError(
                f"{self.where} refused the login of {config.username!r} "
                f"({_text(exc)}): check imap.username and "
                + ("the OAuth2 app's scopes" if self._tokens else "the password"),
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
                key = "imap.folders" if config.folders else "imap.folder"
                raise InboxError(
                    f"cannot open the folder {folder or config.folder!r} on {self.where} "
                    f"({_text(exc)}): check {key}",
                    key=key,
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


class _Link:
    """The one connection shared by the sources of one mailbox (see :meth:`ImapSource.reading`)."""

    def __init__(self) -> None:
        self.client: IMAPClient | None = None


class ImapSource:
    """Fetch new messages from one IMAP folder, read-only. Blocking: call it in a thread.

    ``folder`` defaults to the first of ``[imap] folders`` (or ``folder``).
    ``attempts`` bounds the tries per ``fetch`` for a failure worth retrying,
    ``first_delay`` the first pause between them (doubled each time).
    """

    def __init__(
        self,
        config: Imap,
        *,
        folder: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        attempts: int = 3,
        first_delay: float = 1.0,
        timeout: float = 60.0,
    ) -> None:
        self._connector = Connector(config, ssl_context, timeout)
        self._config = config
        self.folder = folder if folder is not None else config.inbox_folders[0]
        self._attempts = max(1, attempts)
        self._first_delay = first_delay
        self._link = _Link()

    def reading(self, folder: str) -> ImapSource:
        """A source for ``folder`` over this one's connection: one connection for
        every folder, since providers bound how many a user may open at once."""
        other = ImapSource.__new__(ImapSource)
        other._connector, other._config = self._connector, self._config
        other._attempts, other._first_delay = self._attempts, self._first_delay
        other.folder, other._link = folder, self._link
        return other

    @property
    def where(self) -> str:
        return self._connector.where

    def connection(self) -> IMAPClient:
        """The logged-in connection, opened if need be (for the Sent copy's APPEND)."""
        if self._link.client is None:
            self._link.client, _info = self._connector.open(self.folder)
        return self._link.client

    def step(
        self, what: str, *, folder: str | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """The connector's mapping of the library's errors to ours."""
        return self._connector.step(what, folder=folder)

    def sent_folder(self) -> str | None:
        """The owner's Sent folder: ``[imap] sent_folder``, else the folder the server
        marks ``\\Sent`` (SPECIAL-USE, RFC 6154), else one with a usual name
        ("Sent", "Sent Items", …); None when there is none."""
        if self._config.sent_folder:
            return self._config.sent_folder
        client = self.connection()
        with self.step("list"):
            found, _how = find_sent_folder(client, self._config.provider_sent_folder)
        return found

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
            reused = self._link.client is not None
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
        client, self._link.client = self._link.client, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:  # noqa: BLE001 - closing a connection that may be gone
            discard(client)

    def _drop(self) -> None:
        client, self._link.client = self._link.client, None
        discard(client)

    def _fetch_once(self, cursor: Cursor | None, limit: int) -> Batch:
        connector = self._connector
        folder = self.folder
        if self._link.client is None:
            self._link.client, info = connector.open(folder)
            log.info("imap connected", extra=fields(server=connector.where, folder=folder))
        else:
            # EXAMINE again on every fetch: the server reports a new UIDVALIDITY
            # only in answer to a SELECT or EXAMINE.
            info = connector.examine(self._link.client, folder)
        client = self._link.client
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


def find_sent_folder(
    client: IMAPClient, hint: str = "", configured: str = ""
) -> tuple[str | None, str]:
    """The Sent folder's name and how it was found: ``[imap] sent_folder`` when set,
    else SPECIAL-USE (RFC 6154), then ``hint`` (the provider's usual name) if it
    exists, then the common names ("Sent", "Sent Items", …)."""
    if configured:
        return configured, "[imap] sent_folder"
    listed = client.list_folders()
    for flags, _delimiter, name in listed:
        if SENT in flags:
            return str(name), "SPECIAL-USE \\Sent"
    names = {str(name) for _flags, _delimiter, name in listed}
    if hint and hint in names:
        return hint, "the provider's usual name"
    found = client.find_special_folder(SENT)
    return (str(found), "its name") if found else (None, "")
