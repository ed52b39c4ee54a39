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

**Recorded, then answered.** ``on_unsubscribe(address)`` must make the
unsubscribe durable before it returns (:class:`toma.web.oneclick.OneClick`
commits it to the store in a transaction of its own). Only then does the
person read "You are unsubscribed"; if it raises or takes longer than
:data:`RECORD_TIMEOUT`, they get a 503 asking them to try again, never a
success. It runs on one worker thread, so calls never overlap (a store
instance is not thread-safe), and requests for an address already being
recorded wait for that one call. It must be idempotent: people press twice.

**Slow clients.** The server is an asyncio server on its own thread, with h11
(a sans-I/O HTTP/1.1 parser) reading the request: an idle or trickling
connection costs a few KB and no thread. Every request has one deadline,
:data:`REQUEST_DEADLINE` seconds from accept to the end of its body, however
its bytes arrive (a timeout per read is no defence: a byte every few seconds
resets it forever); a client past it is cut with a 408. The request line and
headers are bounded (:data:`MAX_HEAD`), the body too. At most
:data:`MAX_CONNECTIONS` connections are open; when all are taken, a newcomer
takes the place of the connection that has been sending its request the
longest, so a flood of slow clients only ever delays a real request, which
takes milliseconds, by the time it takes to arrive. (uvicorn was considered:
its keep-alive timeout is reset by every byte received and nothing there
bounds the time to receive a request, so it would need the same deadline
wrapped around its private protocol classes.)

Each response closes its connection (``Connection: close``): one request per
connection, so an unread body can never be taken for the next request. Logs
carry only the first characters of a token: a full token in a log file is a
working unsubscribe link for whoever reads it.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Final
from urllib.parse import unquote, urlsplit

import h11

from toma.logs import fields
from toma.mail.unsubscribe import PATH_PREFIX, Unsubscribe

log = logging.getLogger(__name__)

MAX_BODY: Final = 8 * 1024
MAX_HEAD: Final = 16 * 1024  # the request line and headers
MAX_CONNECTIONS: Final = 256
REQUEST_DEADLINE: Final = 10.0  # seconds from accept to the end of the request's body
WRITE_TIMEOUT: Final = 10.0  # seconds to hand a response of a few KB to the client
RECORD_TIMEOUT: Final = 30.0  # seconds on_unsubscribe may take before the person is told to retry
_READ_CHUNK: Final = 4096
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
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}{form}</body></html>"
    ).encode()


@dataclass(frozen=True)
class _Request:
    method: str
    target: str


@dataclass(frozen=True)
class _Answer:
    status: HTTPStatus
    body: bytes
    head: bool = False
    extra: tuple[tuple[str, str], ...] = ()

    def encode(self) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status.value} {self.status.phrase}",
            "Content-Type: text/html; charset=utf-8",
            f"Content-Length: {len(self.body)}",
            "Connection: close",
            f"Date: {formatdate(usegmt=True)}",
            "Server: toma",
            *(f"{name}: {value}" for name, value in _SECURITY_HEADERS.items()),
            *(f"{name}: {value}" for name, value in self.extra),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if self.head else head + self.body


class _Refused(Exception):
    """The request cannot be read to its end: answer this and close."""

    def __init__(self, answer: _Answer) -> None:
        super().__init__(answer.status.phrase)
        self.answer = answer


_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


async def _read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Request:
    """Read one request to the end of its body (bounded) with h11; the caller sets the deadline."""
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    request: h11.Request | None = None
    received = body = 0
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError as exc:
            if request is None and not received and exc.error_status_hint == 400:
                raise ConnectionResetError("closed before a request") from None
            status = HTTPStatus(exc.error_status_hint)
            raise _Refused(
                _Answer(status, _page(status.phrase, "That request was not understood."))
            ) from None
        if event is h11.NEED_DATA:
            if request is None and received >= MAX_HEAD:
                # h11 bounds only what stays unparsed between reads; the head as a whole
                # is bounded here.
                status = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
                raise _Refused(
                    _Answer(
                        status,
                        _page(
                            "Too much",
                            "That request's headers were larger than an unsubscribe needs.",
                        ),
                    )
                )
            data = await reader.read(_READ_CHUNK)
            received += len(data)
            connection.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            request = event
            length = _content_length(event)
            if length is not None and length > MAX_BODY:
                raise _Refused(_too_large())
            if connection.they_are_waiting_for_100_continue:
                writer.write(_CONTINUE)
        elif isinstance(event, h11.Data):
            body += len(event.data)
            if body > MAX_BODY:
                raise _Refused(_too_large())
        elif isinstance(event, h11.EndOfMessage) and request is not None:
            return _Request(
                request.method.decode("ascii", "replace"), request.target.decode("ascii", "replace")
            )
        else:  # ConnectionClosed: h11 gives a Request before any EndOfMessage
            raise ConnectionResetError("closed before a request")


