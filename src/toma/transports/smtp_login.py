"""How an SMTP connection signs in: a password, or an OAuth2 token (XOAUTH2, OAUTHBEARER).

With OAuth2 the token comes from a :class:`~toma.auth.TokenSource` (run in a
thread: it may refresh over HTTP). A token the server refuses is refreshed
once and tried once more on the same connection; a second refusal is the
server's last word, reported as :class:`aiosmtplib.SMTPAuthenticationError`.
What keeps toma from getting a token at all is an :class:`~toma.auth.AuthError`.

OAUTHBEARER (RFC 7628) is written out here because aiosmtplib speaks only
XOAUTH2: on failure the server sends a JSON challenge (334) and the client
must answer with a lone ``\\x01`` before the server gives its final 535.
"""

from __future__ import annotations

import asyncio
import base64

import aiosmtplib
from aiosmtplib import SMTPAuthenticationError

from toma.auth import TokenSource
from toma.config import Smtp
from toma.errors import TransportError


def _gs2_name(user: str) -> str:
    # RFC 5801: "," and "=" in the authorisation identity are escaped.
    return user.replace("=", "=3D").replace(",", "=2C")


class SignIn:
    """Sign one [smtp] connection in, as ``config.auth`` says."""

    def __init__(self, config: Smtp, *, password: str | None, tokens: TokenSource | None) -> None:
        self._config = config
        self._password = password
        self._tokens = tokens

    @property
    def needed(self) -> bool:
        return bool(self._config.username)

    async def __call__(self, smtp: aiosmtplib.SMTP) -> None:
        config = self._config
        user = config.username or ""
        if self._tokens is None:
            await smtp.login(user, self._password or "")
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
