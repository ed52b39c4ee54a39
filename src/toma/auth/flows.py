"""Talking to the token endpoint, through Authlib: device flow, loopback redirect, refresh.

Authlib's ``OAuth2Session`` (over requests) does the protocol: client
authentication, the grant requests, PKCE, and its errors carry the endpoint's
``error`` code. What it answers is checked again by :func:`toma.auth.tokens.from_answer`.

Sign-in (``toma auth login``)::

    device flow (RFC 8628)      the provider has a device endpoint: show a code and
                                an address, poll the token endpoint every
                                ``interval`` s until the person approved it
    loopback redirect (RFC 8252) otherwise: a one-shot HTTP listener on 127.0.0.1,
                                an authorisation address with PKCE (S256) and a
                                state; the browser comes back with the code

A refresh refused with ``invalid_grant`` (revoked, expired, spent) or a client
the endpoint no longer knows is :class:`SignInNeeded`; anything else going
wrong on the way is :class:`TokenUnavailable`, worth trying again later.
"""

from __future__ import annotations

import html
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError

from toma.auth.errors import AuthError, TokenUnavailable, sign_in_needed
from toma.auth.tokens import BadTokenAnswer, Token, from_answer
from toma.config import OAuth2

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
HTTP_TIMEOUT = 30.0
# What a token endpoint says when the refresh token or the app is no good any more.
_SIGNED_OUT = {"invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope"}


def session(oauth2: OAuth2, *, redirect_uri: str | None = None) -> OAuth2Session:
    secret = oauth2.client_secret.reveal()
    client = OAuth2Session(
        client_id=oauth2.client_id,
        client_secret=secret,
        # A public client (an installed app without a secret) names itself in the body.
        token_endpoint_auth_method="client_secret_post" if secret else "none",
        scope=" ".join(oauth2.scopes) or None,
        redirect_uri=redirect_uri,
        default_timeout=HTTP_TIMEOUT,
    )
    # Only the config decides what is trusted, not the environment's proxies or bundles.
    client.trust_env = False
    if oauth2.ca_file is not None:
        client.verify = str(oauth2.ca_file)
    return client


def refresh(oauth2: OAuth2, token: Token, now: datetime) -> Token:
    """A new access token for ``token``'s refresh token."""
    with session(oauth2) as client:
        try:
            answer = client.refresh_token(oauth2.token_url, refresh_token=token.refresh_token)
        except OAuthError as exc:
            if exc.error in _SIGNED_OUT:
                raise sign_in_needed(
                    oauth2.account, f"no longer works ({exc.error})", key="oauth2"
                ) from None
            raise TokenUnavailable(
                f"{oauth2.token_url} refused to refresh the token ({exc.error})", key="oauth2"
            ) from None
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise TokenUnavailable(
                f"{oauth2.token_url} answered {status} to the refresh", key="oauth2"
            ) from None
        except (requests.RequestException, ValueError) as exc:
            raise TokenUnavailable(
                f"cannot reach {oauth2.token_url}: {type(exc).__name__}", key="oauth2"
            ) from None
    return _checked(oauth2, answer, now, previous=token)


def _checked(
    oauth2: OAuth2, answer: Mapping[str, Any], now: datetime, *, previous: Token | None = None
) -> Token:
    try:
        return from_answer(answer, now, previous=previous)
    except BadTokenAnswer as exc:
        raise TokenUnavailable(f"{oauth2.token_url} answered with {exc}", key="oauth2") from None


