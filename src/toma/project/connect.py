"""``toma check --connect``: sign in to the servers and try the Maildirs, sending nothing.

Theory of operation
-------------------
Each server is tried in stages, and the first that fails is named, because
each calls for a different fix::

    dns     the host name does not resolve         a typo in host (or DNS is down)
    tcp     nothing answers on the port            wrong port, server down, firewall
    tls     the certificate is not trusted, or     ca_file, or the server's certificate
            the TLS handshake fails
    login   the server refused the username and    username, the password's variable/file,
            password, or the OAuth2 token; or the  or `toma auth login`
            OAuth2 sign-in needs the owner
    folder  the IMAP folder cannot be opened       imap.folder
    path    a Maildir cannot be written            the folder's permissions

The name is resolved and the port tried by this module itself, before the
mail libraries see them, so that "does not resolve" and "refused" are told
apart whatever the library makes of them. SMTP then goes as far as AUTH and
QUIT (no MAIL command: nothing is sent); IMAP as far as EXAMINE of the folder
(read-only: nothing changes), then it looks for the Sent folder and reports it
(SPECIAL-USE ``\\Sent``, RFC 6154, else the provider's usual name, else the
common names). With ``auth = "xoauth2"`` or ``"oauthbearer"`` the sign-in uses
the stored OAuth2 token, refreshed as the daemon would. Every stage has a
deadline (:data:`TIMEOUT`).

Each :class:`Probe` carries the exit status its failure means
(:mod:`toma.exits`): a refused connection or a timeout may pass by itself
(75), a name that does not exist, a certificate, a login or a folder needs
the owner (78).
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import aiosmtplib
from imapclient import IMAPClient

from toma import eventloop
from toma.auth import AuthError, TokenSource, TokenUnavailable
from toma.config import Config, Imap, Smtp
from toma.config.senders import each_sender
from toma.errors import TomaError, TransportError
from toma.exits import Exit
from toma.inbox.imap import find_sent_folder
from toma.transports.smtp_login import SignIn
from toma.transports.smtp_slot import settle

TIMEOUT = 10.0  # seconds for each stage: resolve, connect, each command
T = TypeVar("T")


@dataclass(frozen=True)
class Probe:
    """What trying one server or Maildir found: ``stage`` is where it stopped (or ``ok``)."""

    what: str  # "smtp", "imap", "outbox", "inbox"
    where: str  # host:port or the folder
    stage: str  # "ok", "dns", "tcp", "tls", "login", "folder", "path", "config", "server"
    detail: str
    exit: Exit = Exit.OK

    @property
    def ok(self) -> bool:
        return self.exit is Exit.OK

    def line(self) -> str:
        if self.ok:
            return f"ok: {self.what} {self.where}: {self.detail}"
        return f"{self.what} {self.where}: {self.stage}: {self.detail}"


def check_connections(
    config: Config,
    *,
    timeout: float = TIMEOUT,
    smtp_tls: ssl.SSLContext | None = None,
    imap_tls: ssl.SSLContext | None = None,
) -> list[Probe]:
    """Try the transport and the inbox that ``config`` names, in that order; then each
    of ``[[senders]]``' own servers (``where`` says whose)."""
    probes: list[Probe] = []
    if config.transport.kind == "smtp":
        probes.append(probe_smtp(config.smtp, timeout=timeout, tls=smtp_tls))
    elif config.transport.path is not None:
        probes.append(probe_maildir("outbox", config.transport.path))
    if config.inbox.kind == "imap":
        probes.extend(
            probe_imap(
                config.imap, timeout=timeout, tls=imap_tls, folders=config.imap.inbox_folders
            )
        )
    elif config.inbox.path is not None:
        probes.append(probe_maildir("inbox", config.inbox.path))
    for seen_by in each_sender(config)[1:]:
        own: list[Probe] = []
        if config.transport.kind == "smtp":
            own.append(probe_smtp(seen_by.smtp, timeout=timeout, tls=smtp_tls))
        if config.inbox.kind == "imap":
            own.extend(
                probe_imap(
                    seen_by.imap, timeout=timeout, tls=imap_tls, folders=seen_by.imap.inbox_folders
                )
            )
        probes.extend(replace(p, where=f"{p.where} ({seen_by.sender})") for p in own)
    return probes


