"""Real servers on 127.0.0.1 for the integration tests.

An aiosmtpd server runs in its own thread on a free port with a recording
handler; a trustme CA signs its certificate. Options come per test from the
``smtpd_options`` marker::

    @pytest.mark.smtpd_options(tls="starttls", auth=True,
                               rcpt_answers={"nobody@example.com": "550 5.1.1 no such user"})

Scripted answers: a string is given every time, a list once per attempt in
order (then the server behaves normally). Besides SMTP replies the handler knows
``"drop"`` (close the connection without answering) and, after the body,
``"stall:SECONDS"`` (record the message, then answer only after SECONDS).
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPD
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from toma.config import Secret, Smtp
from toma.timeutil import parse_duration

HOST = "127.0.0.1"
SERVER_NAME = "localhost"
PASSWORD_ENV = "TOMA_TEST_SMTP_PASSWORD"

Answers = str | Sequence[str]


@dataclass(frozen=True)
class SmtpdOptions:
    """What the test server does; set per test with ``@pytest.mark.smtpd_options(...)``."""

    tls: str = "none"  # "none" | "starttls" | "tls" (implicit TLS)
    cert: str = "trusted"  # "trusted" | "untrusted": the CA that signed the server's certificate
    auth: bool = False  # require AUTH (offered only over TLS)
    mail_answers: Mapping[str, Answers] = field(default_factory=dict)  # by sender
    rcpt_answers: Mapping[str, Answers] = field(default_factory=dict)
    data_answers: Mapping[str, Answers] = field(default_factory=dict)  # after the body
    data_delay: float = 0.0  # seconds before answering each message
    refuse_for: float = 0.0  # greet with 421 and hang up for this long after start


@dataclass(frozen=True)
class Received:
    """One message the server accepted (or took in before dropping the connection)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    tls: bool

    @property
    def message_id(self) -> str | None:
        found = re.search(rb"^Message-ID:\s*<([^>\r\n]*)>", self.data, re.MULTILINE | re.IGNORECASE)
        return found.group(1).decode() if found else None


class RecordingHandler:
    """Records messages and commands; answers as scripted by the options.

    Runs in the server's thread: everything it shares with the test goes
    through a lock or a ``threading.Event``.
    """

    def __init__(self, options: SmtpdOptions) -> None:
        self.options = options
        self._lock = threading.Lock()
        self._messages: list[Received] = []
        self._commands: list[tuple[Any, ...]] = []
        self._scripts: dict[tuple[str, str], deque[str] | str] = {}
        for stage, answers in (
            ("MAIL", options.mail_answers),
            ("RCPT", options.rcpt_answers),
            ("DATA", options.data_answers),
        ):
            for address, script in answers.items():
                self._scripts[stage, address.lower()] = (
                    script if isinstance(script, str) else deque(script)
                )
        self._refuse_until = time.monotonic() + options.refuse_for
        self.body_seen = threading.Event()

    # -- what the tests read ---------------------------------------------------

    @property
    def messages(self) -> list[Received]:
        with self._lock:
            return list(self._messages)

    @property
    def commands(self) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._commands)

    def count(self, command: str, argument: str | None = None) -> int:
        return sum(
            1
            for name, *args in self.commands
            if name == command and (argument is None or (args and args[0] == argument))
        )

    def refuse_for(self, seconds: float) -> None:
        with self._lock:
            self._refuse_until = time.monotonic() + seconds

    # -- called by the server ----------------------------------------------------

    def record_command(self, command: str, *args: Any) -> None:
        with self._lock:
            self._commands.append((command, *args))

    def refusing(self) -> bool:
        with self._lock:
            return time.monotonic() < self._refuse_until

    def _answer(self, stage: str, addresses: Sequence[str]) -> str | None:
        with self._lock:
            for address in addresses:
                script = self._scripts.get((stage, address.lower()))
                if isinstance(script, str):
                    return script
                if script:
                    return script.popleft()
        return None

    async def handle_MAIL(
        self,
        server: SMTPD,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        answer = self._answer("MAIL", [address])
        if answer == "drop":
            await _hang_up(server)
        if answer is not None:
            return answer
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTPD,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        answer = self._answer("RCPT", [address])
        if answer == "drop":
            await _hang_up(server)
        if answer is not None:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPD, session: Session, envelope: Envelope) -> str:
        self.body_seen.set()
        answer = self._answer("DATA", envelope.rcpt_tos)
        if answer and answer[0] in "45":
            return answer
        content = envelope.original_content or b""
        transport = server.transport
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        with self._lock:
            self._messages.append(
                Received(envelope.mail_from or "", tuple(envelope.rcpt_tos), bytes(content), tls)
            )
        if answer == "drop":
            await _hang_up(server)
        if answer is not None and answer.startswith("stall:"):
            await asyncio.sleep(float(answer.partition(":")[2]))
        if self.options.data_delay:
            await asyncio.sleep(self.options.data_delay)
        return "250 2.0.0 OK queued"


