"""SMTP delivery over a small pool of reused connections (aiosmtplib).

Theory of operation
-------------------

The pool holds ``concurrency`` slots. A send takes an idle slot, opens its
connection if it has none (connect, EHLO, STARTTLS or implicit TLS, AUTH),
waits for the shared rate limiter, runs one mail transaction and gives the slot
back with its connection still open for the next message. A slot whose last
transaction was refused half-way is reset (RSET) before it is used again; a
connection the server dropped while idle is replaced, once, without failing the
message.

The transaction is written out command by command instead of calling
``sendmail``, because at-most-once depends on knowing *where* it failed::

    connect / EHLO / STARTTLS / AUTH   failure -> TEMPORARY (nothing was sent);
                                       a 5xx to AUTH is not tried again in the
                                       batch (see smtp_login.Gate)
    MAIL, RCPT                         4xx -> TEMPORARY, 5xx -> PERMANENT,
                                       drop or timeout -> TEMPORARY
    (hand-over)                        the caller's ``handing``, asked before
                                       MAIL, is awaited before DATA: False ->
                                       RSET, WITHDRAWN
    DATA (before 354)                  same as RCPT
    body written, final answer         250 -> SENT, 4xx -> TEMPORARY, 5xx -> PERMANENT,
                                       drop, timeout or garbage -> UNKNOWN

Once the body has been handed to the socket the server may hold the whole
message; if its answer never comes the message may have been delivered, so it
is UNKNOWN and never retried. Before that point nothing can have been accepted.

A message with several recipients is all or nothing: if any recipient is
refused, DATA is not sent (PERMANENT if any refusal is 5xx, else TEMPORARY), so
a later retry cannot deliver twice to the recipients that were accepted.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from datetime import datetime
from types import TracebackType
from typing import Self

import aiosmtplib
from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPException,
    SMTPHeloError,
    SMTPResponse,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from toma.auth import AuthError, SignInNeeded
from toma.config import Smtp
from toma.core.refusals import Refusals
from toma.errors import TransportError
from toma.hosts import is_loopback
from toma.logs import fields
from toma.transports.base import Envelope, Handing, Outcome, Result, one_line
from toma.transports.smtp_login import Gate, SignIn, login_failed
from toma.transports.smtp_slot import Slot, settle
from toma.transports.smtp_wire import (
    RateLimiter,
    check_envelope,
    default_tls_context,
    failure,
    local_hostname,
    reply_text,
    wire_format,
)

__all__ = ["RateLimiter", "SmtpTransport", "default_tls_context", "is_loopback", "wire_format"]

log = logging.getLogger(__name__)

_QUIT_TIMEOUT = 5.0


class _ConnectFailed(Exception):
    def __init__(self, detail: str, code: int | None = None, *, again: bool = True) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.again = again  # whether another connection within the batch could succeed


class _Broken(Exception):
    """The connection failed under a command (drop, timeout, unreadable answer)."""

    def __init__(self, detail: str, *, dropped: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.dropped = dropped


class _Stale(Exception):
    """A reused connection turned out to be gone before anything was sent."""


class SmtpTransport:
    """Deliver through an SMTP server: TLS verified, authenticated, pooled, rate limited.

    ``ssl_context`` replaces the default context (certificate and host name
    checks on, trusting ``config.ca_file`` or the system store). Opening raises
    :class:`TransportError` for a configuration that must not be used, such as
    ``security = "none"`` towards a host that is not this machine.
    """

    def __init__(
        self,
        config: Smtp,
        *,
        ssl_context: ssl.SSLContext | None = None,
        refusals: Refusals | None = None,
        now: datetime | None = None,
    ) -> None:
        self._config = config
        self._given_context = ssl_context
        self._tls: ssl.SSLContext | None = None
        self._sign_in: SignIn | None = None
        # The refused passwords the store keeps, and the tick's moment (smtp_login.Gate).
        self._refusals = refusals
        self._now = now
        self._gate = Gate(config, None, None, None)
        # A sign-in only the owner can mend: no more connections are tried, and the
        # transport closes with it, so that the tick reports it once.
        self._signed_out: SignInNeeded | None = None
        self._hostname = "localhost"
        self._slots: list[Slot] = []
        self._idle: asyncio.Queue[Slot] | None = None
        self._rate = RateLimiter(config.rate_per_minute)

    @property
    def concurrency(self) -> int:
        return max(1, self._config.concurrency)

    async def __aenter__(self) -> Self:
        config = self._config
        if config.security not in ("starttls", "tls", "none"):
            raise TransportError(
                f'security must be "starttls", "tls" or "none", got {config.security!r}',
                key="smtp.security",
            )
        if config.security == "none":
            if not is_loopback(config.host):
                raise TransportError(
                    f'security = "none" sends mail and passwords in clear text; it is only '
                    f"allowed for a relay on this machine, not {config.host!r}",
                    key="smtp.security",
                )
            self._tls = None
        else:
            self._tls = self._given_context or default_tls_context(config.ca_file)
        if config.username:
            self._sign_in = await SignIn.open(config)
        self._gate = Gate(config, self._sign_in, self._refusals, self._now)
        self._hostname = await asyncio.to_thread(local_hostname)
        self._slots = [Slot() for _ in range(self.concurrency)]
        # Last in, first out: a trickle of messages keeps reusing one warm
        # connection instead of opening every slot in turn.
        self._idle = asyncio.LifoQueue()
        for slot in self._slots:
            self._idle.put_nowait(slot)
        self._rate = RateLimiter(config.rate_per_minute)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        idle, self._idle = self._idle, None
        if idle is None:
            return
        # Taking every slot waits for sends in progress to finish.
        slots = [await idle.get() for _ in self._slots]
        await asyncio.gather(*(self._quit(slot) for slot in slots))
        await settle([protocol for slot in slots for protocol in slot.closing])
        for slot in slots:
            slot.closing.clear()
        self._sign_in = None
        signed_out, self._signed_out = self._signed_out, None
        if signed_out is not None and exc is None:
            raise signed_out

    async def send(self, envelope: Envelope, handing: Handing | None = None) -> Result:
        idle = self._idle
        if idle is None:
            raise TransportError("the SMTP transport is not open (use `async with`)")
        problem = check_envelope(envelope)
        if problem is not None:
            return problem
        slot = await idle.get()
        try:
            result = await self._deliver(slot, envelope, handing)
        except BaseException:
            # Interrupted in the middle of a conversation: nobody knows where it
            # stands, so the connection must not be reused.
            slot.drop()
            raise
        finally:
            idle.put_nowait(slot)
        log.debug(
            "smtp send",
            extra=fields(
                key=result.key, outcome=result.outcome.value, code=result.code, detail=result.detail
            ),
        )
        return result

    async def _deliver(self, slot: Slot, envelope: Envelope, handing: Handing | None) -> Result:
        for _ in range(2):
            key = envelope.key
            if self._signed_out is not None:
                message = self._signed_out.message
                return Result(key, Outcome.TEMPORARY, None, message, retry_soon=False)
            if self._gate.closed is not None:
                code, detail = self._gate.closed  # logged once, when it was refused
                return Result(key, Outcome.TEMPORARY, code, detail, retry_soon=False)
            fresh = not slot.connected
            try:
                await self._ready(slot)
            except _ConnectFailed as failed:
                if failed.again:
                    log.warning(
                        "smtp connect failed",
                        extra=fields(
                            host=self._config.host,
                            port=self._config.port,
                            code=failed.code,
                            error=one_line(failed.detail),
                        ),
                    )
                detail = one_line(failed.detail)
                return Result(key, Outcome.TEMPORARY, failed.code, detail, retry_soon=failed.again)
            await self._rate.acquire()
            try:
                return await self._transaction(slot, envelope, handing)
            except _Stale as stale:
                if fresh:
                    return Result(envelope.key, Outcome.TEMPORARY, None, one_line(str(stale)))
                log.debug("smtp reconnect", extra=fields(reason=one_line(str(stale))))
        return Result(envelope.key, Outcome.TEMPORARY, None, "the connection kept dropping")

    async def _ready(self, slot: Slot) -> None:
        if slot.connected and slot.needs_reset:
            try:
                reply = await self._command(slot, b"RSET")
            except _Broken:
                reply = None
            if reply is None or reply.code != 250:
                slot.drop()
            slot.needs_reset = False
        if not slot.connected:
            slot.drop()
            await self._connect(slot)

    async def _connect(self, slot: Slot) -> None:
        """Give ``slot`` a ready connection (greeted, TLS, logged in) or raise _ConnectFailed."""
        config = self._config
        # Held by the slot from the start, so that a failure half-way (after
        # STARTTLS, say) closes it through drop() and the close is waited for.
        slot.smtp = smtp = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            local_hostname=self._hostname,
            timeout=config.timeout,
            use_tls=config.security == "tls",
            start_tls=False,
            tls_context=self._tls,
        )
        try:
            await smtp.connect()
            await self._hello(smtp)
            if config.security == "starttls":
                await self._upgrade(smtp)
            sign_in = self._sign_in
            if sign_in is not None and not await self._gate.through(lambda: sign_in(smtp)):
                code, detail = self._gate.closed or (None, "the login was refused")
                raise _ConnectFailed(detail, code, again=False)  # noqa: TRY301 - dropped below
        except AuthError as exc:
            slot.drop()
            log.warning("smtp sign-in failed", extra=fields(error=exc.message))
            if isinstance(exc, SignInNeeded):
                self._signed_out = exc
            raise _ConnectFailed(exc.message) from None
        except TransportError as exc:
            slot.drop()
            raise _ConnectFailed(exc.message) from None
        except _ConnectFailed:
            slot.drop()
            raise
        except SMTPAuthenticationError as exc:
            slot.drop()
            detail = login_failed(config, exc.code, exc.message)
            # A 5xx is the server's last word: the gate closed on it (see smtp_login).
            again = self._gate.closed is None
            raise _ConnectFailed(detail, exc.code, again=again) from None
        except SMTPResponseException as exc:
            slot.drop()
            raise _ConnectFailed(f"{exc.code} {exc.message}", exc.code) from None
        except ssl.SSLError as exc:
            slot.drop()
            raise _ConnectFailed(f"TLS with {config.host}:{config.port} failed: {exc}") from None
        except (SMTPException, OSError) as exc:
            slot.drop()
            raise _ConnectFailed(f"{config.host}:{config.port}: {exc}") from None
        except BaseException:
            slot.drop()
            raise
        log.debug(
            "smtp connected",
            extra=fields(host=config.host, port=config.port, security=config.security),
        )

    async def _upgrade(self, smtp: aiosmtplib.SMTP) -> None:
        if not smtp.supports_extension("starttls"):
            raise _ConnectFailed(
                'the server does not offer STARTTLS and security = "starttls": '
                "refusing to send in clear text"
            )
        await smtp.starttls(server_hostname=self._config.host)
        await self._hello(smtp)

    @staticmethod
    async def _hello(smtp: aiosmtplib.SMTP) -> None:
        try:
            await smtp.ehlo()
        except SMTPHeloError:
            if not smtp.is_connected:
                raise
            await smtp.helo()

    async def _command(self, slot: Slot, *args: bytes) -> SMTPResponse:
        """One command and its answer; a broken connection is dropped and reported."""
        smtp = slot.smtp
        if smtp is None or not smtp.is_connected:
            slot.drop()
            raise _Broken("the connection was closed", dropped=True)
        try:
            return await smtp.execute_command(*args)
        except SMTPServerDisconnected as exc:
            slot.drop()
            raise _Broken(f"connection lost: {exc}", dropped=True) from None
        except SMTPTimeoutError:
            slot.drop()
            raise _Broken(f"no answer within {self._config.timeout:g}s", dropped=False) from None
        except SMTPResponseException as exc:
            slot.drop()
            raise _Broken(f"unreadable answer: {exc.message}", dropped=False) from None

    async def _transaction(self, slot: Slot, envelope: Envelope, handing: Handing | None) -> Result:
        smtp = slot.smtp
        assert smtp is not None  # noqa: S101 - _ready leaves a connection or raises
        key = envelope.key
        addresses = (envelope.sender, *envelope.recipients)
        utf8 = not all(address.isascii() for address in addresses)
        if utf8 and not smtp.supports_extension("smtputf8"):
            return Result(
                key,
                Outcome.PERMANENT,
                None,
                "the server does not accept non-ASCII addresses (no SMTPUTF8)",
            )
        encoding = "utf-8" if utf8 else "ascii"
        # Noted by the caller while MAIL and RCPT go back and forth.
        handed = handing(key) if handing is not None else None
        payload = wire_format(envelope.data)
        options: list[bytes] = []
        if smtp.supports_extension("size"):
            options.append(b"SIZE=%d" % (len(payload) - 3))
        if not envelope.data.isascii() and smtp.supports_extension("8bitmime"):
            options.append(b"BODY=8BITMIME")
        if utf8:
            options.append(b"SMTPUTF8")

        try:
            reply = await self._command(
                slot, b"MAIL", b"FROM:<" + envelope.sender.encode(encoding) + b">", *options
            )
        except _Broken as broken:
            if broken.dropped:
                raise _Stale(broken.detail) from None
            return Result(key, Outcome.TEMPORARY, None, broken.detail)
        if reply.code == 421:  # the server is closing this connection
            slot.drop()
            raise _Stale(reply_text(reply))
        if reply.code != 250:
            slot.needs_reset = slot.connected
            return failure(
                key, reply.code, f"sender {envelope.sender} refused: {reply_text(reply)}"
            )

        refused: list[tuple[str, SMTPResponse]] = []
        for recipient in envelope.recipients:
            try:
                reply = await self._command(
                    slot, b"RCPT", b"TO:<" + recipient.encode(encoding) + b">"
                )
            except _Broken as broken:
                return Result(key, Outcome.TEMPORARY, None, broken.detail)
            if reply.code not in (250, 251):
                refused.append((recipient, reply))
                if not slot.connected:
                    break
        if refused:
            slot.needs_reset = slot.connected
            final = [item for item in refused if 500 <= item[1].code < 600]
            recipient, reply = (final or refused)[0]
            more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
            return failure(
                key, reply.code, f"recipient {recipient} refused: {reply_text(reply)}{more}"
            )

        if handed is not None and not await handed:
            slot.needs_reset = slot.connected
            return Result(key, Outcome.WITHDRAWN, None, "withdrawn before the hand-over")

        try:
            reply = await self._command(slot, b"DATA")
        except _Broken as broken:
            return Result(key, Outcome.TEMPORARY, None, broken.detail)
        if reply.code != 354:
            if 400 <= reply.code < 600:
                slot.needs_reset = slot.connected
            else:
                slot.drop()
            return failure(key, reply.code, f"DATA refused: {reply_text(reply)}")

        protocol = smtp.protocol
        if protocol is None:
            slot.drop()
            return Result(
                key, Outcome.TEMPORARY, None, "connection lost before the message was sent"
            )
        try:
            protocol.write(payload)
        except SMTPServerDisconnected:
            slot.drop()
            return Result(
                key, Outcome.TEMPORARY, None, "connection lost before the message was sent"
            )

        # From here on the server may hold the whole message.
        try:
            reply = await protocol.read_response(timeout=self._config.timeout)
        except SMTPTimeoutError:
            slot.drop()
            return Result(
                key,
                Outcome.UNKNOWN,
                None,
                f"no answer within {self._config.timeout:g}s after the message "
                "was sent; it may have been delivered",
            )
        except (SMTPServerDisconnected, SMTPResponseException) as exc:
            slot.drop()
            return Result(
                key,
                Outcome.UNKNOWN,
                None,
                one_line(
                    f"connection lost after the message was sent "
                    f"({exc}); it may have been delivered"
                ),
            )
        if reply.code == 250:
            return Result(key, Outcome.SENT, 250, reply_text(reply))
        if 400 <= reply.code < 600:
            if reply.code == 421:
                slot.drop()
            return failure(key, reply.code, f"message refused: {reply_text(reply)}")
        slot.drop()
        return Result(
            key,
            Outcome.UNKNOWN,
            reply.code,
            f"unexpected answer after the message was sent: {reply_text(reply)}",
        )

    async def _quit(self, slot: Slot) -> None:
        smtp = slot.smtp
        # quit() forgets its protocol when it closes; keep it to wait for the close.
        slot.remember(smtp.protocol if smtp is not None else None)
        try:
            if smtp is not None and smtp.is_connected:
                await smtp.quit(timeout=min(self._config.timeout, _QUIT_TIMEOUT))
        except (SMTPException, OSError):
            pass  # the goodbye is a courtesy; the connection is closed below either way
        finally:
            slot.drop()
