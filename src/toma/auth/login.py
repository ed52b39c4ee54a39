"""``toma auth login`` and ``toma auth status`` as library calls: which accounts, signing in.

The accounts are those of ``[smtp]`` and ``[imap]`` (and of each ``[[senders]]``
entry's own) with ``auth`` other than ``"password"``; a mailbox whose SMTP and
IMAP sign in as the same user is one account with one token file, which serves both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from toma.auth import flows, store
from toma.auth.errors import AuthError
from toma.auth.tokens import Token
from toma.config import Config, OAuth2
from toma.config.senders import each_sender
from toma.logs import fields

log = logging.getLogger(__name__)


def accounts(config: Config) -> list[OAuth2]:
    """The OAuth2 accounts the config signs in to, one per token file, scopes merged."""
    found: dict[str, OAuth2] = {}
    servers = [server for view in each_sender(config) for server in (view.smtp, view.imap)]
    for section in servers:
        oauth2 = section.oauth2
        if oauth2 is None or section.auth == "password":
            continue
        key = str(oauth2.token_file)
        if key in found:
            merged = tuple(dict.fromkeys((*found[key].scopes, *oauth2.scopes)))
            found[key] = replace(found[key], scopes=merged)
        else:
            found[key] = oauth2
    return list(found.values())


def choose(config: Config, account: str | None) -> list[OAuth2]:
    every = accounts(config)
    if not every:
        raise AuthError(
            'no server signs in with OAuth2: set auth = "xoauth2" in [smtp] or [imap]',
            file=config.file,
        )
    if account is None:
        return every
    chosen = [oauth2 for oauth2 in every if oauth2.account.lower() == account.lower()]
    if not chosen:
        names = ", ".join(oauth2.account for oauth2 in every)
        raise AuthError(f"no OAuth2 account {account!r} in the config (there is {names})")
    return chosen


def sign_in(
    oauth2: OAuth2,
    *,
    show: Callable[[str], None],
    clock: Callable[[], datetime],
    wait: Callable[[float], None],
) -> Token:
    """Sign in (device flow where the provider has one, else the loopback redirect), then keep
    the tokens."""
    if oauth2.device_authorization_url:
        code = flows.start_device(oauth2)
        # What the endpoint sent goes to a terminal: no escape sequences from it.
        where = _printable(code.verification_uri_complete or code.verification_uri)
        show(f"To sign in {oauth2.account}, open {where}")
        show(
            f"and enter the code {_printable(code.user_code)} "
            f"(it expires in {code.expires_in:.0f}s)."
        )
        token = flows.finish_device(oauth2, code, clock=clock, wait=wait)
    else:
        show(f"To sign in {oauth2.account}, open this address in a browser on this machine")
        show("(or through `ssh -L PORT:127.0.0.1:PORT` to it):")
        token = flows.loopback_login(oauth2, show=show, clock=clock)
    with store.locked(oauth2):
        store.save(oauth2, token)
    log.info(
        "oauth2 signed in",
        extra=fields(account=oauth2.account, expires_at=token.expires_at.isoformat()),
    )
    return token


def _printable(text: str) -> str:
    return "".join(char for char in text if char.isprintable())[:500]


def status(config: Config) -> list[dict[str, Any]]:
    return [store.describe(oauth2) for oauth2 in accounts(config)]