def _content_length(request: h11.Request) -> int | None:
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)  # h11 has checked it is a number
    return None


def _too_large() -> _Answer:
    return _Answer(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        _page("Too much", "That request was larger than an unsubscribe needs."),
    )


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


def _timed_out() -> bytes:
    return _page("Too slow", "The request took too long to arrive. Please try again.")


def _try_again() -> bytes:
    return _page(
        "Please try again",
        "Your request could not be recorded just now, so nothing has changed yet. Please "
        "try again in a minute, or reply to the email with the word “unsubscribe”, and it "
        "will be done by hand.",
    )


class UnsubscribeEndpoint:
    """Serves ``/u/TOKEN`` on ``host``:``port`` from a background thread.

    ``port=0`` takes a free port; :attr:`address` says which.
    ``on_unsubscribe`` records an unsubscribe durably, on a worker thread (see
    the module docstring). ``request_deadline`` and ``max_connections`` are
    there for tests; the defaults are meant for the internet.
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
        self.unsubscribe = unsubscribe
        self.on_unsubscribe = on_unsubscribe
        self.host = host
        self.port = port
        self.request_deadline = request_deadline
        self.max_connections = max_connections
        self._address: tuple[str, int] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._recorder: ThreadPoolExecutor | None = None
        # Open connections, oldest first; True while the request is still being read.
        self._open: dict[asyncio.StreamWriter, bool] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._recording: dict[str, asyncio.Future[None]] = {}

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the server listens on; only while started."""
        if self._address is None:
            raise RuntimeError("the unsubscribe endpoint is not running")
        return self._address

    @property
    def running(self) -> bool:
        return self._address is not None

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        """Bind and serve in a background thread; OSError if the address is taken."""
        if self._thread is not None:
            return
        started = threading.Event()
        failure: list[BaseException] = []
        self._recorder = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="toma-unsubscribe-record"
        )
        thread = threading.Thread(
            target=self._run, args=(started, failure), name="toma-unsubscribe-endpoint", daemon=True
        )
        thread.start()
        started.wait()
        if failure:
            thread.join()
            self._recorder.shutdown(wait=False)
            self._recorder = None
            raise failure[0]
        self._thread = thread
        host, port = self.address
        log.info("unsubscribe_endpoint_started", extra=fields(host=host, port=port))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting requests, close every connection, and end the thread."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        self._thread = None
        if loop is not None and stopping is not None:
            loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout)
        if self._recorder is not None:
            # A record under way finishes on its own: a transaction is whole or absent.
            self._recorder.shutdown(wait=False, cancel_futures=True)
            self._recorder = None
        self._address = None
        log.info("unsubscribe_endpoint_stopped")

    def __enter__(self) -> UnsubscribeEndpoint:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, started: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(started))
        except BaseException as exc:
            if not started.is_set():
                failure.append(exc)
            else:
                log.exception("unsubscribe_endpoint_crashed")
        finally:
            started.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None

    async def _serve(self, started: threading.Event) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(
            self._connection, self.host, self.port, limit=MAX_HEAD + MAX_BODY
        )
        host, port = server.sockets[0].getsockname()[:2]
        self._address = (str(host), int(port))
        started.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for writer in list(self._open):
                writer.transport.abort()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=1.0)
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=1.0)

    # ------------------------------------------------------------------ one connection

    def _admit(self, writer: asyncio.StreamWriter) -> bool:
        if len(self._open) >= self.max_connections:
            # Full: the connection that has been sending its request the longest
            # makes room. Those past reading are answered within moments anyway.
            oldest = next((w for w, reading in self._open.items() if reading), None)
            if oldest is None:
                return False
            del self._open[oldest]
            oldest.transport.abort()
            log.debug("unsubscribe_client_evicted")
        self._open[writer] = True
        return True

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        if not self._admit(writer):
            writer.transport.abort()
            if task is not None:
                self._tasks.discard(task)
            return
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) else "?"
        try:
            await self._exchange(reader, writer, client)
        except (ConnectionError, TimeoutError, OSError) as exc:
            # A client that hung up or stalled: routine on the open internet.
            log.debug("unsubscribe_client_gone", extra=fields(client=client, error=str(exc)))
        except Exception:
            log.exception("unsubscribe_endpoint_error", extra=fields(client=client))
        finally:
            self._open.pop(writer, None)
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: str
    ) -> None:
        try:
            async with asyncio.timeout(self.request_deadline):
                request = await _read_request(reader, writer)
        except TimeoutError:
            log.info("unsubscribe_request_too_slow", extra=fields(client=client))
            writer.write(_Answer(HTTPStatus.REQUEST_TIMEOUT, _timed_out()).encode())
            return
        except _Refused as refused:
            answer = refused.answer
            log.debug("unsubscribe_http", extra=fields(client=client, status=answer.status.value))
        else:
            if writer in self._open:
                self._open[writer] = False
            answer = await self._answer(request)
            log.debug(
                "unsubscribe_http",
                extra=fields(
                    client=client,
                    method=request.method,
                    target=redact(request.target),
                    status=answer.status.value,
                ),
            )
        async with asyncio.timeout(WRITE_TIMEOUT):
            writer.write(answer.encode())
            await writer.drain()

    # ------------------------------------------------------------------ pages

    async def _answer(self, request: _Request) -> _Answer:
        if request.method in ("GET", "HEAD"):
            return self._confirm(request, head=request.method == "HEAD")
        if request.method == "POST":
            return await self._post(request)
        return _Answer(
            HTTPStatus.METHOD_NOT_ALLOWED,
            _page("Not allowed", "Use GET or POST."),
            head=request.method == "HEAD",
            extra=(("Allow", "GET, HEAD, POST"),),
        )

    def _confirm(self, request: _Request, *, head: bool) -> _Answer:
        token = self._token(request.target)
        if token is None:
            return _Answer(HTTPStatus.NOT_FOUND, _not_found(), head=head)
        address = self.unsubscribe.verify(token)
        if address is None:
            log.info("unsubscribe_refused", extra=fields(method="GET", token=_short(token)))
            return _Answer(HTTPStatus.BAD_REQUEST, _invalid(), head=head)
        shown = html.escape(address)
        # No action attribute: the form posts to the URL the browser shows, which
        # is right behind any proxy.
        form = (
            '<form method="post">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            f'<button type="submit">Unsubscribe {shown}</button></form>'
        )
        return _Answer(
            HTTPStatus.OK,
            _page(
                "Unsubscribe?",
                f"Press the button to stop these emails to <strong>{shown}</strong>.",
                form=form,
            ),
            head=head,
        )

    async def _post(self, request: _Request) -> _Answer:
        token = self._token(request.target)
        if token is None:
            return _Answer(HTTPStatus.NOT_FOUND, _not_found())
        address = self.unsubscribe.verify(token)
        if address is None:
            log.info("unsubscribe_refused", extra=fields(method="POST", token=_short(token)))
            return _Answer(HTTPStatus.BAD_REQUEST, _invalid())
        try:
            await asyncio.wait_for(asyncio.shield(self._record(address)), RECORD_TIMEOUT)
        except Exception:
            log.exception("unsubscribe_callback_failed", extra=fields(token=_short(token)))
            return _Answer(
                HTTPStatus.SERVICE_UNAVAILABLE, _try_again(), extra=(("Retry-After", "60"),)
            )
        log.info("unsubscribe_accepted", extra=fields(token=_short(token)))
        return _Answer(
            HTTPStatus.OK,
            _page(
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
        # The recorder is set for as long as the loop runs.
        future = loop.run_in_executor(self._recorder, self.on_unsubscribe, address)
        self._recording[address] = future
        future.add_done_callback(lambda done: self._forget_record(address, done))
        return future

    def _forget_record(self, address: str, done: asyncio.Future[None]) -> None:
        if self._recording.get(address) is done:
            del self._recording[address]
        if not done.cancelled():
            done.exception()  # retrieved here, reported by each waiting request

    def _token(self, target: str) -> str | None:
        path = urlsplit(target).path
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
