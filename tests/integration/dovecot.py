"""A throwaway Dovecot on 127.0.0.1 for the IMAP tests, and its pytest fixtures.

:class:`Dovecot` writes a configuration into a fresh temporary directory, picks
a free port (Dovecot cannot be given port 0), runs ``dovecot -F -c CONF`` as a
child process and waits until the port accepts connections (a few hundredths
of a second). It stops with ``doveadm kick`` then ``dovecot -c CONF stop``
(about a second) and can start again on the same port, which is how the tests
restart the server under a connected client. Messages are put in place the way
mail arrives from outside: IMAP APPEND, over a connection of the test's own.

Run as root (as in CI), Dovecot's login processes refuse root, so they run as
the package's ``dovenull`` and ``dovecot`` users and mail is owned by
``nobody``; the temporary directory is made world-traversable for them. As an
ordinary user everything runs as that user.

A test module makes the fixtures its own by naming them at module level
(``dovecot_server = dovecot.dovecot_server``), since only ``conftest.py`` files
are searched for fixtures. They skip when Dovecot is not installed
(``apt-get install dovecot-imapd``).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import trustme
from imapclient import IMAPClient

from toma.config import Imap, Secret
from toma.timeutil import parse_duration

HOST = "127.0.0.1"
USER = "toma"
PASSWORD = "correct horse"  # a test account on a server that only listens on loopback
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

_CONFIG = """\
# Written by the toma test suite; removed with its directory.
base_dir = {root}/run
state_dir = {root}/state
instance_name = toma-test-{port}
log_path = {root}/dovecot.log
protocols = imap
listen = {host}
shutdown_clients = yes
# No stats service: it outlives a stop by seconds, and nothing here reads it.
stats_writer_socket_path =
{users}
mail_location = maildir:~/Maildir
# A Sent folder marked by SPECIAL-USE (RFC 6154) under a name no guess would find.
namespace inbox {{
  inbox = yes
  mailbox Outgoing {{
    special_use = \\Sent
  }}
}}
# Notice appends from other sessions at once even without inotify.
mailbox_idle_check_interval = 1 secs
auth_mechanisms = plain login
# A refused login answers at once instead of after the usual two seconds.
auth_failure_delay = 0 secs
{ssl}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""


