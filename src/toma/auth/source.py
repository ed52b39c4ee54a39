"""Access tokens for the mail servers: cached, refreshed ahead of time, and once on refusal.

Theory of operation
-------------------
A :class:`TokenSource` serves one account (one ``token_file``). ``token()``
returns the stored access token while it has more than
:data:`~toma.auth.tokens.REFRESH_AHEAD` to live, else refreshes it first; a
server that refuses a token anyway (revoked early, clocks apart) is answered
with ``refused(token)``, which refreshes once and returns the new token for one
more login. A refresh is done under the account's lock, after reading the file
again: another thread or process may have refreshed meanwhile, and with
rotating refresh tokens a second refresh with the old one would fail.

It blocks (HTTP): an asyncio caller runs it in a thread. What goes wrong is an
:class:`~toma.auth.errors.AuthError`: :class:`SignInNeeded` when only the owner
can help (never signed in, refresh token revoked), :class:`TokenUnavailable`
when the endpoint may answer later.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from toma.auth import flows, store
from toma.auth.errors import SignInNeeded, TokenUnavailable, sign_in_needed
from toma.auth.tokens import Token, needs_refresh
from toma.config import OAuth2
from toma.logs import fields

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TokenSource:
    """Fresh access tokens for one OAuth2 account; thread-safe."""

    def __init__(self, oauth2: OAuth2, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.oauth2 = oauth2
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def account(self) -> str:
        return self.oauth2.account

    def token(self) -> str:
        """An access token that will live a few minutes more."""
        with self._lock:
            token = self._stored()
            now = self._clock()
            if needs_refresh(token, now):
                try:
                    token = self._refresh(spent=None)
                except TokenUnavailable as exc:
                    if now >= token.expires_at:
                        raise
                    # Refreshing early failed; the token still has a few minutes.
                    log.warning(
                        "oauth2 refresh failed",
                        extra=fields(account=self.account, error=exc.message),
                    )
            return token.access_token

    def refused(self, used: str) -> str:
        """The server refused ``used``: a new access token, for one more try."""
        with self._lock:
            return self._refresh(spent=used).access_token

    def _stored(self) -> Token:
        token = store.load(self.oauth2)
        if token is None:
            raise sign_in_needed(self.account, "has not been done", key="oauth2")
        return token

    def _refresh(self, *, spent: str | None) -> Token:
        oauth2 = self.oauth2
        with store.locked(oauth2):
            token = self._stored()
            now = self._clock()
            # Another thread or process refreshed while we waited for the lock.
            if spent is None and not needs_refresh(token, now):
                return token
            if spent is not None and token.access_token != spent:
                return token
            try:
                fresh = flows.refresh(oauth2, token, now)
            except SignInNeeded as exc:
                log.error(
                    "oauth2 sign-in needed", extra=fields(account=self.account, error=exc.message)
                )
                raise
            store.save(oauth2, fresh)
        log.info(
            "oauth2 refreshed",
            extra=fields(
                account=self.account,
                expires_at=fresh.expires_at.isoformat(),
                after_refusal=spent is not None,
            ),
        )
        return fresh