async def _hang_up(server: SMTPD) -> None:
    """Close without a word; aiosmtpd cancels this hook when it sees the connection go."""
    if isinstance(server.transport, asyncio.Transport):
        server.transport.abort()
    await asyncio.sleep(60)


class RecordingSMTPD(SMTPD):
    """aiosmtpd's server, recording every command and able to turn clients away.

    Commands are recorded as ``(name, argument)``; for MAIL and RCPT the argument
    is the bare address, so tests can count attempts per recipient.
    """

    def _record(self, command: str, arg: str | None) -> None:
        if command in ("MAIL", "RCPT"):
            found = re.search(r"<([^>]*)>", arg or "")
            arg = found.group(1) if found else arg
        self.event_handler.record_command(command, *(() if arg is None else (arg,)))

    async def smtp_EHLO(self, arg: str) -> None:
        self._record("EHLO", arg)
        await super().smtp_EHLO(arg)

    async def smtp_HELO(self, arg: str) -> None:
        self._record("HELO", arg)
        await super().smtp_HELO(arg)

    async def smtp_STARTTLS(self, arg: str) -> None:
        self._record("STARTTLS", None)
        await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg: str) -> None:
        self._record("AUTH", (arg or "").split(" ")[0])
        await super().smtp_AUTH(arg)

    async def smtp_MAIL(self, arg: str | None) -> None:
        self._record("MAIL", arg)
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        self._record("RCPT", arg)
        await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        self._record("DATA", None)
        await super().smtp_DATA(arg)

    async def smtp_RSET(self, arg: str) -> None:
        self._record("RSET", None)
        await super().smtp_RSET(arg)

    async def smtp_QUIT(self, arg: str) -> None:
        self._record("QUIT", None)
        await super().smtp_QUIT(arg)

    async def _handle_client(self) -> None:
        if self.event_handler.refusing():
            await self.push("421 4.3.2 not accepting mail now, try later")
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()


