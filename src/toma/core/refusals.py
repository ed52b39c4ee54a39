"""The passwords SMTP servers refused: not tried again for a while, and never kept.

A server counts refused logins (fail2ban bans the address after a handful in
ten minutes, providers lock the account), and no retry mends a wrong
password. So a password refused at a tick is not tried again for
:data:`LOGIN_PAUSE`, whether the next tick comes from the same daemon or from
the next cron run: the memory lives in the store (:mod:`toma.store.records.logins`).
A new password is tried at once: the memory holds, for each account, a salted
scrypt digest of the password it refused, which a new one does not match. It
is a digest of a password the server said is wrong, and a costly one to guess
from: nothing of the right password is kept.

Plain data in, plain data out, with the moment passed in; a damaged document
in the store is memory lost, not an error: the password is then tried once more.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from toma.errors import TomaError
from toma.timeutil import iso, parse_moment

LOGIN_PAUSE = timedelta(minutes=15)  # fail2ban's default counts 5 refusals in 10 minutes
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}  # about 50 ms a digest
_MOST = 64  # accounts remembered, whatever a damaged document holds


@dataclass(frozen=True)
class Account:
    """Where a password is used: the server and the user name."""

    host: str
    port: int
    username: str

    @property
    def name(self) -> str:
        return f"{self.username}@{self.host.lower()}:{self.port}"


@dataclass(frozen=True)
class Refused:
    """A server's refusal of a password: its answer, when, and until when it stands."""

    code: int
    detail: str
    at: datetime
    until: datetime
    salt: str
    digest: str  # scrypt of the password refused, with the salt: never the password

    def of(self, password: str) -> bool:
        return hmac.compare_digest(self.digest, _digest(password, self.salt))


class Refusals:
    """Per account, the last refusal of its password (see the module docstring)."""

    def __init__(self, refused: Mapping[str, Refused] | None = None) -> None:
        self._refused = dict(refused or {})

    def standing(self, account: Account, password: str, now: datetime) -> Refused | None:
        """The refusal that still holds for ``password``: the same, and within the pause."""
        found = self._refused.get(account.name)
        if found is None or not found.at <= now < found.until:  # a clock set back ends it
            return None
        return found if found.of(password) else None

    def refused(
        self, account: Account, password: str, now: datetime, code: int, detail: str
    ) -> Refused:
        salt = secrets.token_hex(16)
        found = Refused(code, detail, now, now + LOGIN_PAUSE, salt, _digest(password, salt))
        self._refused[account.name] = found
        return found

    def accepted(self, account: Account) -> None:
        self._refused.pop(account.name, None)

    def to_doc(self) -> dict[str, Any]:
        return {
            name: {
                "code": found.code,
                "detail": found.detail,
                "at": iso(found.at),
                "until": iso(found.until),
                "salt": found.salt,
                "digest": found.digest,
            }
            for name, found in self._refused.items()
        }

    @classmethod
    def from_doc(cls, doc: object) -> Refusals:
        """The memory a document holds; what is not a refusal as written above is left out."""
        if not isinstance(doc, dict):
            return cls()
        kept: dict[str, Refused] = {}
        for name, entry in list(doc.items())[:_MOST]:
            found = _refused(entry)
            if isinstance(name, str) and found is not None:
                kept[name] = found
        return cls(kept)


def _refused(entry: object) -> Refused | None:
    if not isinstance(entry, dict):
        return None
    code, detail = entry.get("code"), entry.get("detail")
    texts = [entry.get(name) for name in ("at", "until", "salt", "digest")]
    if type(code) is not int or not isinstance(detail, str):
        return None
    if not all(isinstance(text, str) for text in texts):
        return None
    at, until, salt, digest = (str(text) for text in texts)
    try:
        return Refused(code, detail[:500], parse_moment(at), parse_moment(until), salt, digest)
    except (TomaError, ValueError):
        return None


def _digest(password: str, salt: str) -> str:
    return hashlib.scrypt(password.encode(), salt=salt.encode(), **_SCRYPT).hex()
