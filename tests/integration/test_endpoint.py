"""The one-click endpoint on 127.0.0.1: GET shows a page, only POST unsubscribes."""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from toma.endpoint import MAX_BODY, UnsubscribeEndpoint, redact
from toma.unsubscribe import Unsubscribe

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


def request(url: str, *, method: str = "GET", data: bytes | None = None,
            headers: dict[str, str] | None = None) -> Answer:
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
    return request(url, method="POST", data=b"List-Unsubscribe=One-Click",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})


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
        assert served.recorder.threads and \
            served.recorder.threads[0] != threading.current_thread().name

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
        with caplog.at_level(logging.ERROR, logger="toma.endpoint"):
            answer = one_click(served.link())
        assert answer.status == 500
        assert "reply to the email" in answer.body
        assert "unsubscribe_callback_failed" in caplog.text
        served.recorder.fail = False
        assert one_click(served.link()).status == 200  # the server is still there


class TestRefused:
    def test_tampered_token_is_refused_and_nothing_called(self, served: Served) -> None:
        token = served.unsubscribe.token(ADDRESS)
        for position in range(0, len(token), 7):
            replacement = "A" if token[position] != "A" else "B"
            altered = token[:position] + replacement + token[position + 1:]
            for method in ("GET", "POST"):
                answer = request(f"{served.base}/u/{altered}", method=method,
                                 data=b"List-Unsubscribe=One-Click" if method == "POST" else None)
                assert answer.status == 400, (position, method)
                assert "does not work" in answer.body
                assert ADDRESS not in answer.body
        assert served.recorder.calls == []

    def test_token_from_another_secret_is_refused(self, served: Served) -> None:
        forged = Unsubscribe(b"f" * 32, None, "alex@example.com").token(ADDRESS)
        assert one_click(f"{served.base}/u/{forged}").status == 400
        assert served.recorder.calls == []

    @pytest.mark.parametrize("path", ["/", "/u/", "/unsubscribe", "/x/u/abc", "/u/a/b",
                                      "/favicon.ico"])
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
        endpoint = UnsubscribeEndpoint(Unsubscribe(SECRET, None, "a@example.com"), Recorder(),
                                       host=HOST, port=0)
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
        endpoint = UnsubscribeEndpoint(Unsubscribe(SECRET, None, "a@example.com"), Recorder(),
                                       host=HOST, port=0)
        with endpoint, socket.create_connection(endpoint.address, timeout=5):
            time.sleep(0.05)  # the idle connection is being served by now
            started = time.monotonic()
            endpoint.stop()
            assert time.monotonic() - started < 1.0

    def test_logs_never_hold_a_whole_token(
        self, served: Served, caplog: pytest.LogCaptureFixture
    ) -> None:
        token = served.unsubscribe.token(ADDRESS)
        with caplog.at_level(logging.DEBUG, logger="toma.endpoint"):
            request(served.link())
            one_click(served.link())
            request(f"{served.base}/u/{token[:-1]}B")
        assert "unsubscribe_accepted" in caplog.text
        assert token not in caplog.text
        assert token[:-1] not in caplog.text
        assert token[:8] in caplog.text

    def test_redact(self) -> None:
        assert redact('"GET /u/abcdefghijklmnop HTTP/1.1" 200') == '"GET /u/abcdefgh… HTTP/1.1" 200'
