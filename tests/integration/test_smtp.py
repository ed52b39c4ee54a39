"""The SMTP transport against a real aiosmtpd: outcomes, retries, TLS, AUTH, rate, stop.

Every outcome is checked against what the server actually recorded, because
the promise is about the other side: SENT means it is there exactly once,
TEMPORARY means it is not there, UNKNOWN means it may be (and is never resent).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
import ssl
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toma import eventloop
from toma.config import Smtp
from toma.errors import TransportError
from toma.transports import Backoff, Envelope, Outcome, Result, SmtpTransport, send_all
from toma.transports.smtp import RateLimiter, is_loopback, wire_format

if TYPE_CHECKING:
    from .conftest import RecordingHandler, SmtpServer

T = TypeVar("T")

FAST = Backoff(first=0.2, factor=2.0, cap=1.0)


def run(coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run one test coroutine, on the loop the daemon sends on, with an upper bound on its time."""
    return eventloop.run(asyncio.wait_for(coroutine, timeout))


def envelope(
    number: int,
    *,
    to: str | None = None,
    sender: str = "owner@example.com",
    recipients: Sequence[str] | None = None,
) -> Envelope:
    key = f"key-{number:05d}"
    rcpts = tuple(recipients) if recipients else (to or f"person{number}@example.com",)
    data = (
        f"From: Owner <{sender}>\r\n"
        f"To: {', '.join(rcpts)}\r\n"
        f"Subject: Keeping in touch {number}\r\n"
        f"Message-ID: <{key}@toma.test>\r\n"
        "\r\n"
        "Hello, just keeping in touch.\r\n"
        ".a line that starts with a dot\r\n"
    ).encode()
    return Envelope(key=key, sender=sender, recipients=rcpts, data=data)


async def send_batch(
    config: Smtp,
    envelopes: Sequence[Envelope],
    *,
    ssl_context: ssl.SSLContext | None = None,
    **options: Any,
) -> list[Result]:
    async with SmtpTransport(config, ssl_context=ssl_context) as transport:
        return await send_all(transport, envelopes, **options)


def delivered(handler: RecordingHandler) -> Counter[str]:
    """How many times each Message-ID reached the server."""
    return Counter(message.message_id or "?" for message in handler.messages)


def key_id(key: str) -> str:
    return f"{key}@toma.test"


def by_outcome(results: Sequence[Result]) -> dict[Outcome, list[Result]]:
    grouped: dict[Outcome, list[Result]] = {outcome: [] for outcome in Outcome}
    for result in results:
        grouped[result.outcome].append(result)
    return grouped


class TestDelivery:
    def test_500_messages_arrive_exactly_once(
        self, smtp_config: Smtp, smtpd_handler: RecordingHandler
    ) -> None:
        """Each of 500 messages is SENT, reported once, and on the server exactly once."""
        envelopes = [envelope(n) for n in range(500)]
        reported: list[Result] = []

        async def record(result: Result) -> None:
            reported.append(result)

        results = run(send_batch(smtp_config, envelopes, on_result=record))

        assert [r.key for r in results] == [e.key for e in envelopes]
        assert {r.outcome for r in results} == {Outcome.SENT}
        assert all(r.code == 250 for r in results)
        assert sorted(r.key for r in reported) == sorted(e.key for e in envelopes)
        counts = delivered(smtpd_handler)
        assert len(counts) == 500
        assert set(counts.values()) == {1}
        assert counts.keys() == {key_id(e.key) for e in envelopes}

    def test_connections_are_reused(
        self, smtp_config: Smtp, smtpd_handler: RecordingHandler
    ) -> None:
        """The pool opens at most `concurrency` connections for a batch and says goodbye."""
        run(send_batch(smtp_config, [envelope(n) for n in range(40)]))
        assert 1 <= smtpd_handler.count("EHLO") <= smtp_config.concurrency
        assert smtpd_handler.count("QUIT") == smtpd_handler.count("EHLO")

    def test_message_bytes_survive_the_wire(
        self, smtp_config: Smtp, smtpd_handler: RecordingHandler
    ) -> None:
        """Dot-stuffing is undone by the server: what arrives is what was sent."""
        sent = envelope(1)
        run(send_batch(smtp_config, [sent]))
        (received,) = smtpd_handler.messages
        assert received.data == sent.data
        assert received.mail_from == sent.sender
        assert received.rcpt_tos == sent.recipients

    def test_international_addresses_and_8bit_bodies(
        self, smtp_config: Smtp, smtpd_handler: RecordingHandler
    ) -> None:
        """Non-ASCII addresses go with SMTPUTF8, an 8-bit body with BODY=8BITMIME, intact."""
        plain = envelope(1, to="josé@exämple.com")
        message = dataclasses.replace(plain, data=plain.data + "Grüße, Zoë\r\n".encode())
        (result,) = run(send_batch(smtp_config, [message]))
        assert result.outcome is Outcome.SENT
        (received,) = smtpd_handler.messages
        assert received.rcpt_tos == ("josé@exämple.com",)
        assert received.data == message.data

    def test_a_message_with_bad_addresses_is_refused_before_the_server(
        self, smtp_config: Smtp, smtpd_handler: RecordingHandler
    ) -> None:
        """An address that could smuggle a command is PERMANENT and never reaches the server."""
        bad = dataclasses.replace(envelope(1), recipients=("a@example.com>\r\nRCPT TO:<b@x.org",))
        (result,) = run(send_batch(smtp_config, [bad]))
        assert result.outcome is Outcome.PERMANENT
        assert smtpd_handler.count("MAIL") == 0


