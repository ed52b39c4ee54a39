"""The one-click unsubscribe endpoint: a small HTTP server for ``/u/TOKEN``.

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
paths get 404. The path may carry the base URL's own path in front
(``/toma/u/TOKEN`` for ``https://example.com/toma``), so a reverse proxy may pass
the path on as it is or strip the prefix.

The server is the standard library's ``ThreadingHTTPServer`` run in a background
thread: a handful of requests a day need no framework. Connections are capped
(:data:`MAX_CONNECTIONS`) and time out, so a slow or hostile client cannot pile
up threads. Logs carry only the first characters of a token: a full token in a
log file is a working unsubscribe link for whoever reads it.

``on_unsubscribe(address)`` is called **on a server thread**, once per valid
POST. It must be quick and thread-safe — put the address on the daemon's own
queue and return — and idempotent, since a person may press the button twice.
If it raises, the person sees an error page asking them to reply by mail
instead, and the error is logged.
"""

from __future__ import annotations

import html
import logging
import re
import socket
import socketserver
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from toma.unsubscribe import PATH_PREFIX, Unsubscribe

log = logging.getLogger(__name__)

MAX_BODY: Final = 8 * 1024
MAX_CONNECTIONS: Final = 32
REQUEST_TIMEOUT: Final = 10.0  # seconds a client may take to send its request
_SHOWN_TOKEN: Final = 8
_TOKEN_IN_TEXT = re.compile(rf"(/u/[^\s/?#\"']{{1,{_SHOWN_TOKEN}}})[^\s/?#\"']*")