# --- the first two stages, shared -------------------------------------------------


def _reach(what: str, host: str, port: int, timeout: float) -> Probe | None:
    """Resolve ``host`` and open a TCP connection to it; a Probe when either fails."""
    where = f"{host}:{port}"
    try:
        addresses = _bounded(
            lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout
        )
    except TimeoutError:
        return Probe(what, where, "dns", f"no answer from DNS within {timeout:g}s", Exit.RETRY)
    except socket.gaierror as exc:
        gone = exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))
        return Probe(
            what,
            where,
            "dns",
            f"the name {host!r} does not resolve ({exc.strerror}): check {what}.host"
            if gone
            else f"cannot resolve {host!r} now ({exc.strerror})",
            Exit.NEEDS_YOU if gone else Exit.RETRY,
        )
    last: OSError | None = None
    for family, kind, proto, _name, address in addresses:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(timeout)
                sock.connect(address)
        except TimeoutError:
            return Probe(
                what,
                where,
                "tcp",
                f"no answer within {timeout:g}s (a firewall, or the server is down)",
                Exit.RETRY,
            )
        except OSError as exc:
            last = exc
        else:
            return None
    reason = last.strerror if last is not None and last.strerror else str(last)
    return Probe(
        what,
        where,
        "tcp",
        f"cannot connect ({reason}): is the server up, and is {what}.port right?",
        Exit.RETRY,
    )