class RecordingController(Controller):
    """aiosmtpd's threaded controller that also closes live connections when it stops.

    The stock one stops its loop with client connections still open; their
    sockets are then found unclosed by the garbage collector, in a later test.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sessions: weakref.WeakSet[RecordingSMTPD] = weakref.WeakSet()

    def factory(self) -> SMTPD:
        session = RecordingSMTPD(self.handler, **self.SMTP_kwargs)
        self.sessions.add(session)
        return session

    async def _hang_up_all(self) -> None:
        for session in list(self.sessions):
            for transport in (session.transport, session._original_transport):
                if isinstance(transport, asyncio.Transport):
                    transport.abort()
        # connection_lost, which closes each socket, runs on the next iterations.
        for _ in range(3):
            await asyncio.sleep(0)

    def stop(self, no_assert: bool = False) -> None:
        if self._thread is not None:
            done = asyncio.run_coroutine_threadsafe(self._hang_up_all(), self.loop)
            done.result(timeout=5)
        super().stop(no_assert)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class SmtpServer:
    """A running test server; ``stop``/``start`` keep the port, to play an outage."""

    def __init__(
        self,
        handler: RecordingHandler,
        options: SmtpdOptions,
        tls_context: ssl.SSLContext,
        credentials: tuple[str, str],
    ) -> None:
        self.host = HOST
        self.port = free_port()
        self.handler = handler
        self.options = options
        self._tls_context = tls_context
        self._credentials = credentials
        self._controller: RecordingController | None = None
        self._lock = threading.Lock()

    def _authenticate(
        self, server: SMTPD, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and (
                data.login.decode(),
                data.password.decode(),
            )
            == self._credentials
        )
        # handled=False: let aiosmtpd answer 535 itself when the login is wrong.
        return AuthResult(success=ok, handled=False)

    def start(self) -> None:
        with self._lock:
            if self._controller is not None:
                return
            kwargs: dict[str, Any] = {"server_hostname": SERVER_NAME, "ready_timeout": 5.0}
            if self.options.tls == "starttls":
                kwargs["tls_context"] = self._tls_context
            elif self.options.tls == "tls":
                kwargs["ssl_context"] = self._tls_context
            if self.options.auth:
                kwargs.update(
                    auth_required=True, auth_require_tls=True, authenticator=self._authenticate
                )
            controller = RecordingController(
                self.handler, hostname=self.host, port=self.port, **kwargs
            )
            controller.start()
            self._controller = controller

    def stop(self) -> None:
        with self._lock:
            controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def restart_after(self, seconds: float) -> threading.Thread:
        """Start again on the same port after ``seconds``, from another thread."""

        def later() -> None:
            time.sleep(seconds)
            self.start()

        thread = threading.Thread(target=later, daemon=True)
        thread.start()
        return thread


# -- certificates ---------------------------------------------------------------


@pytest.fixture(scope="session")
def cert_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def unknown_cert_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls_context(cert_authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert_authority.issue_cert(HOST, SERVER_NAME).configure_cert(context)
    return context


@pytest.fixture(scope="session")
def untrusted_server_tls_context(unknown_cert_authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    unknown_cert_authority.issue_cert(HOST, SERVER_NAME).configure_cert(context)
    return context


@pytest.fixture(scope="session")
def client_tls_context(cert_authority: trustme.CA) -> ssl.SSLContext:
    """Trusts the test CA and nothing else (no system store)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cert_authority.configure_trust(context)
    return context


@pytest.fixture
def ca_file(tmp_path: Path, cert_authority: trustme.CA) -> Path:
    path = tmp_path / "ca.pem"
    cert_authority.cert_pem.write_to_path(str(path))
    return path


# -- the server -----------------------------------------------------------------


@pytest.fixture(scope="session")
def auth_credentials() -> tuple[str, str]:
    return ("toma", "correct horse battery staple")


@pytest.fixture(scope="session")
def smtp_password_env() -> str:
    """The environment variable `smtp_config` names for the AUTH password."""
    return PASSWORD_ENV


@pytest.fixture
def smtpd_options(request: pytest.FixtureRequest) -> SmtpdOptions:
    marker = request.node.get_closest_marker("smtpd_options")
    return SmtpdOptions(**marker.kwargs) if marker else SmtpdOptions()


@pytest.fixture
def smtpd_handler(smtpd_options: SmtpdOptions) -> RecordingHandler:
    return RecordingHandler(smtpd_options)


@pytest.fixture
def smtpd_server(
    smtpd_options: SmtpdOptions,
    smtpd_handler: RecordingHandler,
    server_tls_context: ssl.SSLContext,
    untrusted_server_tls_context: ssl.SSLContext,
    auth_credentials: tuple[str, str],
) -> Iterator[SmtpServer]:
    context = (
        untrusted_server_tls_context if smtpd_options.cert == "untrusted" else server_tls_context
    )
    server = SmtpServer(smtpd_handler, smtpd_options, context, auth_credentials)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_config(
    smtpd_server: SmtpServer,
    smtpd_options: SmtpdOptions,
    ca_file: Path,
    auth_credentials: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> Smtp:
    """Client settings for the test server: its security, the test CA, AUTH if required."""
    username = None
    if smtpd_options.auth:
        username = auth_credentials[0]
        monkeypatch.setenv(PASSWORD_ENV, auth_credentials[1])
    return Smtp(
        host=smtpd_server.host,
        port=smtpd_server.port,
        security=smtpd_options.tls,
        username=username,
        password=Secret(env=PASSWORD_ENV if username else None, key="smtp.password_env"),
        concurrency=4,
        rate_per_minute=600_000,
        timeout=5.0,
        retry_for=parse_duration("1min"),
        ca_file=ca_file,
    )
