"""How an SMTP connection signs in: a password, or an OAuth2 token (XOAUTH2, OAUTHBEARER).

With OAuth2 the token comes from a :class:`~toma.auth.TokenSource` (run in a
thread: it may refresh over HTTP). A token the server refuses is refreshed
once and tried once more on the same connection; a second refusal is the
server's last word, reported as :class:`aiosmtplib.SMTPAuthenticationError`.
What keeps toma from getting a token at all is an :class:`~toma.auth.AuthError`.

OAUTHBEARER (RFC 7628) is written out here because aiosmtplib speaks only
XOAUTH2: on failure the server sends a JSON challenge (334) and the client
must answer with a lone ``\\x01`` before the server gives its final 535.

A password the server refuses (a 5xx to AUTH) is tried once: servers count
refusals (fail2ban bans the address after a handful, providers lock the
account), and no retry mends a wrong password. :class:`Gate` holds that within
a batch; :mod:`toma.core.refusals`, kept in the store, from one tick (or cron
run) to the next.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

import aiosmtplib
from aiosmtplib import SMTPAuthenticationError

from toma.auth import TokenSource, TokenUnavailable
from toma.config import Smtp
from toma.core.refusals import Account, Refusals
from toma.errors import TransportError
from toma.logs import fields
from toma.timeutil import iso
from toma.transports.base import one_line

log = logging.getLogger(__name__)


def _gs2_name(user: str) -> str:
    # RFC 5801: "," and "=" in the authorisation identity are escaped.
    return user.replace("=", "=3D").replace(",", "=2C")


# PLAIN and LOGIN over the TLS the transport insists on; CRAM-MD5 only where nothing else is.
_PASSWORD_MECHANISMS = ("plain", "login", "cram-md5")


class SignIn:
    """Sign one [smtp] connection in, as ``config.auth`` says."""

    def __init__(self, config: Smtp, *, password: str | None, tokens: TokenSource | None) -> None:
        self._config = config
        self._password = password
        self._tokens = tokens

    @classmethod
    async def open(cls, config: Smtp) -> SignIn:
        """Read the secret once, at open: a missing one is a configuration error, not a
        failure of every message; likewise a sign-in that needs the owner."""
        if config.oauth2 is not None and config.auth != "password":
            tokens = TokenSource(config.oauth2)
            # SignInNeeded: one error, nothing tried. An endpoint out of reach may answer by
            # the first connection; if not, each message fails there, temporarily.
            with contextlib.suppress(TokenUnavailable):
                await asyncio.to_thread(tokens.token)
            return cls(config, password=None, tokens=tokens)
        password = config.password.reveal()
        if password is None:
            raise TransportError(
                "smtp.username is set but no password: add password_env or password_file",
                key="smtp.username",
            )
        return cls(config, password=password, tokens=None)

    @property
    def needed(self) -> bool:
        return bool(self._config.username)

    @property
    def password(self) -> str | None:
        """The password this sign-in gives; None with OAuth2, whose tokens change."""
        return self._password if self._tokens is None else None

    async def __call__(self, smtp: aiosmtplib.SMTP) -> None:
        config = self._config
        user = config.username or ""
        if self._tokens is None:
            await self._password_login(smtp, user, self._password or "")
            return
        if config.auth not in smtp.server_auth_methods:
            raise TransportError(
                f"{config.host} does not offer AUTH {config.auth.upper()}: check smtp.auth",
                key="smtp.auth",
            )
        tokens = self._tokens
        token = await asyncio.to_thread(tokens.token)
        try:
            await self._bearer(smtp, user, token)
        except SMTPAuthenticationError:
            token = await asyncio.to_thread(tokens.refused, token)
            await self._bearer(smtp, user, token)

    async def _password_login(self, smtp: aiosmtplib.SMTP, user: str, password: str) -> None:
        """One AUTH, by the first mechanism both sides speak.

        Not ``aiosmtplib.SMTP.login``: on a refusal it tries every other mechanism the
        server offers, and a server counts each of those as one more wrong password.
        """
        if smtp.is_ehlo_or_helo_needed:  # after STARTTLS the server is asked again
            await smtp.ehlo()
        offered = smtp.server_auth_methods
        for mechanism in _PASSWORD_MECHANISMS:
            if mechanism in offered:
                await getattr(smtp, f"auth_{mechanism.replace('-', '')}")(user, password)
                return
        host = self._config.host
        if not smtp.supports_extension("auth"):
            raise TransportError(f"{host} does not offer AUTH: check smtp.host", key="smtp.host")
        raise TransportError(
            f"{host} offers AUTH {' '.join(offered).upper()}, none of PLAIN, LOGIN or CRAM-MD5",
            key="smtp.username",
        )

    async def _bearer(self, smtp: aiosmtplib.SMTP, user: str, token: str) -> None:
        if self._config.auth == "xoauth2":
            await smtp.auth_xoauth2(user, token)
            return
        config = self._config
        message = (
            f"n,a={_gs2_name(user)},\x01host={config.host}\x01port={config.port}"
            f"\x01auth=Bearer {token}\x01\x01"
        )
        reply = await smtp.execute_command(
            b"AUTH", b"OAUTHBEARER", base64.b64encode(message.encode())
        )
        if reply.code == 334:
            reply = await smtp.execute_command(b"AQ==")  # "\x01": end the failed exchange
        if reply.code != 235:
            raise SMTPAuthenticationError(reply.code, reply.message)


class Gate:
    """One batch's connections as they sign in (see the module docstring).

    Until a connection has signed in, connections sign in one at a time (they
    connect and start TLS at once), so that a wrong password is refused once
    and not once per slot. A refusal closes the gate for the rest of the
    batch: :attr:`closed` is then the server's code and answer, for every
    message not sent.
    """

    def __init__(
        self,
        config: Smtp,
        sign_in: SignIn | None,
        refusals: Refusals | None,
        now: datetime | None,
    ) -> None:
        self._config = config
        password = sign_in.password if sign_in is not None else None
        # The refusals the store keeps, the password and the tick's moment: a refusal of
        # this password outlives the batch (OAuth2 tokens change: none is kept).
        self._memory = (
            (refusals, password, now)
            if refusals is not None and password is not None and now is not None
            else None
        )
        self._signed_in = sign_in is None
        self._first = asyncio.Lock()
        self.closed: tuple[int, str] | None = None
        if self._memory is not None:
            memory, password, now = self._memory
            found = memory.standing(_account(config), password, now)
            if found is not None:
                log.warning(
                    "smtp login not tried",
                    extra=fields(
                        host=config.host,
                        username=config.username,
                        refused_at=iso(found.at),
                        until=iso(found.until),
                    ),
                )
                self.closed = (
                    found.code,
                    f"{found.detail} (at {iso(found.at)}; the same password is not tried "
                    f"again before {iso(found.until)}: correct it and the next tick tries it)",
                )

    async def through(self, sign_in: Callable[[], Awaitable[None]]) -> bool:
        """Run ``sign_in`` once the gate lets it; False, untried, once it is closed."""
        if self._signed_in:
            await self._signing(sign_in)
            return True
        async with self._first:
            if self.closed is not None:
                return False
            await self._signing(sign_in)  # refused, closed before the next in line tries
            self._signed_in = True
        if self._memory is not None:
            self._memory[0].accepted(_account(self._config))
        return True

    async def _signing(self, sign_in: Callable[[], Awaitable[None]]) -> None:
        try:
            await sign_in()
        except SMTPAuthenticationError as exc:
            if 500 <= exc.code < 600:
                self._refuse(exc.code, exc.message)
            raise

    def _refuse(self, code: int, answer: str) -> None:
        """The server refused the login for good (a 5xx to AUTH): close the gate."""
        config = self._config
        detail = login_failed(config, code, answer)
        log.warning(
            "smtp login refused",
            extra=fields(
                host=config.host,
                port=config.port,
                username=config.username,
                code=code,
                error=detail,
            ),
        )
        if self._memory is not None:
            memory, password, now = self._memory
            memory.refused(_account(config), password, now, code, detail)
        self.closed = (code, detail)


def login_failed(config: Smtp, code: int, answer: str) -> str:
    """What a message not sent says of a refused login."""
    return one_line(f"authentication as {config.username} failed: {code} {answer}")


def _account(config: Smtp) -> Account:
    return Account(config.host, config.port, config.username or "")
