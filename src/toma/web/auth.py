"""Who may read the dashboard: a password hash, or a proxy that authenticates; CSRF tokens.

The password is never stored: config.toml names an environment variable or a
file holding its scrypt hash (``toma serve --hash-password`` makes one). A
browser sends it by HTTP Basic authentication; a hash checked once is
remembered (by a digest of the header) so pages do not pay for scrypt each time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import Final

_N: Final = 2**14
_R: Final = 8
_P: Final = 1


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$SALT$HASH`` (base64): what config.toml's password file holds."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "$".join(["scrypt", str(_N), str(_R), str(_P), _b64(salt), _b64(digest)])


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.strip().split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=2**26,
        )
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(got, expected)


def is_password_hash(text: str) -> bool:
    parts = text.strip().split("$")
    return len(parts) == 6 and parts[0] == "scrypt"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Gate:
    """Checks an ``Authorization: Basic`` header against the hash; remembers good ones."""

    def __init__(self, password_hash: str | None) -> None:
        self.password_hash = password_hash
        self._good: set[bytes] = set()

    @property
    def required(self) -> bool:
        return self.password_hash is not None

    def allows(self, authorization: str | None) -> bool:
        if self.password_hash is None:
            return True
        if not authorization or not authorization.lower().startswith("basic "):
            return False
        seen = hashlib.sha256(authorization.encode()).digest()
        if seen in self._good:
            return True
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        _user, _sep, password = decoded.partition(":")
        if not verify_password(password, self.password_hash):
            return False
        if len(self._good) < 64:
            self._good.add(seen)
        return True


class Csrf:
    """A token every form carries; a cross-site page cannot read it, so cannot post it."""

    def __init__(self, key: bytes | None = None) -> None:
        self._token = hmac.new(key or secrets.token_bytes(32), b"csrf", "sha256").hexdigest()

    @property
    def token(self) -> str:
        return self._token

    def valid(self, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(str(sent), self._token)


def calendar_token(secret: bytes) -> str:
    """The private part of ``/plan.ics``: derived from the data directory's secret."""
    return hmac.new(secret, b"toma plan.ics v1", "sha256").hexdigest()[:32]