class TestFailures:
    @pytest.mark.smtpd_options(rcpt_answers={"nobody@example.com": "550 5.1.1 no such user"})
    def test_550_fails_that_message_only(
        self, smtp_config: Smtp, smtpd_handler: RecordingHandler
    ) -> None:
        """A 5xx for one recipient is PERMANENT for that message; the others are SENT."""
        config = dataclasses.replace(smtp_config, concurrency=1)
        envelopes = [envelope(n) for n in range(10)]
        envelopes[2] = envelope(2, to="nobody@example.com")
        results = run(send_batch(config, envelopes, retry_until=5.0, backoff=FAST))

        failed = results[2]
        assert failed.outcome is Outcome.PERMANENT
        assert failed.code == 550
        assert "no such user" in failed.detail
        assert all(r.outcome is Outcome.SENT for i, r in enumerate(results) if i != 2)
        assert delivered(smtpd_handler).keys() == {
            key_id(e.key) for i, e in enumerate(envelopes) if i != 2
        }
        # Refused once (never retried), the same connection reset and used on.
        assert smtpd_handler.count("RCPT", "nobody@example.com") == 1
        assert smtpd_handler.count("RSET") == 1
        assert smtpd_handler.count("EHLO") == 1

    @pytest.mark.smtpd_options(
        rcpt_answers={"nobody@example.com": "550 5.1.1 no\x00such\x1b[2J user\x7f"}
    )
    def test_control_characters_in_a_refusal_are_not_kept(
        self, smtp_config: Smtp, smtpd_handler: RecordingHandler
    ) -> None:
        """A server's text goes into the message's record and the log: a NUL (which
        PostgreSQL cannot store) or a terminal escape in it is replaced."""
        (result,) = run(send_batch(smtp_config, [envelope(1, to="nobody@example.com")]))
        assert result.outcome is Outcome.PERMANENT
        assert result.detail.endswith("550 5.1.1 no\ufffdsuch\ufffd[2J user\ufffd")

    @pytest.mark.smtpd_options(rcpt_answers={"nobody@example.com": "550 5.1.1 no such user"})
    def test_several_recipients_go_all_or_nothing(
        self, smtp_config: Smtp, smtpd_handler: RecordingHandler
    ) -> None:
        """One refused recipient keeps the message from the accepted ones too."""
        message = envelope(1, recipients=["friend@example.com", "nobody@example.com"])
        (result,) = run(send_batch(smtp_config, [message]))
        assert result.outcome is Outcome.PERMANENT
        assert result.code == 550
        assert smtpd_handler.messages == []
        assert smtpd_handler.count("DATA") == 0

    @pytest.mark.parametrize(
        "recipient",
        [
            pytest.param(
                "grey@example.com",
                marks=pytest.mark.smtpd_options(
                    rcpt_answers={"grey@example.com": ["451 4.7.1 greylisted, come back later"]}
                ),
            ),
            pytest.param(
                "full@example.com",
                marks=pytest.mark.smtpd_options(
                    data_answers={"full@example.com": ["451 4.3.0 queue full"]}
                ),
            ),
        ],
        ids=["rcpt", "after-body"],
    )
    def test_451_is_retried_and_sent_once(
        self, recipient: str, smtp_config: Smtp, smtpd_handler: RecordingHandler
    ) -> None:
        """A 4xx (to RCPT or after the body) is retried after a back-off and then SENT once."""
        envelopes = [envelope(1), envelope(2, to=recipient), envelope(3)]
        results = run(send_batch(smtp_config, envelopes, retry_until=5.0, backoff=FAST))
        assert [r.outcome for r in results] == [Outcome.SENT] * 3
        assert smtpd_handler.count("RCPT", recipient) == 2
        assert delivered(smtpd_handler)[key_id(envelopes[1].key)] == 1

    @pytest.mark.smtpd_options(rcpt_answers={"grey@example.com": "451 4.7.1 greylisted"})
    def test_temporary_failures_stop_at_the_deadline(
        self, smtp_config: Smtp, smtpd_handler: RecordingHandler
    ) -> None:
        """Retries end at the deadline with TEMPORARY and the last answer, for a later tick."""
        started = time.monotonic()
        (result,) = run(
            send_batch(
                smtp_config,
                [envelope(1, to="grey@example.com")],
                retry_until=timedelta(seconds=1.5),
                backoff=FAST,
            )
        )
        assert time.monotonic() - started < 5
        assert result.outcome is Outcome.TEMPORARY
        assert result.code == 451
        assert 2 <= smtpd_handler.count("RCPT", "grey@example.com") <= 8
        assert smtpd_handler.messages == []

    @pytest.mark.smtpd_options(rcpt_answers={"flaky@example.com": ["drop"]})
    def test_drop_before_the_body_is_temporary_and_retried(
        self, smtp_config: Smtp, smtpd_handler: RecordingHandler
    ) -> None:
        """A connection lost before DATA cannot have delivered: retried, then SENT once."""
        message = envelope(1, to="flaky@example.com")
        (result,) = run(send_batch(smtp_config, [message], retry_until=5.0, backoff=FAST))
        assert result.outcome is Outcome.SENT
        assert smtpd_handler.count("RCPT", "flaky@example.com") == 2
        assert delivered(smtpd_handler) == {key_id(message.key): 1}

    @pytest.mark.smtpd_options(data_answers={"lost@example.com": "drop"})
    def test_drop_after_the_body_is_unknown_and_never_resent(
        self, smtp_config: Smtp, smtpd_handler: RecordingHandler
    ) -> None:
        """No answer after the body: UNKNOWN, not retried; the other messages go on."""
        envelopes = [envelope(n) for n in range(6)]
        envelopes[1] = envelope(1, to="lost@example.com")
        results = run(send_batch(smtp_config, envelopes, retry_until=5.0, backoff=FAST))
        assert results[1].outcome is Outcome.UNKNOWN
        assert results[1].code is None
        assert all(r.outcome is Outcome.SENT for i, r in enumerate(results) if i != 1)
        # The server did take it in: that is exactly why it must not be sent again.
        assert delivered(smtpd_handler)[key_id(envelopes[1].key)] == 1
        assert smtpd_handler.count("RCPT", "lost@example.com") == 1

    @pytest.mark.smtpd_options(data_answers={"slow@example.com": ["stall:3"]})
    def test_timeout_after_the_body_is_unknown(
        self, smtp_config: Smtp, smtpd_handler: RecordingHandler
    ) -> None:
        """A final answer that does not come in time: UNKNOWN, never retried."""
        config = dataclasses.replace(smtp_config, timeout=0.5)
        message = envelope(1, to="slow@example.com")
        (result,) = run(send_batch(config, [message], retry_until=5.0, backoff=FAST))
        assert result.outcome is Outcome.UNKNOWN
        assert smtpd_handler.count("RCPT", "slow@example.com") == 1

    def test_connection_refused_is_temporary(
        self, smtp_config: Smtp, smtpd_server: SmtpServer
    ) -> None:
        """Nobody listening: TEMPORARY, with no code, and send() does not raise."""
        smtpd_server.stop()

        async def attempt() -> Result:
            async with SmtpTransport(smtp_config) as transport:
                return await transport.send(envelope(1))

        result = run(attempt())
        assert result.outcome is Outcome.TEMPORARY
        assert result.code is None
        assert str(smtp_config.port) in result.detail


