"""The HTTP server: uvicorn on a thread of its own, with limits for the open internet.

Theory of operation
-------------------

One process serves the dashboard, ``/healthz``, ``/plan.ics`` and the one-click
unsubscribe links, beside the daemon's ticks (each tick runs its own short event
loop, :mod:`toma.eventloop`). The server gets a long-lived event loop on a thread of
its own: a tick that takes a minute never delays a page, and a slow page never
delays a send. Handlers that read the store open their own instance, as safe
beside the daemon's as two processes are.

uvicorn parses HTTP (h11); what it does not bound, :class:`_Guarded` adds:

- **One deadline per request**, :attr:`Limits.request_deadline` seconds from accept
  to the end of its body, however its bytes arrive (uvicorn's keep-alive timer is
  reset by every byte, so a byte every few seconds would hold a connection
  forever). A client past it gets a 408 and is cut.
- **The head is bounded** (:data:`MAX_HEAD`, answered 431): h11 bounds only what
  stays unparsed between reads. Bodies are bounded by :func:`read_body` (413).
- **Connections are bounded** (:attr:`Limits.max_connections`): when all are taken,
  a newcomer takes the place of the connection that has been sending its request
  the longest, so a flood of slow clients only delays a real request, which takes
  milliseconds, by the time it takes to arrive.
- **One request per connection**: every response says ``Connection: close``, so
  the deadline per connection is a deadline per request, and an unread body can
  never be taken for the next request.

These hooks use uvicorn's h11 protocol class (``conn``, ``cycle``,
``connections``): pyproject pins uvicorn below its next major version.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import threading
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Final

import h11
import uvicorn
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from toma.logs import fields

log = logging.getLogger(__name__)

MAX_BODY: Final = 8 * 1024
MAX_HEAD: Final = 16 * 1024  # the request line and headers
MAX_CONNECTIONS: Final = 256
REQUEST_DEADLINE: Final = 10.0  # seconds from accept to the end of the request's body
SHUTDOWN_GRACE: Final = 3.0  # seconds a request under way may take to finish at stop


@dataclass(frozen=True)
class Limits:
    request_deadline: float = REQUEST_DEADLINE
    max_connections: int = MAX_CONNECTIONS


class BodyTooLarge(Exception):
    """A request body past :data:`MAX_BODY`."""


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request's body, refused past ``limit`` bytes (before it arrives, where declared).

    Raises :class:`BodyTooLarge`, or ``ClientDisconnect`` when the client went (or
    was cut at its deadline) before the end.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


def raw_answer(status: HTTPStatus, text: str) -> bytes:
    """A whole response for a request that never reached the application."""
    body = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{status.phrase}'
        f"</title></head><body><h1>{status.phrase}</h1><p>{text}</p></body></html>"
    ).encode()
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
        f"Date: {formatdate(usegmt=True)}\r\nCache-Control: no-store\r\n\r\n"
    )
    return head.encode("latin-1") + body


_order = itertools.count()


class _Guarded(H11Protocol):
    """uvicorn's h11 protocol with a deadline per request, a bounded head and eviction."""

    limits: Limits = Limits()  # set on a subclass per server

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._accepted = next(_order)
        self._reading = True
        self._head = 0  # bytes of the head seen so far, while it is incomplete
        self._tail = b""
        self._deadline: asyncio.TimerHandle | None = self.loop.call_later(
            self.limits.request_deadline, self._too_slow
        )
        self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and not self._head_fits(data):
            self._refuse(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                "That request's headers were larger than this server reads.",
            )
            return
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            # The whole request is in: the deadline was for receiving it.
            self._reading = False
            self._stop_deadline()

    def _head_fits(self, data: bytes) -> bool:
        seen = self._tail + data
        end = seen.find(b"\r\n\r\n")
        if end >= 0:
            return self._head - len(self._tail) + end + 4 <= MAX_HEAD
        self._head += len(data)
        self._tail = seen[-3:]
        return self._head <= MAX_HEAD

    def _too_slow(self) -> None:
        self._deadline = None
        if not self._reading or self.transport.is_closing():
            return
        log.info("http_request_too_slow", extra=fields(client=_peer(self.client)))
        self._refuse(HTTPStatus.REQUEST_TIMEOUT, "The request took too long to arrive.")

    def _refuse(self, status: HTTPStatus, text: str) -> None:
        self._reading = False
        self._stop_deadline()
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(raw_answer(status, text))
        self.transport.close()

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _make_room(self) -> None:
        if len(self.connections) <= self.limits.max_connections:
            return
        reading = [c for c in self.connections if isinstance(c, _Guarded) and c._reading]
        oldest = min(reading, key=lambda c: c._accepted, default=None)
        victim = oldest if oldest is not None else self
        victim._reading = False
        victim._stop_deadline()
        victim.transport.abort()
        log.debug("http_client_evicted", extra=fields(client=_peer(victim.client)))


