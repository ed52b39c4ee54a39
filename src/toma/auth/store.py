"""Where a sign-in's tokens are kept: one JSON file per account, owner-only.

The file is replaced whole (:func:`toma.durable.atomic_write`,
created 0600) so a crash leaves the old tokens or the new ones, never half.
Refreshing happens under an exclusive ``flock`` on a lock file beside it, taken
by every reader that may refresh: a provider that rotates refresh tokens spends
the old one at the first refresh, so two refreshes racing (the daemon's SMTP
and IMAP, or ``toma check --connect`` beside the daemon) would sign the loser
out. The lock's holder re-reads the file first and uses what another refreshed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from typing import Any

from toma.auth.errors import AuthError
from toma.auth.tokens import BadTokenAnswer, Token
from toma.config import OAuth2
from toma.durable import atomic_write

MAX_FILE = 256 * 1024


def load(oauth2: OAuth2) -> Token | None:
    """The stored token of this sign-in, or None (never signed in, or for another app)."""
    path = oauth2.token_file
    try:
        with path.open("rb") as src:
            raw = src.read(MAX_FILE + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AuthError(f"cannot read {path}: {exc.strerror}", file=path) from None
    try:
        doc: Any = json.loads(raw) if len(raw) <= MAX_FILE else None
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict):
        raise AuthError(
            f"{path} is not a token file toma wrote: remove it and run "
            f"`toma auth login {oauth2.account}`",
            file=path,
        )
    if doc.get("client_id") != oauth2.client_id or doc.get("token_url") != oauth2.token_url:
        return None  # signed in with another app or provider: that sign-in does not apply
    try:
        return Token.from_doc(doc)
    except BadTokenAnswer:
        return None


def save(oauth2: OAuth2, token: Token) -> None:
    """Replace the stored token, owner-only (0600), in a folder only the owner can enter."""
    path = oauth2.token_file
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    doc = {
        "account": oauth2.account,
        "client_id": oauth2.client_id,
        "token_url": oauth2.token_url,
        **token.to_doc(),
    }
    atomic_write(path, [json.dumps(doc, indent=2).encode() + b"\n"])


@contextlib.contextmanager
def locked(oauth2: OAuth2) -> Iterator[None]:
    """Hold the account's refresh lock (between threads and processes alike)."""
    path = oauth2.token_file
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def describe(oauth2: OAuth2) -> dict[str, Any]:
    """What ``toma auth status`` shows of one account (never a token itself)."""
    token = load(oauth2)
    return {
        "account": oauth2.account,
        "file": str(oauth2.token_file),
        "signed_in": token is not None,
        "access_expires_at": token.expires_at.isoformat() if token else None,
        "scope": token.scope if token else None,
    }
