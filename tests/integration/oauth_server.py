"""Real OAuth2 servers on 127.0.0.1 for the sign-in tests.

:class:`AuthServer` is a small authorisation server (stdlib ``ThreadingHTTPServer``):
the device authorisation endpoint (RFC 8628), the token endpoint with the
``device_code``, ``refresh_token`` and ``authorization_code`` grants, an
``/authorize`` page that approves at once (the test plays the browser), and
token introspection (RFC 7662) for the mail servers. Refresh tokens rotate: a
spent one is ``invalid_grant``, as at Microsoft. The test approves device codes
(:meth:`AuthServer.approve`), expires access tokens early or revokes refresh
tokens, and counts the grants.

:class:`OAuthDovecot` is the suite's Dovecot with an ``oauth2`` passdb asking
that introspection endpoint (XOAUTH2 and OAUTHBEARER), beside the usual
password passdb the tests use to put mail in place. :class:`XOAuth2Smtp` is an
aiosmtpd server that takes AUTH XOAUTH2 (and OAUTHBEARER) the same way.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPD
from aiosmtpd.smtp import AuthResult, Envelope, Session

from .dovecot import Dovecot, _need_dovecot, free_port

HOST = "127.0.0.1"
CLIENT_ID = "toma-test-client"
SENT_FOLDER = "Outgoing Copies"


@dataclass
class _Grant:
    username: str
    refresh_token: str


@dataclass
class _State:
    access: dict[str, str] = field(default_factory=dict)  # access token -> username
    refresh: dict[str, str] = field(default_factory=dict)  # live refresh token -> username
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # device_code -> state
    codes: dict[str, str] = field(default_factory=dict)  # authorization code -> username
    grants: dict[str, int] = field(default_factory=dict)  # grant_type -> count
    expires_in: int = 3600
    down: bool = False  # the token endpoint answers 503 to every grant


class AuthServer:
    """A tiny OAuth2 authorisation server; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.state = _State()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {
                    key: values[0]
                    for key, values in parse_qs(self.rfile.read(length).decode()).items()
                }
                path = urlsplit(self.path).path
                status, answer = outer.answer(path, form)
                self._send(status, answer)

            def do_GET(self) -> None:
                split = urlsplit(self.path)
                query = {key: values[0] for key, values in parse_qs(split.query).items()}
                if split.path != "/authorize":
                    self._send(404, {"error": "not_found"})
                    return
                location = outer.authorize(query)
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _send(self, status: int, answer: dict[str, Any]) -> None:
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer((HOST, 0), Handler)
        self._http.daemon_threads = True
        self.port = int(self._http.server_address[1])
        self.url = f"http://{HOST}:{self.port}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(5)

    # -- the endpoints -----------------------------------------------------------------

    def answer(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            state = self.state
            if path == "/introspect":
                user = state.access.get(form.get("token", ""))
                if user is None:
                    return 200, {"active": False}
                return 200, {"active": True, "username": user}
            if path == "/device_authorization":
                if form.get("client_id") != CLIENT_ID:
                    return 400, {"error": "invalid_client"}
                device_code = secrets.token_urlsafe(16)
                user_code = secrets.token_hex(4).upper()
                state.devices[device_code] = {"user_code": user_code, "username": None}
                return 200, {
                    "device_code": device_code,
                    "user_code": user_code,
                    "verification_uri": f"{self.url}/device",
                    "verification_uri_complete": f"{self.url}/device?user_code={user_code}",
                    "expires_in": 600,
                    "interval": 0,
                }
            if path != "/token":
                return 404, {"error": "not_found"}
            if form.get("client_id") != CLIENT_ID:
                return 401, {"error": "invalid_client"}
            grant = form.get("grant_type", "")
            state.grants[grant] = state.grants.get(grant, 0) + 1
            if state.down:
                return 503, {"error": "temporarily_unavailable"}
            if grant == "urn:ietf:params:oauth:grant-type:device_code":
                device = state.devices.get(form.get("device_code", ""))
                if device is None:
                    return 400, {"error": "expired_token"}
                if device["username"] is None:
                    return 400, {"error": "authorization_pending"}
                del state.devices[form["device_code"]]
                return 200, self._issue(device["username"])
            if grant == "refresh_token":
                user = state.refresh.pop(form.get("refresh_token", ""), None)
                if user is None:
                    return 400, {"error": "invalid_grant"}
                return 200, self._issue(user)
            if grant == "authorization_code":
                user = state.codes.pop(form.get("code", ""), None)
                if user is None or not form.get("code_verifier"):
                    return 400, {"error": "invalid_grant"}
                return 200, self._issue(user)
            return 400, {"error": "unsupported_grant_type"}

    def _issue(self, username: str) -> dict[str, Any]:
        access = secrets.token_urlsafe(24)
        refresh = secrets.token_urlsafe(24)
        self.state.access[access] = username
        self.state.refresh[refresh] = username
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.state.expires_in,
            "refresh_token": refresh,
            "scope": "mail",
        }

    def authorize(self, query: dict[str, str]) -> str:
        """The browser's visit, approved at once as ``login_hint`` (or the pending user)."""
        with self._lock:
            code = secrets.token_urlsafe(16)
            self.state.codes[code] = self.browser_user
        return f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"

    browser_user = "toma"

    # -- what the test does -----------------------------------------------------------

    def approve(self, username: str, *, timeout: float = 10.0) -> None:
        """Play the person: approve the first device code waiting, as ``username``."""
        deadline = threading.Event()
        for _ in range(int(timeout / 0.01)):
            with self._lock:
                for device in self.state.devices.values():
                    if device["username"] is None:
                        device["username"] = username
                        return
            deadline.wait(0.01)
        raise AssertionError("no device code was asked for")

    def approve_in_background(self, *usernames: str) -> threading.Thread:
        def run() -> None:
            for username in usernames:
                self.approve(username)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working, before its announced time."""
        with self._lock:
            self.state.access.clear()

    def revoke(self, username: str) -> None:
        """The owner (or an admin) revoked the sign-in of ``username``: all its tokens die."""
        with self._lock:
            self.state.access = {k: v for k, v in self.state.access.items() if v != username}
            self.state.refresh = {k: v for k, v in self.state.refresh.items() if v != username}

    def token_endpoint_down(self, down: bool) -> None:
        with self._lock:
            self.state.down = down

    def count(self, grant: str) -> int:
        with self._lock:
            return self.state.grants.get(grant, 0)

    def introspect(self, token: str) -> str | None:
        with self._lock:
            return self.state.access.get(token)


# -- Dovecot with the oauth2 passdb ----------------------------------------------------------


class OAuthDovecot(Dovecot):
    """The suite's Dovecot, also taking XOAUTH2 and OAUTHBEARER checked by ``auth``."""

    def __init__(self, auth: AuthServer) -> None:
        self._auth = auth
        super().__init__()

    def _write_files(self) -> None:
        super()._write_files()
        (self.root / "oauth2.conf.ext").write_text(
            "introspection_mode = post\n"
            f"introspection_url = {self._auth.url}/introspect\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n",
            encoding="utf-8",
        )
        text = self.conf.read_text(encoding="utf-8")
        text = text.replace(
            "auth_mechanisms = plain login",
            "auth_mechanisms = plain login xoauth2 oauthbearer",
        )
        text = text.replace(
            "passdb {\n  driver = passwd-file\n",
            "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
            f"  args = {self.root}/oauth2.conf.ext\n}}\n"
            "passdb {\n  driver = passwd-file\n  mechanisms = plain login\n",
        )
        # A Sent folder under a name no heuristic guesses: found only by SPECIAL-USE.
        text += (
            "namespace inbox {\n  inbox = yes\n"
            f'  mailbox "{SENT_FOLDER}" {{\n    special_use = \\Sent\n    auto = create\n  }}\n}}\n'
        )
        # Without this, each refused login makes the next good one wait up to 15 s.
        text = text.replace(
            "service anvil {\n  chroot =\n}",
            "service anvil {\n  chroot =\n  unix_listener anvil-auth-penalty {\n"
            "    mode = 0\n  }\n}",
        )
        self.conf.write_text(text, encoding="utf-8")


