"""The one-click unsubscribe pages: ``/u/TOKEN``, served without login.

Theory of operation
-------------------

``GET /u/TOKEN`` never unsubscribes anybody: mail scanners and link previews
fetch every URL in a message, and a person must not be unsubscribed by their
spam filter. It shows a page with one button, which POSTs back to the same URL.

``POST /u/TOKEN`` unsubscribes: that is what a mail client sends for RFC 8058
one-click (body ``List-Unsubscribe=One-Click``) and what the button sends. The
body is read (up to :data:`MAX_BODY` bytes) and otherwise ignored: the token is
the authority, and a client that encodes the body differently must still work.

A token that does not verify gets a plain 400 page and nothing is called; other
paths are not ours (:meth:`Unsubscriber.token` says None). The path may carry the
base URL's own path in front (``/toma/u/TOKEN`` for ``https://example.com/toma``),
so a reverse proxy may pass the path on as it is or strip the prefix.

**Recorded, then answered.** ``on_unsubscribe(address)`` must make the
unsubscribe durable before it returns (:class:`toma.web.oneclick.OneClick`
commits it to the store in a transaction of its own). Only then does the
person read "You are unsubscribed"; if it raises or takes longer than
:data:`RECORD_TIMEOUT`, they get a 503 asking them to try again, never a
success. It runs on one worker thread, so calls never overlap (a store
instance is not thread-safe), and requests for an address already being
recorded wait for that one call. It must be idempotent: people press twice.

Slow clients, bounded heads and bodies, and the number of connections are the
server's business (:mod:`toma.web.server`). Logs carry only the first
characters of a token: a full token in a log file is a working unsubscribe link
for whoever reads it.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Final
from urllib.parse import unquote, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from toma.logs import fields
from toma.mail.unsubscribe import PATH_PREFIX, Unsubscribe
from toma.web.server import (
    MAX_BODY,
    MAX_CONNECTIONS,
    MAX_HEAD,
    REQUEST_DEADLINE,
    BodyTooLarge,
    ConnectionClose,
    Limits,
    WebServer,
    read_body,
)

__all__ = [
    "MAX_BODY",
    "MAX_CONNECTIONS",
    "MAX_HEAD",
    "RECORD_TIMEOUT",
    "REQUEST_DEADLINE",
    "UnsubscribeEndpoint",
    "Unsubscriber",
    "redact",
]

log = logging.getLogger(__name__)

RECORD_TIMEOUT: Final = 30.0  # seconds on_unsubscribe may take before the person is told to retry
_SHOWN_TOKEN: Final = 8
_TOKEN_IN_TEXT = re.compile(rf"(/u/[^\s/?#\"']{{1,{_SHOWN_TOKEN}}})[^\s/?#\"']*")

_STYLE: Final = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:34em;"
    "margin:4em auto;padding:0 1em;line-height:1.5;color:#222}"
    "button{font:inherit;padding:.6em 1.2em;border:1px solid #555;border-radius:4px;"
    "background:#fff;cursor:pointer}"
)
SECURITY_HEADERS: Final = {
    # The token is in the URL: it must not travel on as a Referer or sit in a cache.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


def redact(text: str) -> str:
    """``text`` with every ``/u/TOKEN`` cut to its first characters."""
    return _TOKEN_IN_TEXT.sub(r"\1…", text)


def page(title: str, *paragraphs: str, form: str = "") -> str:
    body = "".join(f"<p>{paragraph}</p>" for paragraph in paragraphs)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}{form}</body></html>"
    )


def answer(status: HTTPStatus, text: str, *, extra: dict[str, str] | None = None) -> Response:
    return HTMLResponse(
        text, status_code=status.value, headers={**SECURITY_HEADERS, **(extra or {})}
    )


def _short(token: str) -> str:
    return token[:_SHOWN_TOKEN] + "…"


_INVALID: Final = page(
    "This link does not work",
    "The unsubscribe link is incomplete or was changed on the way. Please copy the whole "
    "link from the email, or simply reply to the email with the word “unsubscribe”.",
)
NOT_FOUND: Final = page("Not found", "There is nothing here.")
_TRY_AGAIN: Final = page(
    "Please try again",
    "Your request could not be recorded just now, so nothing has changed yet. Please "
    "try again in a minute, or reply to the email with the word “unsubscribe”, and it "
    "will be done by hand.",
)
_TOO_LARGE: Final = page("Too much", "That request was larger than an unsubscribe needs.")


class Unsubscriber:
    """Answers ``/u/TOKEN``; ``on_unsubscribe`` records durably on a worker thread."""

    def __init__(self, unsubscribe: Unsubscribe, on_unsubscribe: Callable[[str], None]) -> None:
        self.unsubscribe = unsubscribe
        self.on_unsubscribe = on_unsubscribe
        self._recorder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="toma-unsubscribe")
        self._recording: dict[str, asyncio.Future[None]] = {}

    def close(self) -> None:
        # A record under way finishes on its own: a transaction is whole or absent.
        self._recorder.shutdown(wait=False, cancel_futures=True)

    def token(self, path: str) -> str | None:
        """The token of an unsubscribe path, or None when the path is not one."""
        prefixes = [PATH_PREFIX]
        base = self.unsubscribe.base_url
        if base:
            mounted = urlsplit(base).path.rstrip("/")
            if mounted:
                prefixes.append(mounted + PATH_PREFIX)
        # Longest first: a base path of "/u" must not leave "u/TOKEN" behind.
        for prefix in sorted(prefixes, key=len, reverse=True):
            if path.startswith(prefix):
                token = unquote(path[len(prefix) :])
                return token if token and "/" not in token else None
        return None

    async def __call__(self, request: Request) -> Response:
        method = request.method
        token = self.token(request.scope.get("raw_path", b"").decode("ascii", "replace"))
        if token is None:
            response = answer(HTTPStatus.NOT_FOUND, NOT_FOUND)
        elif method in ("GET", "HEAD"):
            response = self._confirm(token)
        elif method == "POST":
            response = await self._post(request, token)
        else:
            response = answer(
                HTTPStatus.METHOD_NOT_ALLOWED,
                page("Not allowed", "Use GET or POST."),
                extra={"Allow": "GET, HEAD, POST"},
            )
        log.debug(
            "unsubscribe_http",
            extra=fields(
                client=request.client.host if request.client else "?",
                method=method,
                target=redact(request.url.path),
                status=response.status_code,
            ),
        )
        return response

    def _confirm(self, token: str) -> Response:
        address = self.unsubscribe.verify(token)
        if address is None:
            log.info("unsubscribe_refused", extra=fields(method="GET", token=_short(token)))
            return answer(HTTPStatus.BAD_REQUEST, _INVALID)
        shown = html.escape(address)
        # No action attribute: the form posts to the URL the browser shows, which
        # is right behind any proxy.
        form = (
            '<form method="post">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            f'<button type="submit">Unsubscribe {shown}</button></form>'
        )
        return answer(
            HTTPStatus.OK,
            page(
                "Unsubscribe?",
                f"Press the button to stop these emails to <strong>{shown}</strong>.",
                form=form,
            ),
        )

    async def _post(self, request: Request, token: str) -> Response:
        try:
            await read_body(request)
        except BodyTooLarge:
            return answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _TOO_LARGE)
        address = self.unsubscribe.verify(token)
        if address is None:
            log.info("unsubscribe_refused", extra=fields(method="POST", token=_short(token)))
            return answer(HTTPStatus.BAD_REQUEST, _INVALID)
        try:
            await asyncio.wait_for(asyncio.shield(self._record(address)), RECORD_TIMEOUT)
        except Exception:
            log.exception("unsubscribe_callback_failed", extra=fields(token=_short(token)))
            return answer(HTTPStatus.SERVICE_UNAVAILABLE, _TRY_AGAIN, extra={"Retry-After": "60"})
        log.info("unsubscribe_accepted", extra=fields(token=_short(token)))
        return answer(
            HTTPStatus.OK,
            page(
                "You are unsubscribed",
                f"<strong>{html.escape(address)}</strong> will not receive these emails any more.",
                "Thank you for having read them. If this was a mistake, just reply to any of "
                "the emails and say so.",
            ),
        )

    def _record(self, address: str) -> asyncio.Future[None]:
        """``on_unsubscribe(address)`` on the worker thread; one call at a time per address."""
        running = self._recording.get(address)
        if running is not None and not running.done():
            return running
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._recorder, self.on_unsubscribe, address)
        self._recording[address] = future
        future.add_done_callback(lambda done: self._forget_record(address, done))
        return future

    def _forget_record(self, address: str, done: asyncio.Future[None]) -> None:
        if self._recording.get(address) is done:
            del self._recording[address]
        if not done.cancelled():
            done.exception()  # retrieved here, reported by each waiting request


def unsubscribe_only(unsubscriber: Unsubscriber) -> ASGIApp:
    """An ASGI app that serves the unsubscribe paths and 404 everywhere else."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await unsubscriber(Request(scope, receive))
        await response(scope, receive, send)

    return ConnectionClose(app, SECURITY_HEADERS)


class UnsubscribeEndpoint(WebServer):
    """Only ``/u/TOKEN`` on ``host``:``port``, from a background thread.

    ``request_deadline`` and ``max_connections`` are there for tests; the
    defaults are meant for the internet. The dashboard serves the same paths
    (:func:`toma.web.app.build`).
    """

    def __init__(
        self,
        unsubscribe: Unsubscribe,
        on_unsubscribe: Callable[[str], None],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        request_deadline: float = REQUEST_DEADLINE,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.unsubscriber = Unsubscriber(unsubscribe, on_unsubscribe)
        super().__init__(
            unsubscribe_only(self.unsubscriber),
            host,
            port,
            limits=Limits(request_deadline, max_connections),
            name="toma-unsubscribe-endpoint",
        )

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        self.unsubscriber.close()