_STYLE: Final = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:34em;"
    "margin:4em auto;padding:0 1em;line-height:1.5;color:#222}"
    "button{font:inherit;padding:.6em 1.2em;border:1px solid #555;border-radius:4px;"
    "background:#fff;cursor:pointer}"
)
_SECURITY_HEADERS: Final = {
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


def _page(title: str, *paragraphs: str, form: str = "") -> bytes:
    body = "".join(f"<p>{paragraph}</p>" for paragraph in paragraphs)
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta name=\"robots\" content=\"noindex\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}{form}</body></html>"
    ).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never holds up stop()
    block_on_close = False

    def __init__(self, address: tuple[str, int], endpoint: UnsubscribeEndpoint) -> None:
        self.endpoint = endpoint
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for the host's full name, which can take
        # seconds on a machine without reverse DNS, and is used by nothing here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            # Full: close at once rather than queue threads without bound.
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            # A client that hung up or stalled: routine on the open internet.
            log.debug("unsubscribe_client_gone client=%s error=%s", client_address[0], error)
            return
        log.exception("unsubscribe_endpoint_error client=%s", client_address[0])


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "toma"
    sys_version = ""
    timeout = REQUEST_TIMEOUT
    # HTTP/1.0: one request per connection, so an unread body can never be taken
    # for the next request.
    protocol_version = "HTTP/1.0"

    # ------------------------------------------------------------------ routing

    def do_GET(self) -> None:
        self._confirm(head=False)

    def do_HEAD(self) -> None:
        self._confirm(head=True)

    def do_POST(self) -> None:
        endpoint = self.server.endpoint
        token = self._token()
        if token is None:
            self._drain()
            self._send(HTTPStatus.NOT_FOUND, _not_found())
            return
        try:
            drained = self._drain()
        except OSError:  # the client went away or stalled: nobody is left to answer
            log.info("unsubscribe_abandoned token=%s", _short(token))
            return
        if not drained:
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                       _page("Too much", "That request was larger than an unsubscribe needs."))
            return
        address = endpoint.unsubscribe.verify(token)
        if address is None:
            log.info("unsubscribe_refused method=POST token=%s", _short(token))
            self._send(HTTPStatus.BAD_REQUEST, _invalid())
            return
        try:
            endpoint.on_unsubscribe(address)
        except Exception:
            log.exception("unsubscribe_callback_failed token=%s", _short(token))
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, _page(
                "Something went wrong",
                "Your request could not be recorded just now. Please reply to the email "
                "with the word “unsubscribe”, and it will be done by hand.",
            ))
            return
        log.info("unsubscribe_accepted token=%s", _short(token))
        self._send(HTTPStatus.OK, _page(
            "You are unsubscribed",
            f"<strong>{html.escape(address)}</strong> will not receive these emails any more.",
            "Thank you for having read them. If this was a mistake, just reply to any of "
            "the emails and say so.",
        ))

    def do_PUT(self) -> None:
        self._not_allowed()

    def do_DELETE(self) -> None:
        self._not_allowed()

    def do_PATCH(self) -> None:
        self._not_allowed()

    # ------------------------------------------------------------------ pages

    def _confirm(self, *, head: bool) -> None:
        token = self._token()
        if token is None:
            self._send(HTTPStatus.NOT_FOUND, _not_found(), head=head)
            return
        address = self.server.endpoint.unsubscribe.verify(token)
        if address is None:
            log.info("unsubscribe_refused method=GET token=%s", _short(token))
            self._send(HTTPStatus.BAD_REQUEST, _invalid(), head=head)
            return
        shown = html.escape(address)
        # No action attribute: the form posts to the URL the browser shows, which
        # is right behind any proxy.
        form = (
            "<form method=\"post\">"
            "<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">"
            f"<button type=\"submit\">Unsubscribe {shown}</button></form>"
        )
        self._send(HTTPStatus.OK, _page(
            "Unsubscribe?",
            f"Press the button to stop these emails to <strong>{shown}</strong>.",
            form=form,
        ), head=head)

    def _not_allowed(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, _page("Not allowed", "Use GET or POST."),
                   extra={"Allow": "GET, HEAD, POST"})

    # ------------------------------------------------------------------ plumbing

    def _token(self) -> str | None:
        path = urlsplit(self.path).path
        prefixes = [PATH_PREFIX]
        base = self.server.endpoint.unsubscribe.base_url
        if base:
            mounted = urlsplit(base).path.rstrip("/")
            if mounted:
                prefixes.append(mounted + PATH_PREFIX)
        # Longest first: a base path of "/u" must not leave "u/TOKEN" behind.
        for prefix in sorted(prefixes, key=len, reverse=True):
            if path.startswith(prefix):
                token = unquote(path[len(prefix):])
                return token if token and "/" not in token else None
        return None

    def _drain(self) -> bool:
        """Read the body; False if it is larger than :data:`MAX_BODY` (then it is not read)."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return False
        if length < 0 or length > MAX_BODY or self.headers.get("Transfer-Encoding"):
            return False
        if length:
            self.rfile.read(length)
        return True

    def _send(self, status: HTTPStatus, body: bytes, *, head: bool = False,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**_SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # Request lines and errors may quote the path, and with it the token.
        log.debug("unsubscribe_http client=%s %s", self.client_address[0],
                  redact(format % args))


def _short(token: str) -> str:
    return token[:_SHOWN_TOKEN] + "…"


def _invalid() -> bytes:
    return _page(
        "This link does not work",
        "The unsubscribe link is incomplete or was changed on the way. Please copy the whole "
        "link from the email, or simply reply to the email with the word “unsubscribe”.",
    )


def _not_found() -> bytes:
    return _page("Not found", "There is nothing here.")


class UnsubscribeEndpoint:
    """Serves ``/u/TOKEN`` on ``host``:``port`` from a background thread.

    ``port=0`` takes a free port; :attr:`address` says which. ``on_unsubscribe``
    runs on a server thread (see the module docstring).
    """

    def __init__(
        self,
        unsubscribe: Unsubscribe,
        on_unsubscribe: Callable[[str], None],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.unsubscribe = unsubscribe
        self.on_unsubscribe = on_unsubscribe
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the server listens on; only while started."""
        if self._server is None:
            raise RuntimeError("the unsubscribe endpoint is not running")
        host, port = self._server.server_address[:2]
        return (str(host), int(port))

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Bind and serve in a background thread; OSError if the address is taken."""
        if self._server is not None:
            return
        server = _Server((self.host, self.port), self)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                  name="toma-unsubscribe-endpoint", daemon=True)
        thread.start()
        self._server, self._thread = server, thread
        host, port = self.address
        log.info("unsubscribe_endpoint_started host=%s port=%d", host, port)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting requests and close the socket; requests in flight may finish."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout)
        log.info("unsubscribe_endpoint_stopped")

    def __enter__(self) -> UnsubscribeEndpoint:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