# -- aiosmtpd taking XOAUTH2 ------------------------------------------------------------------


@dataclass(frozen=True)
class Taken:
    user: str
    rcpt_tos: tuple[str, ...]
    data: bytes


class _Handler:
    def __init__(self, auth: AuthServer) -> None:
        self.auth = auth
        self.messages: list[Taken] = []
        self.refused = 0
        self._lock = threading.Lock()

    async def _check(self, server: SMTPD, user: str, token: str) -> AuthResult:
        owner = await asyncio.to_thread(self.auth.introspect, token)
        if owner is not None and owner.lower() == user.lower():
            return AuthResult(success=True, auth_data=user)
        with self._lock:
            self.refused += 1
        # XOAUTH2 and OAUTHBEARER: a JSON challenge, the client's empty answer, then 535.
        await server.challenge_auth(json.dumps({"status": "401", "schemes": "bearer"}))
        return AuthResult(success=False, handled=False, message="535 5.7.8 Token not accepted")

    async def auth_XOAUTH2(self, server: SMTPD, args: list[str]) -> AuthResult:
        raw = base64.b64decode(args[1]) if len(args) == 2 else await server.challenge_auth("")
        if not isinstance(raw, bytes):
            return AuthResult(success=False, handled=False)
        found = dict(p.split("=", 1) for p in raw.decode().split("\x01") if "=" in p)
        return await self._check(
            server, found.get("user", ""), found.get("auth", "").removeprefix("Bearer ")
        )

    async def auth_OAUTHBEARER(self, server: SMTPD, args: list[str]) -> AuthResult:
        raw = base64.b64decode(args[1]) if len(args) == 2 else await server.challenge_auth("")
        if not isinstance(raw, bytes):
            return AuthResult(success=False, handled=False)
        head, _, rest = raw.decode().partition("\x01")
        user = next((p[2:] for p in head.split(",") if p.startswith("a=")), "")
        found = dict(p.split("=", 1) for p in rest.split("\x01") if "=" in p)
        return await self._check(server, user, found.get("auth", "").removeprefix("Bearer "))

    async def handle_DATA(self, server: SMTPD, session: Session, envelope: Envelope) -> str:
        with self._lock:
            self.messages.append(
                Taken(
                    str(session.auth_data or ""),
                    tuple(envelope.rcpt_tos),
                    bytes(envelope.original_content or b""),
                )
            )
        return "250 2.0.0 OK"