class TestOutages:
    def test_server_down_for_a_while_then_every_message_once(
        self, smtp_config: Smtp, smtpd_server: SmtpServer, smtpd_handler: RecordingHandler
    ) -> None:
        """Connections refused for ~1 s, then accepted: all SENT, each exactly once."""
        smtpd_server.stop()
        restart = smtpd_server.restart_after(1.0)
        envelopes = [envelope(n) for n in range(60)]
        try:
            results = run(send_batch(smtp_config, envelopes, retry_until=15.0, backoff=FAST))
        finally:
            restart.join(10)
        assert {r.outcome for r in results} == {Outcome.SENT}
        counts = delivered(smtpd_handler)
        assert counts.keys() == {key_id(e.key) for e in envelopes}
        assert set(counts.values()) == {1}

    @pytest.mark.smtpd_options(refuse_for=60.0)
    def test_421_greeting_is_temporary_then_sent_when_it_clears(
        self, smtp_config: Smtp, smtpd_handler: RecordingHandler
    ) -> None:
        """A server turning clients away with 421 gives TEMPORARY 421; later it all goes."""
        envelopes = [envelope(n) for n in range(8)]
        first = run(send_batch(smtp_config, envelopes))
        assert {(r.outcome, r.code) for r in first} == {(Outcome.TEMPORARY, 421)}
        assert smtpd_handler.messages == []

        smtpd_handler.refuse_for(0.8)
        second = run(send_batch(smtp_config, envelopes, retry_until=10.0, backoff=FAST))
        assert {r.outcome for r in second} == {Outcome.SENT}
        assert set(delivered(smtpd_handler).values()) == {1}

    def test_a_pooled_connection_closed_by_the_server_is_replaced(
        self, smtp_config: Smtp, smtpd_server: SmtpServer, smtpd_handler: RecordingHandler
    ) -> None:
        """After the server drops idle connections, the next messages go without a failure."""
        config = dataclasses.replace(smtp_config, concurrency=1)

        async def scenario() -> list[Result]:
            async with SmtpTransport(config) as transport:
                results = [await transport.send(envelope(n)) for n in range(3)]
                await asyncio.to_thread(smtpd_server.stop)
                await asyncio.to_thread(smtpd_server.start)
                results += [await transport.send(envelope(n)) for n in range(3, 6)]
                return results

        results = run(scenario())
        assert [r.outcome for r in results] == [Outcome.SENT] * 6
        assert len(delivered(smtpd_handler)) == 6

    @pytest.mark.smtpd_options(mail_answers={"stale@example.com": ["drop"]})
    def test_a_connection_lost_at_mail_is_reopened_once(
        self, smtp_config: Smtp, smtpd_handler: RecordingHandler
    ) -> None:
        """A reused connection found dead at MAIL is replaced within the same send."""
        config = dataclasses.replace(smtp_config, concurrency=1)

        async def scenario() -> list[Result]:
            async with SmtpTransport(config) as transport:
                return [
                    await transport.send(envelope(1)),
                    await transport.send(envelope(2, sender="stale@example.com")),
                ]

        results = run(scenario())
        assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
        assert smtpd_handler.count("EHLO") == 2
        assert len(delivered(smtpd_handler)) == 2


