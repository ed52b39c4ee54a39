"""OAuth2 tokens as values: read from a token endpoint's answer, kept, judged fresh or not.

Pure: the moment is passed in. Everything a token endpoint answers is checked
before it is used, because an access token ends up inside a SASL string where
a control character would change what the mail server reads (XOAUTH2 separates
its fields with ``\\x01``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

# RFC 6750's b64token, what a bearer token may hold; generous lengths (Microsoft's
# access tokens run to a few kilobytes), bounded all the same.
_BEARER = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
MAX_TOKEN = 16 * 1024
# A token endpoint that says a token lasts for years is not to be believed: toma
# refreshes at least this often, and never less than a minute ahead.
LONGEST_LIFE = timedelta(days=1)
SHORTEST_LIFE = timedelta(seconds=60)
REFRESH_AHEAD = timedelta(minutes=5)


class BadTokenAnswer(ValueError):
    """The token endpoint's answer cannot be used."""


@dataclass(frozen=True)
class Token:
    """What a sign-in holds: a short-lived access token and the refresh token behind it."""

    access_token: str
    refresh_token: str
    expires_at: datetime  # aware
    scope: str = ""

    def to_doc(self) -> dict[str, str]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at.isoformat(),
            "scope": self.scope,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Token:
        try:
            expires_at = datetime.fromisoformat(str(doc["expires_at"]))
            if expires_at.tzinfo is None:
                raise BadTokenAnswer("expires_at has no time zone")
            return cls(
                access_token=_bearer(doc.get("access_token"), "access_token"),
                refresh_token=_bearer(doc.get("refresh_token"), "refresh_token"),
                expires_at=expires_at,
                scope=str(doc.get("scope", "")),
            )
        except (KeyError, ValueError) as exc:
            raise BadTokenAnswer(f"not a stored token: {exc}") from None


def _bearer(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadTokenAnswer(f"no {name} in the answer")
    if len(value) > MAX_TOKEN or not _BEARER.fullmatch(value):
        raise BadTokenAnswer(f"the {name} holds characters a bearer token cannot have")
    return value


def from_answer(
    answer: Mapping[str, Any], now: datetime, *, previous: Token | None = None
) -> Token:
    """The token a token endpoint's JSON ``answer`` gives at ``now``.

    A refresh answer may leave out the refresh token (it stays the same) or give
    a new one (the old one is then spent: RFC 6749 section 6, and Microsoft and
    others rotate them).
    """
    access = _bearer(answer.get("access_token"), "access_token")
    kind = answer.get("token_type", "Bearer")
    if not isinstance(kind, str) or kind.lower() != "bearer":
        raise BadTokenAnswer(f"token_type {kind!r} is not Bearer")
    refresh_raw = answer.get("refresh_token")
    if refresh_raw is None and previous is not None:
        refresh = previous.refresh_token
    else:
        refresh = _bearer(refresh_raw, "refresh_token")
    life_raw = answer.get("expires_in", 3600)
    if isinstance(life_raw, str) and life_raw.isdigit():
        life_raw = int(life_raw)  # some endpoints send it as a string
    if isinstance(life_raw, bool) or not isinstance(life_raw, int | float) or life_raw != life_raw:
        raise BadTokenAnswer(f"expires_in {life_raw!r} is not a number of seconds")
    life = min(max(timedelta(seconds=max(0, int(life_raw))), SHORTEST_LIFE), LONGEST_LIFE)
    scope = answer.get("scope", previous.scope if previous else "")
    if isinstance(scope, list):
        scope = " ".join(str(item) for item in scope)
    return Token(access, refresh, now + life, str(scope)[:2000])


def needs_refresh(token: Token, now: datetime, ahead: timedelta = REFRESH_AHEAD) -> bool:
    """Refresh ``ahead`` of the expiry, so no login is tried with a token about to lapse."""
    return now >= token.expires_at - ahead


def expired(token: Token) -> Token:
    """The same token, marked as expired (a server refused it before its time)."""
    return replace(token, expires_at=datetime.min.replace(tzinfo=token.expires_at.tzinfo))