def free_port() -> int:
    """A port nobody listens on right now (the caller races to bind it; see ``start``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


class Dovecot:
    """One Dovecot instance in its own temporary directory; see the module docstring.

    With ``ca`` the server has a certificate for 127.0.0.1 signed by it, STARTTLS
    on ``port``, implicit TLS on ``tls_port``, and refuses logins without TLS.
    """

    def __init__(self, *, ca: trustme.CA | None = None) -> None:
        self.ca = ca
        self.root = Path(tempfile.mkdtemp(prefix="toma-dovecot-"))
        # Mail and login processes run as other users and must reach their files.
        self.root.chmod(0o755)
        self.conf = self.root / "dovecot.conf"
        self.password_file = self.root / "imap-password"
        self.port = free_port()
        self.tls_port = free_port() if ca else 0
        self._process: subprocess.Popen[bytes] | None = None
        self._folders = 0
        self._write_files()

    # -- the server ------------------------------------------------------------

    def _write_files(self) -> None:
        root = self.root
        home = root / "home" / USER
        home.mkdir(parents=True)
        if os.geteuid() == 0:
            mail_user = pwd.getpwnam("nobody")
            users = (
                "default_login_user = dovenull\n"
                "default_internal_user = dovecot\n"
                "default_internal_group = dovecot"
            )
            os.chown(home, mail_user.pw_uid, mail_user.pw_gid)
        else:
            mail_user = pwd.getpwuid(os.geteuid())
            name = mail_user.pw_name
            group = grp.getgrgid(mail_user.pw_gid).gr_name
            users = (
                f"default_login_user = {name}\n"
                f"default_internal_user = {name}\n"
                f"default_internal_group = {group}"
            )
        if self.ca:
            tls_dir = root / "tls"
            tls_dir.mkdir()
            cert = self.ca.issue_cert(HOST, "localhost")
            cert.cert_chain_pems[0].write_to_path(str(tls_dir / "cert.pem"))
            for pem in cert.cert_chain_pems[1:]:
                pem.write_to_path(str(tls_dir / "cert.pem"), append=True)
            cert.private_key_pem.write_to_path(str(tls_dir / "key.pem"))
            ssl_settings = (
                "ssl = required\n"
                "disable_plaintext_auth = yes\n"
                f"ssl_cert = <{tls_dir}/cert.pem\n"
                f"ssl_key = <{tls_dir}/key.pem"
            )
        else:
            ssl_settings = "ssl = no\ndisable_plaintext_auth = no"
        (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n", encoding="utf-8")
        self.password_file.write_text(PASSWORD + "\n", encoding="utf-8")
        self.password_file.chmod(0o600)
        self.conf.write_text(
            _CONFIG.format(
                root=root,
                host=HOST,
                port=self.port,
                tls_port=self.tls_port,
                users=users,
                ssl=ssl_settings,
                mail_uid=mail_user.pw_uid,
                mail_gid=mail_user.pw_gid,
            ),
            encoding="utf-8",
        )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start and wait until the port accepts connections (a few tries if it is taken)."""
        if self.running:
            return
        for _ in range(3):
            # After a stop the old listeners can linger a moment: try again briefly.
            if self._start_once():
                return
        raise RuntimeError(f"dovecot did not start on {HOST}:{self.port}:\n{self.log()}")

    def _start_once(self) -> bool:
        output = (self.root / "dovecot.out").open("ab")
        with output:
            self._process = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.conf)],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                time.sleep(0.2)  # bounded: at most three tries in start()
                return False
            if _accepts(self.port) and (not self.tls_port or _accepts(self.tls_port)):
                return True
            time.sleep(0.02)
        self.stop()
        return False

    def stop(self) -> None:
        """Stop the server (clients are disconnected); safe to call when it is not running."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            # Dovecot gives a client that was active in the last ten seconds that long
            # to finish; kicking the user first ends its sessions at once, with the
            # same "BYE Server shutting down" a client sees when a server stops.
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                subprocess.run(
                    [DOVEADM, "-c", str(self.conf), "kick", USER],
                    check=False,
                    capture_output=True,
                    timeout=STOP_TIMEOUT,
                )
            # "stop" waits until the master's pid is gone, and our child stays a
            # zombie until we reap it: run it alongside and reap first.
            stopper = subprocess.Popen(
                [DOVECOT, "-c", str(self.conf), "stop"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
            )
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)
            finally:
                try:
                    stopper.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    stopper.kill()
                    stopper.wait(timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _accepts(self.port) and time.monotonic() < deadline:
            time.sleep(0.02)  # login processes close their listeners just after the master

    def restart(self) -> None:
        """Stop, then start again on the same port(s)."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and remove the directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log(self, *, tail: int | None = 4000) -> str:
        """Dovecot's own output and log (the end of it, by default), for failure messages."""
        parts = []
        for name in ("dovecot.out", "dovecot.log"):
            path = self.root / name
            if path.exists():
                parts.append(path.read_text(encoding="utf-8", errors="replace"))
        text = "".join(parts)
        return text[-tail:] if tail else text

    # -- what the tests use ----------------------------------------------------------

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting this server's CA only."""
        context = ssl.create_default_context()
        if self.ca:
            self.ca.configure_trust(context)
        return context

    def imap_config(
        self,
        *,
        folder: str = "INBOX",
        security: str | None = None,
        password_file: Path | None = None,
        idle: bool = True,
        poll_every: str = "5min",
    ) -> Imap:
        """toma's ``[imap]`` section for this server; ``security`` defaults to what it offers."""
        if security is None:
            security = "tls" if self.ca else "none"
        return Imap(
            host=HOST,
            port=self.tls_port if security == "tls" else self.port,
            security=security,
            username=USER,
            password=Secret(file=password_file or self.password_file, key="imap.password_file"),
            folder=folder,
            idle=idle,
            poll_every=parse_duration(poll_every),
        )

    @contextlib.contextmanager
    def client(self) -> Iterator[IMAPClient]:
        """A logged-in connection of the test's own, as another mail program would have."""
        if self.ca:
            client = IMAPClient(HOST, self.tls_port, ssl_context=self.client_context(), timeout=10)
        else:
            client = IMAPClient(HOST, self.port, ssl=False, timeout=10)
        try:
            client.login(USER, PASSWORD)
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def append(
        self, data: bytes, *, folder: str = "INBOX", flags: Sequence[str | bytes] = ()
    ) -> int:
        """APPEND a message; returns its UID."""
        with self.client() as client:
            answer = client.append(folder, data, flags=tuple(flags))
        found = re.search(rb"APPENDUID \d+ (\d+)", answer or b"")
        if not found:
            raise AssertionError(f"no APPENDUID in {answer!r}")
        return int(found.group(1))

    def empty(self, folder: str) -> None:
        """Delete every message in ``folder`` (which must exist)."""
        with self.client() as client:
            client.select_folder(folder)
            uids = client.search("ALL")
            if uids:
                client.delete_messages(uids)
                client.expunge()

    def flags(self, uid: int, *, folder: str = "INBOX") -> tuple[bytes, ...]:
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            answer = client.get_flags([uid])
        return tuple(answer.get(uid, ()))

    def new_folder(self) -> str:
        """Create a folder no other test uses and return its name."""
        self._folders += 1
        name = f"test{self._folders}"
        self.create(name)
        return name

    def create(self, folder: str) -> None:
        with self.client() as client:
            client.create_folder(folder)

    def recreate(self, folder: str) -> None:
        """Delete and create ``folder`` again: it gets a new UIDVALIDITY."""
        with self.client() as client:
            client.delete_folder(folder)
            client.create_folder(folder)

    def uidvalidity(self, folder: str = "INBOX") -> int:
        with self.client() as client:
            status = client.folder_status(folder, [b"UIDVALIDITY"])
        return int(status[b"UIDVALIDITY"])