class XOAuth2Smtp:
    """An SMTP server on 127.0.0.1 that takes only AUTH XOAUTH2 / OAUTHBEARER."""

    def __init__(self, auth: AuthServer) -> None:
        self.handler = _Handler(auth)
        self.port = free_port()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # auth without TLS: loopback only
            self._controller = Controller(
                self.handler,
                hostname=HOST,
                port=self.port,
                auth_required=True,
                auth_require_tls=False,
                auth_exclude_mechanism=["PLAIN", "LOGIN"],
                ready_timeout=5.0,
            )

    def start(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    @property
    def messages(self) -> list[Taken]:
        with self.handler._lock:
            return list(self.handler.messages)


@pytest.fixture(scope="module")
def oauth_servers() -> Iterator[tuple[AuthServer, OAuthDovecot, XOAuth2Smtp]]:
    """The three servers, shared by a module's tests (each signs in afresh)."""
    _need_dovecot()
    auth = AuthServer()
    auth.start()
    try:
        with running(auth) as (imap, smtp):
            yield auth, imap, smtp
    finally:
        auth.close()


@pytest.fixture
def fresh_servers(
    oauth_servers: tuple[AuthServer, OAuthDovecot, XOAuth2Smtp],
) -> tuple[AuthServer, OAuthDovecot, XOAuth2Smtp]:
    """The module's servers with the Sent folder emptied: the copies of one test's
    sends must not read, in the next test, as mail the owner wrote to its contacts."""
    oauth_servers[1].empty(SENT_FOLDER)
    return oauth_servers


@contextlib.contextmanager
def running(auth: AuthServer) -> Iterator[tuple[OAuthDovecot, XOAuth2Smtp]]:
    dovecot = OAuthDovecot(auth)
    smtp = XOAuth2Smtp(auth)
    try:
        dovecot.start()
        smtp.start()
        yield dovecot, smtp
    finally:
        with contextlib.suppress(Exception):
            smtp.stop()
        dovecot.close()


def oauth2_config(auth: AuthServer, *, device: bool = True) -> str:
    """The ``[oauth2]`` section of a project signing in at ``auth``."""
    lines = [
        "[oauth2]",
        f'client_id = "{CLIENT_ID}"',
        f'token_url = "{auth.url}/token"',
        f'authorization_url = "{auth.url}/authorize"',
        'scopes = ["mail", "offline_access"]',
    ]
    if device:
        lines.append(f'device_authorization_url = "{auth.url}/device_authorization"')
    return "\n".join(lines) + "\n"


def token_path(project: Path, account: str) -> Path:
    return project / "var" / "tokens" / f"{account}.json"