def _spelled(name: bytes) -> bytes:
    return b"-".join(part.capitalize() for part in name.split(b"-"))


def _peer(client: tuple[str, int] | None) -> str:
    return client[0] if client else "?"


class ConnectionClose:
    """ASGI middleware: every response closes its connection and carries safe defaults."""

    def __init__(self, app: ASGIApp, defaults: dict[str, str]) -> None:
        self.app = app
        self.defaults = [(k.lower().encode(), v.encode()) for k, v in defaults.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                present = {k for k, _v in headers}
                headers += [(k, v) for k, v in self.defaults if k not in present]
                headers.append((b"connection", b"close"))
                # Names as clients conventionally spell them (Content-Type): some
                # compare them by case.
                message = {**message, "headers": [(_spelled(k), v) for k, v in headers]}
            await send(message)

        # A client cut at its deadline, or gone: nobody to answer.
        with contextlib.suppress(ClientDisconnect):
            await self.app(scope, receive, sending)


class WebServer:
    """An ASGI app served by uvicorn on ``host``:``port`` from a background thread.

    ``port=0`` takes a free port; :attr:`address` says which. The socket is bound in
    :meth:`start`, so a taken address raises OSError there.
    """

    def __init__(
        self,
        app: ASGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        limits: Limits = Limits(),
        name: str = "toma-web",
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.limits = limits
        self.name = name
        self._address: tuple[str, int] | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("the web server is not running")
        return self._address

    @property
    def running(self) -> bool:
        return self._address is not None

    def start(self) -> None:
        if self._thread is not None:
            return
        sock = _bind(self.host, self.port)
        protocol = type("Protocol", (_Guarded,), {"limits": self.limits})
        config = uvicorn.Config(
            self.app,
            http=protocol,
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,  # a URL may hold an unsubscribe or calendar token
            proxy_headers=False,  # the peer is who connected; a header can be forged
            server_header=False,
            timeout_keep_alive=1,
            timeout_graceful_shutdown=SHUTDOWN_GRACE,  # type: ignore[arg-type]
            h11_max_incomplete_event_size=2 * MAX_HEAD,
        )
        server = uvicorn.Server(config)
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            async def serve() -> None:
                task = asyncio.create_task(server.serve(sockets=[sock]))
                while not server.started and not task.done():
                    await asyncio.sleep(0.01)
                started.set()
                await task

            try:
                asyncio.run(serve())
            except BaseException as exc:
                failure.append(exc)
                log.exception("web_server_crashed")
            finally:
                started.set()
                sock.close()

        thread = threading.Thread(target=run, name=self.name, daemon=True)
        thread.start()
        started.wait()
        if failure or not server.started:
            thread.join(5)
            raise OSError(f"the web server did not start: {failure[0] if failure else '?'}")
        host, port = sock.getsockname()[:2]
        self._address = (str(host), int(port))
        self._server, self._thread = server, thread
        log.info("web_server_started", extra=fields(host=host, port=port))

    def stop(self, timeout: float = SHUTDOWN_GRACE + 2) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        server.should_exit = True
        thread.join(timeout)
        self._address = None
        log.info("web_server_stopped")

    def __enter__(self) -> WebServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _bind(host: str, port: int) -> socket.socket:
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _name, address = info[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def scope_client(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""