def message(number: int, *, subject: str | None = None) -> bytes:
    """A small, complete message whose Message-ID carries ``number``."""
    return (
        f"From: Ann Example <ann@example.com>\r\n"
        f"To: Owner <owner@example.org>\r\n"
        f"Subject: {subject or f'message {number}'}\r\n"
        f"Date: Mon, 01 Jan 2024 10:00:{number % 60:02d} +0000\r\n"
        f"Message-ID: <test-{number}@example.com>\r\n"
        f"\r\n"
        f"Body of message {number}.\r\n"
    ).encode()


@contextlib.contextmanager
def _running(server: Dovecot) -> Iterator[Dovecot]:
    """Started, and stopped and removed afterwards whatever happened."""
    try:
        server.start()
        yield server
    finally:
        server.close()


def _need_dovecot() -> None:
    # A missing server fails the run: a test that cannot talk to a real IMAP
    # server must not pass for one that did. scripts/test installs it.
    if not Path(DOVECOT).exists():
        pytest.fail("Dovecot is not installed: run scripts/test, or apt-get install dovecot-imapd")


@pytest.fixture(scope="session")
def dovecot_ca() -> trustme.CA:
    return trustme.CA()


# Stopping Dovecot takes one to three seconds (its log process lingers), so the
# servers are shared by the tests of a module; each test works in a folder of
# its own (``Dovecot.new_folder``). Tests that stop the server get their own.


@pytest.fixture(scope="module")
def dovecot_server() -> Iterator[Dovecot]:
    """A Dovecot without TLS (``security = "none"`` is allowed on loopback)."""
    _need_dovecot()
    with _running(Dovecot()) as server:
        yield server


@pytest.fixture(scope="module")
def dovecot_tls_server(dovecot_ca: trustme.CA) -> Iterator[Dovecot]:
    """A Dovecot requiring TLS, its certificate signed by ``dovecot_ca``."""
    _need_dovecot()
    with _running(Dovecot(ca=dovecot_ca)) as server:
        yield server


@pytest.fixture
def dovecot_own_server() -> Iterator[Dovecot]:
    """A Dovecot for one test alone, free to stop and restart it."""
    _need_dovecot()
    with _running(Dovecot()) as server:
        yield server
