"""How ``[smtp]`` and ``[imap]`` sign in: the provider preset, ``auth`` and ``[oauth2]``.

``provider = "gmail"`` in a server's section fills its host, port, security, auth
method and (for SMTP) rate from :mod:`toma.config.providers`; every key written
wins. ``auth = "xoauth2"`` or ``"oauthbearer"`` needs an OAuth2 app registration:
``[oauth2] client_id`` at least, the endpoints and scopes coming from the
provider's preset unless given. One ``[oauth2]`` serves both servers, since one
sign-in to a mailbox gives a token for its IMAP and its SMTP alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from toma.config.model import AUTH_METHODS, OAuth2, Secret
from toma.config.providers import Preset, preset
from toma.config.reader import Reader, read_ca_file
from toma.hosts import is_loopback

OAUTH2_KEYS = {
    "provider",
    "client_id",
    "client_secret_env",
    "client_secret_file",
    "token_url",
    "authorization_url",
    "device_authorization_url",
    "scopes",
    "redirect_port",
    "ca_file",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]")


def read_provider(r: Reader, table: Mapping[str, Any], section: str) -> Preset | None:
    name = r.get(table, section, "provider", str, "")
    return r.convert(section, "provider", name, preset) if name else None


def read_auth(r: Reader, table: Mapping[str, Any], section: str, found: Preset | None) -> str:
    auth: str = r.get(table, section, "auth", str, found.auth if found else "password")
    if auth not in AUTH_METHODS:
        raise r.error(
            f"{section}.auth",
            f'auth must be "password", "xoauth2" or "oauthbearer", got {auth!r}',
        )
    return auth


def _usable_url(value: str) -> bool:
    """https, or plain http to this machine only: tokens and secrets travel on it."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    if not parts.hostname:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname))


def token_file(data: Path, account: str) -> Path:
    """Where the refresh token of ``account`` lives: ``tokens/`` beside the data directory."""
    return data.parent / "tokens" / f"{_UNSAFE.sub('_', account)}.json"


def read_oauth2(
    r: Reader,
    raw: Mapping[str, Any],
    section: str,
    *,
    auth: str,
    username: str | None,
    found: Preset | None,
    data: Path,
) -> OAuth2 | None:
    """The OAuth2 sign-in of ``section`` (None for ``auth = "password"``)."""
    t = r.table(raw, "oauth2", OAUTH2_KEYS)
    if auth == "password":
        return None
    if not username:
        raise r.error(f"{section}.auth", f"auth = {auth!r} needs {section}.username (the mailbox)")
    named = r.get(t, "oauth2", "provider", str, "")
    own = r.convert("oauth2", "provider", named, preset) if named else found
    defaults = own.oauth2 if own is not None else None
    client_id = r.get(t, "oauth2", "client_id", str, "")
    if not client_id:
        raise r.error(
            f"{section}.auth",
            f"auth = {auth!r} needs [oauth2] client_id: the id of the app registered with "
            "the provider (see the README)",
        )

    def url(key: str, default: str) -> str:
        value: str = r.get(t, "oauth2", key, str, default)
        if value and not _usable_url(value):
            raise r.error(
                f"oauth2.{key}",
                f"{key} must be an https:// address (http only on this machine), got {value!r}",
            )
        return value

    token_url = url("token_url", defaults.token_url if defaults else "")
    if not token_url:
        raise r.error("oauth2", "[oauth2] needs token_url (or a provider that has one)")
    scopes = r.get(t, "oauth2", "scopes", list, list(defaults.scopes) if defaults else [])
    if not all(isinstance(scope, str) for scope in scopes):
        raise r.error("oauth2.scopes", "scopes must be a list of strings")
    port: int = r.get(t, "oauth2", "redirect_port", int, 0)
    if not 0 <= port <= 65535:
        raise r.error("oauth2.redirect_port", f"redirect_port must be 0 to 65535, got {port}")
    env = r.get(t, "oauth2", "client_secret_env", str)
    file = r.get(t, "oauth2", "client_secret_file", str)
    if env and file:
        raise r.error(
            "oauth2.client_secret_file", "give client_secret_env or client_secret_file, not both"
        )
    return OAuth2(
        account=username,
        client_id=client_id,
        token_url=token_url,
        token_file=token_file(data, username),
        client_secret=Secret(
            env=env,
            file=r.path(file),
            key="oauth2.client_secret_env" if env else "oauth2.client_secret_file",
            config_file=str(r.file),
        ),
        device_authorization_url=url(
            "device_authorization_url", defaults.device_authorization_url if defaults else ""
        ),
        authorization_url=url("authorization_url", defaults.authorization_url if defaults else ""),
        scopes=tuple(scopes),
        redirect_port=port,
        ca_file=read_ca_file(r, t, "oauth2"),
    )
