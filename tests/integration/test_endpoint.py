"""The one-click endpoint on 127.0.0.1: GET shows a page, only POST unsubscribes."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from toma.config import load_config
from toma.core.contacts import make_contact
from toma.core.suppression import Reason
from toma.logs import TextFormatter
from toma.mail.unsubscribe import Unsubscribe, unsubscriber
from toma.store import CONTACTS, SUPPRESSION, open_store
from toma.store.records import contacts as addressbook
from toma.timeutil import FixedClock
from toma.web.endpoint import MAX_BODY, UnsubscribeEndpoint, redact
from toma.web.oneclick import OneClick

from .conftest import free_port
from .projects import make_project

HOST = "127.0.0.1"
ADDRESS = "mira.keller@example.org"
SECRET = b"s" * 32


@dataclass
class Recorder:
    """The callback: records addresses and the thread it ran on; can be told to fail."""

    calls: list[str] = field(default_factory=list)
    threads: list[str] = field(default_factory=list)
    fail: bool = False

    def __call__(self, address: str) -> None:
        if self.fail:
            raise RuntimeError("the store is unavailable")
        self.calls.append(address)
        self.threads.append(threading.current_thread().name)


@dataclass
class Served:
    endpoint: UnsubscribeEndpoint
    unsubscribe: Unsubscribe
    recorder: Recorder

    @property
    def base(self) -> str:
        host, port = self.endpoint.address
        return f"http://{host}:{port}"

    def link(self, address: str = ADDRESS) -> str:
        return f"{self.base}/u/{self.unsubscribe.token(address)}"


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    headers: dict[str, str]


def request(
    url: str,
    *,
    method: str = "GET",
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    # http on 127.0.0.1 only: every URL here is built from the endpoint's address.
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return Answer(response.status, response.read().decode(), dict(response.headers))
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, error.read().decode(), dict(error.headers))


def one_click(url: str) -> Answer:
    """What a mail client sends for RFC 8058."""
    return request(
        url,
        method="POST",
        data=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


@pytest.fixture
def served() -> Iterator[Served]:
    unsubscribe = Unsubscribe(SECRET, "https://toma.example.com/toma", "alex@example.com")
    recorder = Recorder()
    endpoint = UnsubscribeEndpoint(unsubscribe, recorder, host=HOST, port=0)
    endpoint.start()
    try:
        yield Served(endpoint, unsubscribe, recorder)
    finally:
        endpoint.stop()


class TestGet:
    def test_shows_a_confirmation_page_and_unsubscribes_nobody(self, served: Served) -> None:
        """Mail scanners follow links: a GET must never unsubscribe."""
        answer = request(served.link())
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
        assert '<form method="post">' in answer.body
        assert f"Unsubscribe {ADDRESS}</button>" in answer.body
        assert 'name="List-Unsubscribe" value="One-Click"' in answer.body
        assert served.recorder.calls == []

    def test_the_page_leaks_the_token_nowhere(self, served: Served) -> None:
        headers = request(served.link()).headers
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Cache-Control"] == "no-store"
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]

    def test_head_calls_nothing(self, served: Served) -> None:
        answer = request(served.link(), method="HEAD")
        assert answer.status == 200
        assert answer.body == ""
        assert served.recorder.calls == []

    def test_address_is_escaped(self, served: Served) -> None:
        answer = request(served.link("<b>o'hara</b>@example.org"))
        assert "<b>o" not in answer.body
        assert "&lt;b&gt;o&#x27;hara&lt;/b&gt;@example.org" in answer.body


class TestPost:
    def test_one_click_unsubscribes_once(self, served: Served) -> None:
        answer = one_click(served.link())
        assert answer.status == 200
        assert "You are unsubscribed" in answer.body
        assert ADDRESS in answer.body
        assert served.recorder.calls == [ADDRESS]

    def test_callback_runs_on_a_server_thread(self, served: Served) -> None:
        """The caller hands the address on to its own thread or queue."""
        one_click(served.link())
        assert (
            served.recorder.threads
            and served.recorder.threads[0] != threading.current_thread().name
        )

    def test_the_form_button_works_too(self, served: Served) -> None:
        answer = request(served.link(), method="POST", data=b"List-Unsubscribe=One-Click")
        assert answer.status == 200
        assert served.recorder.calls == [ADDRESS]

    def test_post_without_a_body_still_counts(self, served: Served) -> None:
        """The token is the authority; clients differ in how they encode the body."""
        assert request(served.link(), method="POST", data=b"").status == 200
        assert served.recorder.calls == [ADDRESS]

    def test_under_the_base_urls_path(self, served: Served) -> None:
        """A proxy may pass /toma/u/TOKEN on as it is."""
        url = f"{served.base}/toma/u/{served.unsubscribe.token(ADDRESS)}"
        assert one_click(url).status == 200
        assert served.recorder.calls == [ADDRESS]

    def test_a_large_body_is_refused(self, served: Served) -> None:
        answer = request(served.link(), method="POST", data=b"x" * (MAX_BODY + 1))
        assert answer.status == 413
        assert served.recorder.calls == []

    def test_a_failing_callback_shows_an_error_page(
        self, served: Served, caplog: pytest.LogCaptureFixture
    ) -> None:
        served.recorder.fail = True
        with caplog.at_level(logging.ERROR, logger="toma.web.endpoint"):
            answer = one_click(served.link())
        # Nothing was recorded, so nothing may read as done: 503, "please try again".
        assert answer.status == 503
        assert "try again" in answer.body
        assert "reply to the email" in answer.body
        assert "unsubscribe_callback_failed" in caplog.text
        served.recorder.fail = False
        assert one_click(served.link()).status == 200  # the server is still there


class TestHttp:
    def test_huge_headers_are_refused(self, served: Served) -> None:
        answer = request(
            served.link(),
            method="POST",
            data=b"List-Unsubscribe=One-Click",
            headers={"X-Padding": "x" * 20_000},
        )
        assert answer.status == 431
        assert served.recorder.calls == []

    def test_a_chunked_body_is_read(self, served: Served) -> None:
        """Transfer-Encoding: chunked, as some clients send a form."""
        host, port = served.endpoint.address
        path = served.link().split(f"{port}", 1)[1]
        with socket.create_connection((host, port), timeout=5) as client:
            client.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
                "1a\r\nList-Unsubscribe=One-Click\r\n0\r\n\r\n".encode()
            )
            answer = b""
            while chunk := client.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Connection: close\r\n" in answer
        assert served.recorder.calls == [ADDRESS]

    def test_a_chunked_body_too_large_is_refused(self, served: Served) -> None:
        host, port = served.endpoint.address
        path = served.link().split(f"{port}", 1)[1]
        chunk = b"x" * 4096
        with socket.create_connection((host, port), timeout=5) as client:
            client.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            )
            try:
                for _ in range(4):
                    client.sendall(b"1000\r\n" + chunk + b"\r\n")
            except OSError:
                pass  # cut once past the limit
            answer = client.recv(4096)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert served.recorder.calls == []

    def test_a_client_waiting_for_100_continue_is_told_to_go_on(self, served: Served) -> None:
        host, port = served.endpoint.address
        path = served.link().split(f"{port}", 1)[1]
        with socket.create_connection((host, port), timeout=5) as client:
            client.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                "Content-Length: 26\r\n\r\n".encode()
            )
            assert client.recv(4096).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            client.sendall(b"List-Unsubscribe=One-Click")
            answer = b""
            while chunk := client.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert served.recorder.calls == [ADDRESS]


class TestRefused:
    def test_tampered_token_is_refused_and_nothing_called(self, served: Served) -> None:
        token = served.unsubscribe.token(ADDRESS)
        for position in range(0, len(token), 7):
            replacement = "A" if token[position] != "A" else "B"
            altered = token[:position] + replacement + token[position + 1 :]
            for method in ("GET", "POST"):
                answer = request(
                    f"{served.base}/u/{altered}",
                    method=method,
                    data=b"List-Unsubscribe=One-Click" if method == "POST" else None,
                )
                assert answer.status == 400, (position, method)
                assert "does not work" in answer.body
                assert ADDRESS not in answer.body
        assert served.recorder.calls == []

    def test_token_from_another_secret_is_refused(self, served: Served) -> None:
        forged = Unsubscribe(b"f" * 32, None, "alex@example.com").token(ADDRESS)
        assert one_click(f"{served.base}/u/{forged}").status == 400
        assert served.recorder.calls == []

    @pytest.mark.parametrize(
        "path", ["/", "/u/", "/unsubscribe", "/x/u/abc", "/u/a/b", "/favicon.ico"]
    )
    def test_other_paths_are_not_found(self, served: Served, path: str) -> None:
        assert request(served.base + path).status == 404
        assert one_click(served.base + path).status == 404
        assert served.recorder.calls == []

    def test_other_methods_are_not_allowed(self, served: Served) -> None:
        answer = request(served.link(), method="PUT", data=b"x")
        assert answer.status == 405
        assert answer.headers["Allow"] == "GET, HEAD, POST"
        assert served.recorder.calls == []


class TestServer:
    def test_address_is_the_bound_port(self, served: Served) -> None:
        host, port = served.endpoint.address
        assert host == HOST
        assert port > 0

    def test_a_silent_client_does_not_block_others(self, served: Served) -> None:
        with socket.create_connection(served.endpoint.address, timeout=5):
            assert request(served.link()).status == 200

    def test_stop_is_prompt_and_closes_the_port(self) -> None:
        endpoint = UnsubscribeEndpoint(
            Unsubscribe(SECRET, None, "a@example.com"), Recorder(), host=HOST, port=0
        )
        endpoint.start()
        address = endpoint.address
        assert request(f"http://{address[0]}:{address[1]}/").status == 404
        started = time.monotonic()
        endpoint.stop()
        assert time.monotonic() - started < 1.0
        with pytest.raises(OSError), socket.create_connection(address, timeout=1):
            pass
        endpoint.stop()  # twice is harmless

    def test_stop_is_prompt_with_an_idle_connection_open(self) -> None:
        endpoint = UnsubscribeEndpoint(
            Unsubscribe(SECRET, None, "a@example.com"), Recorder(), host=HOST, port=0
        )
        with endpoint, socket.create_connection(endpoint.address, timeout=5):
            time.sleep(0.05)  # the idle connection is being served by now
            started = time.monotonic()
            endpoint.stop()
            assert time.monotonic() - started < 1.0

    def test_logs_never_hold_a_whole_token(
        self, served: Served, caplog: pytest.LogCaptureFixture
    ) -> None:
        token = served.unsubscribe.token(ADDRESS)
        with caplog.at_level(logging.DEBUG, logger="toma.web.endpoint"):
            request(served.link())
            one_click(served.link())
            request(f"{served.base}/u/{token[:-1]}B")
        # The lines as toma writes them: the event and its fields.
        text = "\n".join(TextFormatter().format(record) for record in caplog.records)
        assert "unsubscribe_accepted" in text
        assert token not in text
        assert token[:-1] not in text
        assert token[:8] in text

    def test_redact(self) -> None:
        assert redact('"GET /u/abcdefghijklmnop HTTP/1.1" 200') == '"GET /u/abcdefgh… HTTP/1.1" 200'


# --- slow clients ------------------------------------------------------------------------

SLOW_CLIENTS = 40
SLOW_LINE = b"GET /u/" + b"a" * 200


def trickle(
    clients: list[socket.socket], stop: threading.Event, *, every: float, rounds: int
) -> None:
    """Send each client one more byte of a request line every ``every`` seconds."""
    line = b"GET /u/" + b"a" * rounds
    for index in range(rounds):
        if stop.wait(every):
            return
        for client in clients:
            with contextlib.suppress(OSError):  # cut by the server: that is allowed
                client.sendall(line[index : index + 1])


class TestSlowClients:
    def test_slow_clients_do_not_lock_out_real_requests(self, served: Served) -> None:
        """40 clients trickling one header byte at a time; one-click POSTs still get through."""
        clients = [
            socket.create_connection(served.endpoint.address, timeout=5)
            for _ in range(SLOW_CLIENTS)
        ]
        stop = threading.Event()
        feeder = threading.Thread(
            target=trickle, args=(clients, stop), kwargs={"every": 0.05, "rounds": 100}
        )
        feeder.start()
        try:
            time.sleep(0.2)  # every slow client is connected and being served by now
            for _ in range(5):
                started = time.monotonic()
                answer = one_click(served.link())
                assert answer.status == 200
                assert time.monotonic() - started < 2.0
        finally:
            stop.set()
            feeder.join(timeout=10)
            for client in clients:
                client.close()
        assert served.recorder.calls == [ADDRESS] * 5

    def test_when_every_place_is_taken_the_slowest_makes_room(self) -> None:
        """More slow clients than places: a newcomer replaces the longest-waiting reader."""
        recorder = Recorder()
        unsubscribe = Unsubscribe(SECRET, None, "a@example.com")
        endpoint = UnsubscribeEndpoint(unsubscribe, recorder, host=HOST, port=0, max_connections=4)
        with endpoint:
            host, port = endpoint.address
            clients = [socket.create_connection((host, port), timeout=5) for _ in range(12)]
            stop = threading.Event()
            feeder = threading.Thread(
                target=trickle, args=(clients, stop), kwargs={"every": 0.05, "rounds": 60}
            )
            feeder.start()
            try:
                time.sleep(0.2)
                for _ in range(3):
                    answer = one_click(f"http://{host}:{port}/u/{unsubscribe.token(ADDRESS)}")
                    assert answer.status == 200
            finally:
                stop.set()
                feeder.join(timeout=10)
                for client in clients:
                    client.close()
        assert recorder.calls == [ADDRESS] * 3

    def test_a_client_that_never_finishes_its_headers_is_cut_at_the_deadline(self) -> None:
        """The deadline runs from accept to the end of the body, whatever the client sends."""
        endpoint = UnsubscribeEndpoint(
            Unsubscribe(SECRET, None, "a@example.com"),
            Recorder(),
            host=HOST,
            port=0,
            request_deadline=1.0,
        )
        with endpoint, socket.create_connection(endpoint.address, timeout=5) as slow:
            slow.settimeout(0.05)
            started = time.monotonic()
            received = b""
            closed_after: float | None = None
            for index in range(100):  # at most 100 * 0.05 s = 5 s
                try:
                    slow.sendall(SLOW_LINE[index : index + 1])
                    chunk = slow.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    closed_after = time.monotonic() - started
                    break
                received += chunk
                if not chunk:
                    closed_after = time.monotonic() - started
                    break
        assert closed_after is not None, "the slow client was never cut"
        assert 0.9 <= closed_after < 2.5
        assert received == b"" or received.startswith(b"HTTP/1.1 408")

    def test_a_body_that_never_comes_is_cut_at_the_deadline(self) -> None:
        """Headers promising a body, then silence: cut, and nothing recorded."""
        recorder = Recorder()
        unsubscribe = Unsubscribe(SECRET, None, "a@example.com")
        endpoint = UnsubscribeEndpoint(
            unsubscribe, recorder, host=HOST, port=0, request_deadline=1.0
        )
        with endpoint, socket.create_connection(endpoint.address, timeout=5) as slow:
            slow.sendall(
                f"POST /u/{unsubscribe.token(ADDRESS)} HTTP/1.1\r\nHost: x\r\n"
                "Content-Length: 26\r\n\r\nList".encode()
            )
            started = time.monotonic()
            slow.settimeout(3)
            answer = b""
            while chunk := slow.recv(4096):
                answer += chunk
            assert 0.9 <= time.monotonic() - started < 2.5
        assert recorder.calls == []
        assert b"You are unsubscribed" not in answer


# --- recorded before it is answered ------------------------------------------------------

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def stored_contact(data: Path, address: str) -> dict[str, object]:
    store = open_store(data)
    try:
        doc = store.get(CONTACTS, address)
        assert doc is not None
        return doc
    finally:
        store.close()


class TestRecorded:
    def test_a_store_that_cannot_be_written_gets_503_and_no_success(self, tmp_path: Path) -> None:
        """The store stays locked past the wait: "please try again", and nothing changed."""
        data = tmp_path / "data"
        store = open_store(data)
        addressbook.add(store, make_contact(ADDRESS), now=NOW)
        store.close()
        unsubscribe = Unsubscribe(SECRET, None, "a@example.com")
        record = OneClick(data, FixedClock(NOW), lock_timeout=0.2)
        endpoint = UnsubscribeEndpoint(unsubscribe, record, host=HOST, port=0)
        with endpoint:
            host, port = endpoint.address
            url = f"http://{host}:{port}/u/{unsubscribe.token(ADDRESS)}"
            fd = os.open(data / "store.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                answer = one_click(url)
            finally:
                os.close(fd)
            assert answer.status == 503
            assert "try again" in answer.body
            assert stored_contact(data, ADDRESS)["status"] == "active"
            assert one_click(url).status == 200
        record.close()
        doc = stored_contact(data, ADDRESS)
        assert (doc["status"], doc["status_reason"]) == ("unsubscribed", "one-click unsubscribe")
        store = open_store(data)
        entry = addressbook.suppression_of(store, ADDRESS)
        store.close()
        assert entry is not None and entry.reason is Reason.UNSUBSCRIBED

    def test_unsubscribed_before_the_answer_even_if_the_daemon_dies_at_once(
        self, tmp_path: Path
    ) -> None:
        """toma run: POST, 200, SIGKILL straight away: a fresh store says unsubscribed."""
        port = free_port()
        config = make_project(tmp_path, contacts=3, now=NOW)
        config.write_text(
            config.read_text()
            + (
                f'\n[unsubscribe]\nbase_url = "http://127.0.0.1:{port}"\n'
                f'listen = "127.0.0.1:{port}"\n'
            )
        )
        daemon = subprocess.Popen(
            [sys.executable, "-m", "toma", "--config", str(config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = unsubscriber(load_config(config)).url("person1@example.org")
            assert url is not None
            deadline = time.monotonic() + 30
            while True:
                try:
                    if request(url).status == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "the endpoint did not start"
                time.sleep(0.05)
            answer = one_click(url)
            daemon.send_signal(signal.SIGKILL)
        finally:
            daemon.kill()
            daemon.wait(timeout=30)
        assert answer.status == 200
        data = config.parent / "var" / "data"
        assert stored_contact(data, "person1@example.org")["status"] == "unsubscribed"
        assert stored_contact(data, "person2@example.org")["status"] == "active"
        store = open_store(data)
        try:
            assert store.count(SUPPRESSION) == 1
        finally:
            store.close()