def _bounded(call: Callable[[], T], timeout: float) -> T:
    """``call()`` in a thread of its own, given up after ``timeout`` (getaddrinfo has none)."""
    import concurrent.futures

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(call).result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        raise TimeoutError from None
    finally:
        pool.shutdown(wait=False)


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """``exc`` or the first exception of ``kind`` among its causes and contexts."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _tls_probe(what: str, where: str, exc: BaseException) -> Probe | None:
    verify = _cause(exc, ssl.SSLCertVerificationError)
    if isinstance(verify, ssl.SSLCertVerificationError):
        return Probe(
            what,
            where,
            "tls",
            f"the certificate is not trusted ({verify.verify_message}): set "
            f"{what}.ca_file to the CA that signed it, or fix the server's certificate",
            Exit.NEEDS_YOU,
        )
    other = _cause(exc, ssl.SSLError)
    if other is not None:
        return Probe(
            what,
            where,
            "tls",
            f"the TLS handshake failed ({other}): check {what}.security and {what}.port",
            Exit.NEEDS_YOU,
        )
    return None


# --- SMTP ---------------------------------------------------------------------------


def probe_smtp(
    config: Smtp, *, timeout: float = TIMEOUT, tls: ssl.SSLContext | None = None
) -> Probe:
    """Connect, greet, TLS, AUTH and QUIT: everything a send does before MAIL."""
    where = f"{config.host}:{config.port}"
    unreachable = _reach("smtp", config.host, config.port, timeout)
    if unreachable is not None:
        return unreachable
    try:
        sign_in = _smtp_sign_in(config)
    except TomaError as exc:
        return Probe("smtp", where, "config", exc.message, Exit.NEEDS_YOU)
    context = None
    if config.security != "none":
        try:
            context = tls or ssl.create_default_context(
                cafile=str(config.ca_file) if config.ca_file else None
            )
        except (OSError, ssl.SSLError) as exc:
            return Probe(
                "smtp",
                where,
                "config",
                f"cannot use the CA file {config.ca_file}: {exc}",
                Exit.NEEDS_YOU,
            )
    return eventloop.run(_smtp_session(config, sign_in, context, timeout))


def _smtp_sign_in(config: Smtp) -> SignIn | None:
    """How the probe signs in, as the transport would; a TomaError for a missing secret."""
    if not config.username:
        return None
    if config.oauth2 is not None and config.auth != "password":
        return SignIn(config, password=None, tokens=TokenSource(config.oauth2))
    password = config.password.reveal()
    if password is None:
        raise TomaError("smtp.username is set but no password: add password_env or password_file")
    return SignIn(config, password=password, tokens=None)


async def _smtp_session(
    config: Smtp, sign_in: SignIn | None, context: ssl.SSLContext | None, timeout: float
) -> Probe:
    where = f"{config.host}:{config.port}"
    smtp = aiosmtplib.SMTP(
        hostname=config.host,
        port=config.port,
        timeout=timeout,
        use_tls=config.security == "tls",
        start_tls=False,
        tls_context=context,
    )
    stage = "tcp"
    try:
        await smtp.connect()
        stage = "server"
        await smtp.ehlo()
        if config.security == "starttls":
            stage = "tls"
            if not smtp.supports_extension("starttls"):
                return Probe(
                    "smtp",
                    where,
                    "tls",
                    'the server does not offer STARTTLS: use security = "tls" (usually port 465)',
                    Exit.NEEDS_YOU,
                )
            await smtp.starttls()
        if sign_in is not None:
            stage = "login"
            await sign_in(smtp)
        stage = "server"
        await smtp.quit()
    except AuthError as exc:
        again = isinstance(exc, TokenUnavailable)
        return Probe("smtp", where, "login", exc.message, Exit.RETRY if again else Exit.NEEDS_YOU)
    except TransportError as exc:  # the server does not offer the configured mechanism
        return Probe("smtp", where, "login", exc.message, Exit.NEEDS_YOU)
    except aiosmtplib.SMTPAuthenticationError as exc:
        return Probe(
            "smtp",
            where,
            "login",
            f"refused the login of {config.username!r} ({exc.code} {exc.message}): "
            + (
                "check smtp.username and the password"
                if config.auth == "password"
                else f"check smtp.username, or run `toma auth login {config.username}`"
            ),
            Exit.NEEDS_YOU,
        )
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
        found = _tls_probe("smtp", where, exc)
        if found is not None:
            return found
        code = getattr(exc, "code", None)
        needs = isinstance(code, int) and 500 <= code < 600
        return Probe(
            "smtp",
            where,
            stage,
            " ".join(str(exc).split())[:300] or type(exc).__name__,
            Exit.NEEDS_YOU if needs or stage == "login" else Exit.RETRY,
        )
    finally:
        # A TLS connection's goodbye takes a round trip: waited for (or cut short), so
        # that the connection does not outlive the event loop closed right after.
        protocol = smtp.protocol
        smtp.close()
        if protocol is not None:
            await settle([protocol])
    how = f" with {config.auth.upper()}" if config.auth != "password" else ""
    signed = f", signed in as {config.username}{how}" if config.username else ""
    return Probe("smtp", where, "ok", f"{config.security}{signed}; nothing sent")


# --- IMAP ---------------------------------------------------------------------------


def probe_imap(
    config: Imap,
    *,
    timeout: float = TIMEOUT,
    tls: ssl.SSLContext | None = None,
    folders: Sequence[str] = (),
) -> list[Probe]:
    """Connect, TLS, sign in and EXAMINE each folder (read-only); find the Sent folder.

    ``folders`` are the folders toma reads (default: ``config.inbox_folders``). One probe
    for the sign-in and the first folder, one for each further folder, one for Sent.
    """
    from toma.inbox.base import InboxError, InboxLoginError, InboxUnavailable
    from toma.inbox.imap import Connector, discard

    where = f"{config.host}:{config.port}"
    unreachable = _reach("imap", config.host, config.port, timeout)
    if unreachable is not None:
        return [unreachable]
    try:
        client, _info = Connector(config, tls, timeout).open()
    except InboxLoginError as exc:
        return [Probe("imap", where, "login", exc.message, Exit.NEEDS_YOU)]
    except AuthError as exc:
        again = isinstance(exc, TokenUnavailable)
        return [Probe("imap", where, "login", exc.message, Exit.RETRY if again else Exit.NEEDS_YOU)]
    except InboxUnavailable as exc:
        if exc.key == "oauth2":  # the token endpoint, not the mail server
            return [Probe("imap", where, "login", exc.message, Exit.RETRY)]
        found = _tls_probe("imap", where, exc)
        return [found or Probe("imap", where, "tcp", exc.message, Exit.RETRY)]
    except InboxError as exc:
        stage = {"imap.ca_file": "tls", "imap.security": "tls", "imap.folder": "folder"}.get(
            exc.key or "", "config"
        )
        return [Probe("imap", where, stage, exc.message, Exit.NEEDS_YOU)]
    except TomaError as exc:
        return [Probe("imap", where, "config", str(exc), Exit.NEEDS_YOU)]
    how = f" with {config.auth.upper()}" if config.auth != "password" else ""
    probes = [
        Probe(
            "imap",
            where,
            "ok",
            f"{config.security}, signed in as {config.username}{how}, folder "
            f"{config.inbox_folders[0]!r} opened read-only",
        )
    ]
    try:
        for folder in folders:
            if folder == config.inbox_folders[0]:
                continue
            try:
                client.select_folder(folder, readonly=True)
            except Exception as exc:  # noqa: BLE001 - any refusal: that folder cannot be read
                probes.append(
                    Probe(
                        "imap",
                        where,
                        "folder",
                        f"cannot open the folder {folder!r} ({_one_line(exc)}): check its name",
                        Exit.NEEDS_YOU,
                    )
                )
            else:
                probes.append(Probe("imap", where, "ok", f"folder {folder!r} opened read-only"))
        probes.append(_sent_probe(client, config, where))
    finally:
        try:
            client.logout()
        except Exception:  # noqa: BLE001 - the goodbye is a courtesy
            discard(client)
    return probes


def _sent_probe(client: IMAPClient, config: Imap, where: str) -> Probe:
    try:
        name, how = find_sent_folder(client, config.provider_sent_folder, config.sent_folder)
    except Exception as exc:  # noqa: BLE001 - LIST refused: say so, the rest stands
        return Probe("imap", where, "ok", f"cannot list the folders ({_one_line(exc)})")
    if name is None:
        return Probe("imap", where, "ok", "no Sent folder found (none marked \\Sent)")
    filed = "; the provider files sent mail there itself" if config.files_sent_itself else ""
    return Probe("imap", where, "ok", f"Sent folder {name!r} (found by {how}){filed}")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


# --- Maildirs -----------------------------------------------------------------------


def probe_maildir(what: str, path: Path) -> Probe:
    """A Maildir toma writes (outbox) or reads and records positions in (inbox).

    It exists with ``cur``, ``new`` and ``tmp`` writable, or it can be created
    (toma creates it on first use).
    """
    where = str(path)
    if path.exists():
        if not path.is_dir():
            return Probe(what, where, "path", "is not a folder", Exit.NEEDS_YOU)
        for folder in (path, *(path / sub for sub in ("cur", "new", "tmp"))):
            if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
                return Probe(
                    what, where, "path", f"{folder} is not writable by this user", Exit.NEEDS_YOU
                )
        return Probe(what, where, "ok", "Maildir exists and is writable")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return Probe(
            what,
            where,
            "path",
            f"does not exist, and {parent} is not writable to create it",
            Exit.NEEDS_YOU,
        )
    return Probe(what, where, "ok", "does not exist yet; created on first use")
