"""Unsubscribe links: signed tokens, the one-click URL, the mailto, the headers.

Theory of operation
-------------------

A token names an address and proves toma issued it, so the endpoint and the
inbox can honour it without looking anything up::

    token = b64url(address) "." b64url(HMAC-SHA256(secret, "v1:" + address)[:16])

(base64url without padding.) The MAC is cut to 128 bits, which is plenty
against forgery online; the "v1:" prefix lets a later format use the same
secret without any v1 token verifying as the new kind. The address is readable
by whoever holds the link — it is the recipient's own, in their own mailbox.

:meth:`Unsubscribe.verify` recomputes the canonical token for the address it
decodes and compares the whole token in constant time. Comparing the whole
token (not just the MAC) matters: base64 decoders skip stray characters and
accept several spellings of the last character, so a token that was altered
anywhere must fail even where it would decode to the same bytes.

The secret lives in the data directory (:func:`load_or_create_secret`): 32
random bytes, readable by the owner only. Replacing it invalidates every link
already sent, so it is created once and then only read.

Two ways out are offered in every newsletter (RFC 2369, RFC 8058):

- ``mailto:OWNER?subject=unsubscribe%20TOKEN`` — to the owner's own address,
  which the inbox reads anyway. A plus-address or a long token in the local
  part would be neater, but not every provider delivers plus-addresses and a
  local part may be at most 64 octets; a subject always arrives. The inbox finds
  the token with :meth:`Unsubscribe.find` and so knows who asked, even when the
  mail comes from another of their addresses.
- ``https://…/u/TOKEN`` — the one-click URL, served by :mod:`toma.web.endpoint`.
  Only when a public base URL is configured; plain http is refused except on a
  loopback host (tests, a local trial), because a token sent in clear text can
  be replayed by anyone on the way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypedDict
from urllib.parse import quote, unquote, urlsplit

from email_validator import EmailNotValidError, validate_email

from toma.core.contacts import Contact
from toma.durable import fsync_dir, write_new
from toma.errors import StoreError
from toma.hosts import is_loopback
from toma.logs import fields

if TYPE_CHECKING:
    from toma.config import Config

log = logging.getLogger(__name__)

SECRET_FILE = "unsubscribe.key"  # noqa: S105 - a file name, not a secret

VERSION: Final = b"v1:"
MAC_BYTES: Final = 16  # 128 bits
SECRET_BYTES: Final = 32
MIN_SECRET_BYTES: Final = 16
ONE_CLICK: Final = "List-Unsubscribe=One-Click"
SUBJECT_WORD: Final = "unsubscribe"
PATH_PREFIX: Final = "/u/"
# An address is at most 254 octets: 340 base64 characters, a dot, 22 for the MAC.
MAX_TOKEN: Final = 400

_B64 = re.compile(r"[A-Za-z0-9_-]+")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{22}")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


class ListUnsubscribe(TypedDict):
    """Keyword arguments for :func:`toma.mail.mime.build_message`."""

    list_unsubscribe: tuple[str, ...]
    list_unsubscribe_post: bool


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _address_of(contact: Contact | str) -> str:
    return contact.email if isinstance(contact, Contact) else contact


def check_base_url(base_url: str) -> str:
    """``base_url`` without a trailing slash; ValueError unless https (or http on loopback)."""
    text = base_url.strip()
    if _CONTROL.search(text):
        raise ValueError(f"{base_url!r} is not a URL: it contains spaces or control characters")
    parts = urlsplit(text)
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError(f"{base_url!r} is not an https:// URL such as https://example.com/toma")
    if parts.scheme == "http" and not is_loopback(host):
        raise ValueError(
            f"{base_url!r}: unsubscribe links must use https (plain http is accepted only "
            "for localhost): a link in clear text can be read and used on the way"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(
            f"{base_url!r}: give the base URL only, without ?query, #fragment or user@"
        )
    return text.rstrip("/")


def _check_mailto(address: str) -> str:
    try:
        checked = validate_email(address.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ValueError(f"{address!r} cannot receive unsubscribe mail: {exc}") from None
    return checked.ascii_email or checked.normalized


class Unsubscribe:
    """Tokens, links and headers for one secret.

    ``base_url`` is where :mod:`toma.web.endpoint` can be reached from the internet
    (``https://toma.example.com``; a path is allowed), or None for mailto only.
    ``mailto`` is the address whose inbox toma reads. Raises ValueError for a
    short secret, a base URL that is not https or an unusable address.
    """

    def __init__(self, secret: bytes, base_url: str | None, mailto: str) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the unsubscribe secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = bytes(secret)
        self.base_url = check_base_url(base_url) if base_url else None
        self.mailto_address = _check_mailto(mailto)

    def __repr__(self) -> str:  # the secret stays out of logs and tracebacks
        return f"Unsubscribe(base_url={self.base_url!r}, mailto={self.mailto_address!r})"

    # ------------------------------------------------------------------ tokens

    def _mac(self, address: bytes) -> bytes:
        return hmac.new(self._secret, VERSION + address, hashlib.sha256).digest()[:MAC_BYTES]

    def token(self, contact_email: str) -> str:
        """The token for ``contact_email`` (used exactly as given: pass the stored address)."""
        if not contact_email or _CONTROL.search(contact_email) or "@" not in contact_email:
            raise ValueError(f"{contact_email!r} is not an address to make a token for")
        data = contact_email.encode("utf-8")
        return f"{_b64(data)}.{_b64(self._mac(data))}"

    def verify(self, token: str) -> str | None:
        """The address ``token`` was made for, or None if it was not made with this secret."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN or not token.isascii():
            return None
        encoded, dot, mac = token.partition(".")
        if not dot or not _B64.fullmatch(encoded) or not _B64.fullmatch(mac):
            return None
        try:
            address = _unb64(encoded).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        if not address or _CONTROL.search(address) or "@" not in address:
            return None
        expected = self.token(address)
        if not hmac.compare_digest(expected.encode("ascii"), token.encode("ascii")):
            return None
        return address

    def find(self, text: str) -> str | None:
        """The address of the first valid token in ``text`` (a subject, a body), or None."""
        text = text[:10_000]
        # A client that did not decode the mailto leaves "%20" before the token.
        for candidate in (text, unquote(text)) if "%" in text else (text,):
            for match in _TOKEN.finditer(candidate):
                address = self.verify(match.group())
                if address is not None:
                    return address
        return None

    # ------------------------------------------------------------------ links

    def url(self, contact: Contact | str) -> str | None:
        """The one-click URL, or None without a base URL."""
        return self._url(self.token(_address_of(contact)))

    def mailto(self, contact: Contact | str) -> str:
        """``mailto:`` the inbox, with the token in the subject."""
        return self._mailto(self.token(_address_of(contact)))

    def _url(self, token: str) -> str | None:
        return None if self.base_url is None else f"{self.base_url}{PATH_PREFIX}{token}"

    def _mailto(self, token: str) -> str:
        to = quote(self.mailto_address, safe="@!$'*+-._~")
        return f"mailto:{to}?subject={SUBJECT_WORD}%20{token}"

    def uris(self, contact: Contact | str) -> tuple[str, ...]:
        """The List-Unsubscribe URIs: the mailto, then the https URL if there is one."""
        return self.message_options(contact)["list_unsubscribe"]

    def headers(self, contact: Contact | str) -> dict[str, str]:
        """List-Unsubscribe, and List-Unsubscribe-Post when one-click is possible (RFC 8058)."""
        uris = self.uris(contact)
        found = {"List-Unsubscribe": ", ".join(f"<{uri}>" for uri in uris)}
        if len(uris) > 1:
            found["List-Unsubscribe-Post"] = ONE_CLICK
        return found

    def message_options(self, contact: Contact | str) -> ListUnsubscribe:
        """The same, as ``build_message(..., **options)`` takes it."""
        return self.for_message(contact)[1]

    def context(self, contact: Contact | str) -> dict[str, str | None]:
        """``unsubscribe_url`` and ``unsubscribe_mailto`` for the template context."""
        return self.for_message(contact)[0]

    def for_message(self, contact: Contact | str) -> tuple[dict[str, str | None], ListUnsubscribe]:
        """:meth:`context` and :meth:`message_options` together, from one token."""
        token = self.token(_address_of(contact))
        url, mailto = self._url(token), self._mailto(token)
        uris = (mailto, url) if url else (mailto,)
        return (
            {"unsubscribe_url": url, "unsubscribe_mailto": mailto},
            ListUnsubscribe(list_unsubscribe=uris, list_unsubscribe_post=url is not None),
        )


# --------------------------------------------------------------------------- secret


def load_or_create_secret(path: Path) -> bytes:
    """The secret stored at ``path``; made (32 random bytes, mode 0600) if there is none.

    Created under a temporary name and linked into place, so that a crash never
    leaves a short secret behind and two processes starting together end up
    with the same one. Raises :class:`StoreError` for a file that cannot be
    read or is too short to be a secret.
    """
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        write_new(temporary, secrets.token_bytes(SECRET_BYTES))
        created = True
        try:
            path.hardlink_to(temporary)
        except FileExistsError:
            created = False  # someone else made it first: theirs is the one
        except OSError:
            # A file system without hard links: replace instead. Only one daemon
            # runs per data directory, so nobody else is making one right now.
            temporary.replace(path)
        if created:
            # The new name must survive a power cut: once a link with this secret
            # has gone out, a fresh secret would break it.
            fsync_dir(path.parent)
            log.info("unsubscribe_secret_created", extra=fields(file=str(path)))
    except OSError as exc:
        raise StoreError(
            f"cannot create the unsubscribe secret: {exc.strerror}", file=path
        ) from None
    finally:
        temporary.unlink(missing_ok=True)
    try:
        return _read_secret(path)
    except FileNotFoundError:
        raise StoreError("the unsubscribe secret vanished as it was made", file=path) from None


def _read_secret(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            data = handle.read(4096)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StoreError(f"cannot read the unsubscribe secret: {exc.strerror}", file=path) from None
    if len(data) < MIN_SECRET_BYTES:
        raise StoreError(
            f"the unsubscribe secret is {len(data)} bytes, too short to be one: restore it "
            "from a backup (or delete it to make a new one; links already sent stop working)",
            file=path,
        )
    if mode & 0o077:
        # The data directory is the owner's only; a copied-in file may not be.
        try:
            path.chmod(0o600)
        except OSError as exc:
            log.warning(
                "unsubscribe_secret_open_mode",
                extra=fields(file=str(path), mode=oct(mode & 0o777), error=exc.strerror),
            )
        else:
            log.warning(
                "unsubscribe_secret_mode_tightened",
                extra=fields(file=str(path), was=oct(mode & 0o777)),
            )
    return data


def unsubscriber(config: Config) -> Unsubscribe:
    """Links and mailtos signed with the data directory's secret (made on first use)."""
    config.paths.data.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Unsubscribe(
        secret=load_or_create_secret(config.paths.data / SECRET_FILE),
        base_url=config.unsubscribe.base_url or None,
        mailto=config.inbox.unsubscribe_address or config.owner.email,
    )