class TestSecurity:
    @pytest.mark.parametrize(
        ("security", "trust"),
        [
            pytest.param("starttls", "ca_file", marks=pytest.mark.smtpd_options(tls="starttls")),
            pytest.param("starttls", "context", marks=pytest.mark.smtpd_options(tls="starttls")),
            pytest.param("tls", "ca_file", marks=pytest.mark.smtpd_options(tls="tls")),
            pytest.param("tls", "context", marks=pytest.mark.smtpd_options(tls="tls")),
        ],
    )
    def test_tls_with_the_trusted_ca(
        self,
        security: str,
        trust: str,
        smtp_config: Smtp,
        smtpd_handler: RecordingHandler,
        client_tls_context: ssl.SSLContext,
    ) -> None:
        """STARTTLS and implicit TLS deliver over TLS when the server's CA is trusted."""
        assert smtp_config.security == security
        context = client_tls_context if trust == "context" else None
        results = run(send_batch(smtp_config, [envelope(n) for n in range(5)], ssl_context=context))
        assert {r.outcome for r in results} == {Outcome.SENT}
        assert len(smtpd_handler.messages) == 5
        assert all(message.tls for message in smtpd_handler.messages)

    @pytest.mark.parametrize(
        "security",
        [
            pytest.param(
                "starttls", marks=pytest.mark.smtpd_options(tls="starttls", cert="untrusted")
            ),
            pytest.param("tls", marks=pytest.mark.smtpd_options(tls="tls", cert="untrusted")),
        ],
    )
    def test_a_certificate_from_an_unknown_ca_is_refused(
        self, security: str, smtp_config: Smtp, smtpd_handler: RecordingHandler
    ) -> None:
        """A server the client cannot verify gets nothing: not SENT, no MAIL command."""
        results = run(send_batch(smtp_config, [envelope(1), envelope(2)]))
        assert all(r.outcome is Outcome.TEMPORARY for r in results)
        assert all("certificate" in r.detail.lower() for r in results)
        assert smtpd_handler.count("MAIL") == 0
        assert smtpd_handler.messages == []

    def test_starttls_is_required_when_configured(
        self, smtp_config: Smtp, smtpd_handler: RecordingHandler
    ) -> None:
        """security = "starttls" and a server without STARTTLS: nothing goes in clear text."""
        config = dataclasses.replace(smtp_config, security="starttls")
        (result,) = run(send_batch(config, [envelope(1)]))
        assert result.outcome is Outcome.TEMPORARY
        assert "STARTTLS" in result.detail
        assert smtpd_handler.count("MAIL") == 0

    @pytest.mark.smtpd_options(tls="starttls", auth=True)
    def test_authentication(self, smtp_config: Smtp, smtpd_handler: RecordingHandler) -> None:
        """With a username the transport logs in (password from the environment) and sends."""
        results = run(send_batch(smtp_config, [envelope(n) for n in range(3)]))
        assert {r.outcome for r in results} == {Outcome.SENT}
        assert smtpd_handler.count("AUTH") >= 1
        assert len(smtpd_handler.messages) == 3

    @pytest.mark.smtpd_options(tls="starttls", auth=True)
    def test_a_wrong_password_sends_nothing(
        self,
        smtp_config: Smtp,
        smtpd_handler: RecordingHandler,
        smtp_password_env: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Authentication refused: TEMPORARY with the server's code, nothing delivered.

        The password is tried once, whatever the batch and its retries: a server
        counts the refusals (fail2ban, a provider's lockout) and would shut the
        account or the address out long before a retry could help.
        """
        monkeypatch.setenv(smtp_password_env, "wrong")
        results = run(
            send_batch(smtp_config, [envelope(n) for n in range(6)], retry_until=timedelta(hours=1))
        )
        assert {(r.outcome, r.code) for r in results} == {(Outcome.TEMPORARY, 535)}
        assert not any(r.retry_soon for r in results)
        assert smtpd_handler.count("AUTH") == 1
        assert smtpd_handler.messages == []

    def test_clear_text_only_to_this_machine(self) -> None:
        """security = "none" towards another host is refused when the transport opens."""
        config = Smtp(host="mail.example.com", port=25, security="none")

        async def open_it() -> None:
            async with SmtpTransport(config):
                pass

        with pytest.raises(TransportError, match="clear text"):
            run(open_it())

    @pytest.mark.parametrize(
        ("host", "loopback"),
        [
            ("localhost", True),
            ("127.0.0.1", True),
            ("127.1.2.3", True),
            ("::1", True),
            ("[::1]", True),
            ("mail.localhost", True),
            ("mail.example.com", False),
            ("10.0.0.1", False),
            ("localhost.example.com", False),
        ],
    )
    def test_is_loopback(self, host: str, loopback: bool) -> None:
        assert is_loopback(host) is loopback


class TestPacing:
    def test_rate_limit_holds(self, smtp_config: Smtp, smtpd_handler: RecordingHandler) -> None:
        """120 a minute is one every 0.5 s across all connections: 5 messages take ≥ 2 s."""
        config = dataclasses.replace(smtp_config, rate_per_minute=120)
        started = time.monotonic()
        results = run(send_batch(config, [envelope(n) for n in range(5)]))
        elapsed = time.monotonic() - started
        assert {r.outcome for r in results} == {Outcome.SENT}
        assert elapsed >= 1.5

    def test_rate_limiter_spaces_concurrent_callers(self) -> None:
        """Slots are reserved in turn, so concurrent callers never share one."""

        async def scenario() -> list[float]:
            limiter = RateLimiter(per_minute=600)
            loop = asyncio.get_running_loop()
            times: list[float] = []

            async def take() -> None:
                await limiter.acquire()
                times.append(loop.time())

            await asyncio.gather(*(take() for _ in range(4)))
            return sorted(times)

        times = run(scenario())
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert all(gap >= 0.09 for gap in gaps)

    @pytest.mark.smtpd_options(data_delay=0.3)
    def test_stop_lets_sends_in_progress_finish_and_starts_no_more(
        self, smtp_config: Smtp, smtpd_handler: RecordingHandler
    ) -> None:
        """When stop is set mid-batch, the messages being sent finish; the rest wait."""
        config = dataclasses.replace(smtp_config, concurrency=2)
        envelopes = [envelope(n) for n in range(10)]

        async def scenario() -> list[Result]:
            stop = asyncio.Event()
            batch = asyncio.create_task(send_batch(config, envelopes, stop=stop))
            assert await asyncio.to_thread(smtpd_handler.body_seen.wait, 5.0)
            stop.set()
            return await batch

        results = run(scenario())
        grouped = by_outcome(results)
        sent = {r.key for r in grouped[Outcome.SENT]}
        assert len(sent) == 2
        assert len(grouped[Outcome.TEMPORARY]) == 8
        assert all(r.detail == "stopped before sending" for r in grouped[Outcome.TEMPORARY])
        assert delivered(smtpd_handler).keys() == {key_id(key) for key in sent}


def test_wire_format() -> None:
    """CRLF everywhere, leading dots doubled, and the terminating dot line."""
    assert wire_format(b"a\nb\r\n.c\r\n") == b"a\r\nb\r\n..c\r\n.\r\n"
    assert wire_format(b".\r\nx") == b"..\r\nx\r\n.\r\n"
    assert wire_format(b"a\r\nb\r\n") == b"a\r\nb\r\n.\r\n"
    assert wire_format(b"a\rb\r\n\r") == b"a\r\nb\r\n\r\n.\r\n"


@given(
    st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b" ", b"\xc3\xa9"]), max_size=40)
)
def test_wire_format_skips_nothing_on_its_fast_path(pieces: list[bytes]) -> None:
    """Counting line ends instead of rewriting them gives the same bytes as rewriting."""
    data = b"".join(pieces)
    body = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    body = body if body.endswith(b"\r\n") else body + b"\r\n"
    assert wire_format(data) == re.sub(rb"(?m)^\.", b"..", body) + b".\r\n"


def test_handing_is_asked_before_mail_and_awaited_before_data_and_can_withdraw(
    smtp_config: Smtp, smtpd_handler: RecordingHandler
) -> None:
    """The hand-over is asked as the transaction starts and no DATA goes before its answer;
    a withdrawn message is reset, not sent, and the connection goes on with the next one."""
    asked: list[tuple[str, list[str]]] = []
    answered: list[tuple[str, list[str]]] = []
    answers: list[tuple[str, asyncio.Future[bool]]] = []

    def names() -> list[str]:
        return [name for name, *_ in smtpd_handler.commands]

    def handing(key: str) -> asyncio.Future[bool]:
        asked.append((key, names()))
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        answers.append((key, answer))
        return answer

    async def answer_once_rcpt_is_in(count: int) -> None:
        # The server has the RCPT, and the client waits: no DATA may come meanwhile.
        while len(answers) < count or names().count("RCPT") < count:
            await asyncio.sleep(0.001)
        for _ in range(20):
            await asyncio.sleep(0)
        key, answer = answers[count - 1]
        answered.append((key, names()))
        answer.set_result(key != "key-00002")

    async def go() -> list[Result]:
        async with SmtpTransport(dataclasses.replace(smtp_config, concurrency=1)) as transport:
            results = []
            for n in (1, 2, 3):
                answering = asyncio.create_task(answer_once_rcpt_is_in(n))
                results.append(await transport.send(envelope(n), handing))
                await answering
            return results

    results = run(go())
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.WITHDRAWN, Outcome.SENT]
    assert [key for key, _ in asked] == ["key-00001", "key-00002", "key-00003"]
    for _key, commands in asked:
        assert commands[-1] in ("EHLO", "DATA", "RSET")  # before this message's MAIL
    for _key, commands in answered:
        assert commands[-2:] == ["MAIL", "RCPT"]  # nothing of the body yet
    assert set(delivered(smtpd_handler)) == {key_id("key-00001"), key_id("key-00003")}
    commands = names()
    assert commands.count("DATA") == 2 and "RSET" in commands
    assert commands.count("EHLO") == 1  # one connection throughout