# --- device flow ----------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceCode:
    """What the person is shown, and what toma polls with."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    interval: float
    expires_in: float


def start_device(oauth2: OAuth2) -> DeviceCode:
    """Ask the device authorisation endpoint for a code (RFC 8628 section 3.1)."""
    with session(oauth2) as client:
        try:
            answer = client.post(
                oauth2.device_authorization_url,
                data={"client_id": oauth2.client_id, "scope": " ".join(oauth2.scopes)},
                withhold_token=True,
            )
            doc = answer.json()
        except (requests.RequestException, ValueError) as exc:
            raise AuthError(
                f"cannot reach {oauth2.device_authorization_url}: {type(exc).__name__}",
                key="oauth2.device_authorization_url",
            ) from None
    if not answer.ok or not isinstance(doc, dict):
        error = doc.get("error") if isinstance(doc, dict) else None
        raise AuthError(
            f"{oauth2.device_authorization_url} refused the sign-in "
            f"({error or answer.status_code})",
            key="oauth2.device_authorization_url",
        )
    try:
        uri = str(doc.get("verification_uri") or doc["verification_url"])  # Google says _url
        return DeviceCode(
            device_code=str(doc["device_code"]),
            user_code=str(doc["user_code"]),
            verification_uri=uri,
            verification_uri_complete=str(doc.get("verification_uri_complete", "")),
            # RFC 8628 says 5 s when absent; a shorter one is taken, but not a busy loop.
            interval=min(max(float(doc.get("interval", 5)), 0.1), 60.0),
            expires_in=min(max(float(doc.get("expires_in", 900)), 1.0), 3600.0),
        )
    except (KeyError, TypeError, ValueError):
        raise AuthError(
            f"{oauth2.device_authorization_url} answered without a device code",
            key="oauth2.device_authorization_url",
        ) from None


def finish_device(
    oauth2: OAuth2,
    code: DeviceCode,
    *,
    clock: Callable[[], datetime],
    wait: Callable[[float], None],
) -> Token:
    """Poll the token endpoint until the person approved (or refused, or it expired)."""
    interval = code.interval
    started = clock()
    with session(oauth2) as client:
        while True:
            now = clock()
            if (now - started).total_seconds() > code.expires_in:
                raise AuthError("the code expired before it was approved: run the login again")
            try:
                answer = client.fetch_token(
                    oauth2.token_url, grant_type=DEVICE_GRANT, device_code=code.device_code
                )
            except OAuthError as exc:
                if exc.error == "authorization_pending":
                    wait(interval)
                    continue
                if exc.error == "slow_down":
                    interval += 5  # RFC 8628 section 3.5
                    wait(interval)
                    continue
                raise AuthError(f"the sign-in did not complete ({exc.error})") from None
            except (requests.RequestException, ValueError) as exc:
                raise AuthError(f"cannot reach {oauth2.token_url}: {type(exc).__name__}") from None
            return _checked(oauth2, answer, clock())


# --- loopback redirect ----------------------------------------------------------------


class _Redirect(BaseHTTPRequestHandler):
    server: _Listener

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        found = {key: values[0] for key, values in query.items() if values}
        if found.get("state") != self.server.state:
            self._answer(400, "This is not the sign-in toma is waiting for.")
            return
        self.server.result = found
        self._answer(200, "toma is signed in. You can close this page.")
        self.server.done.set()

    def _answer(self, status: int, text: str) -> None:
        body = f"<!doctype html><title>toma</title><p>{html.escape(text)}</p>\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line holds the code: keep it out of the terminal


class _Listener(ThreadingHTTPServer):
    state = ""
    result: dict[str, str] | None = None

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Redirect)
        self.done = threading.Event()


def loopback_login(
    oauth2: OAuth2,
    *,
    show: Callable[[str], None],
    clock: Callable[[], datetime],
    timeout: float = 600.0,
) -> Token:
    """Sign in through the browser: listen on 127.0.0.1, show the address, wait for the code."""
    if not oauth2.authorization_url:
        raise AuthError(
            "this provider has no device flow and [oauth2] gives no authorization_url",
            key="oauth2.authorization_url",
        )
    with _Listener(oauth2.redirect_port) as listener:
        redirect_uri = f"http://127.0.0.1:{listener.server_address[1]}/"
        listener.state = secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        thread = threading.Thread(target=listener.serve_forever, daemon=True)
        thread.start()
        try:
            with session(oauth2, redirect_uri=redirect_uri) as client:
                url, _state = client.create_authorization_url(
                    oauth2.authorization_url,
                    state=listener.state,
                    code_verifier=verifier,
                    access_type="offline",  # Google: give a refresh token
                    prompt="consent",
                )
                show(url)
                if not listener.done.wait(timeout):
                    raise AuthError("no answer from the browser in time: run the login again")
                found = listener.result or {}
                if "code" not in found:
                    raise AuthError(f"the sign-in was refused ({found.get('error', 'no code')})")
                try:
                    answer = client.fetch_token(
                        oauth2.token_url,
                        grant_type="authorization_code",
                        code=found["code"],
                        redirect_uri=redirect_uri,
                        code_verifier=verifier,
                    )
                except OAuthError as exc:
                    raise AuthError(f"the sign-in did not complete ({exc.error})") from None
                except (requests.RequestException, ValueError) as exc:
                    raise AuthError(
                        f"cannot reach {oauth2.token_url}: {type(exc).__name__}"
                    ) from None
        finally:
            listener.shutdown()
            thread.join(5)
    return _checked(oauth2, answer, clock())
