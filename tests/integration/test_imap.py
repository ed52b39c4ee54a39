"""ImapSource and ImapWatcher against a real Dovecot on 127.0.0.1.

Messages arrive the way mail does, through another connection (IMAP APPEND);
toma's side must find them, once, without changing anything on the server.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme

from toma.config import Imap, Secret
from toma.inbox.base import (
    Cursor,
    InboxError,
    InboxLoginError,
    InboxUnavailable,
)
from toma.inbox.imap import ImapSource
from toma.inbox.imapwatch import ImapWatcher

from . import dovecot
from .dovecot import HOST, USER, Dovecot, free_port, message

# The fixtures live with the server they start; naming them here is how pytest
# finds them without a conftest.py (and without imports a linter calls unused).
dovecot_ca = dovecot.dovecot_ca
dovecot_server = dovecot.dovecot_server
dovecot_tls_server = dovecot.dovecot_tls_server
dovecot_own_server = dovecot.dovecot_own_server

pytestmark = pytest.mark.timeout(30)

WAIT = 10.0  # the longest any single wait may take; expected within a second or two


class Calls:
    """Counts ``on_new()`` calls from the watcher's thread; tests wait for a count."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    def __call__(self) -> None:
        with self._changed:
            self._count += 1
            self._changed.notify_all()

    @property
    def count(self) -> int:
        with self._changed:
            return self._count

    def wait_for(self, count: int, timeout: float = WAIT) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._count >= count, timeout)


class LogEvents(logging.Handler):
    """The watcher's log lines as they come, from any thread; tests wait for one by name."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._records: list[logging.LogRecord] = []
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._changed:
            self._records.append(record)
            self._changed.notify_all()

    def named(self, event: str) -> list[logging.LogRecord]:
        with self._changed:
            return [r for r in self._records if r.getMessage() == event]

    def wait_for(self, event: str, count: int = 1, timeout: float = WAIT) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: sum(r.getMessage() == event for r in self._records) >= count, timeout
            )


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    return dict(getattr(record, "toma", {}))


@pytest.fixture
def imap_log() -> Iterator[LogEvents]:
    handler = LogEvents()
    logger = logging.getLogger("toma.inbox")  # imap and imapwatch
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def watch() -> Iterator[list[ImapWatcher]]:
    """Watchers made by a test are stopped after it, whatever happened."""
    watchers: list[ImapWatcher] = []
    yield watchers
    for watcher in watchers:
        watcher.stop()


def plain(port: int, tmp_path: Path) -> Imap:
    """A config for a server on this machine without TLS."""
    secret = tmp_path / "password"
    secret.write_text("secret\n")
    return Imap(
        host=HOST,
        port=port,
        security="none",
        username=USER,
        password=Secret(file=secret, key="imap.password_file"),
    )


def lasting(flags: tuple[bytes, ...]) -> set[bytes]:
    """Flags without \\Recent, which belongs to a session rather than the message."""
    return set(flags) - {b"\\Recent"}


def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


class TestFetch:
    def test_appended_messages_are_fetched_once_and_a_restart_resumes(
        self, dovecot_server: Dovecot
    ) -> None:
        """Oldest first, each once; a new source (a restart) continues from the stored cursor."""
        sent = [message(n) for n in range(3)]
        uids = [dovecot_server.append(data) for data in sent]
        uidvalidity = dovecot_server.uidvalidity("INBOX")

        with ImapSource(dovecot_server.imap_config()) as source:
            batch = source.fetch(None)
            assert [m.data for m in batch.messages] == sent
            assert [m.key for m in batch.messages] == [
                f"imap:INBOX:{uidvalidity}:{uid}" for uid in uids
            ]
            now = datetime.now(UTC)
            for got in batch.messages:  # INTERNALDATE: when the server took it in, as UTC
                assert got.received_at is not None
                assert got.received_at.tzinfo is UTC
                assert abs(got.received_at - now) < timedelta(minutes=1)
            assert batch.resynced is False
            assert batch.cursor.to_doc() == {
                "folder": "INBOX",
                "uidvalidity": uidvalidity,
                "last_uid": uids[-1],
            }
            assert source.fetch(batch.cursor).messages == ()
            stored = batch.cursor.to_doc()

        later = message(3)
        dovecot_server.append(later)
        with ImapSource(dovecot_server.imap_config()) as restarted:
            batch = restarted.fetch(Cursor.from_doc(stored))
            assert [m.data for m in batch.messages] == [later]

    def test_limit_pages_oldest_first(self, dovecot_server: Dovecot) -> None:
        folder = dovecot_server.new_folder()
        sent = [message(n) for n in range(10, 15)]
        for data in sent:
            dovecot_server.append(data, folder=folder)
        got: list[bytes] = []
        sizes: list[int] = []
        cursor = None
        with ImapSource(dovecot_server.imap_config(folder=folder)) as source:
            for _ in range(10):  # bounded: three rounds are needed
                batch = source.fetch(cursor, limit=2)
                got += [m.data for m in batch.messages]
                sizes.append(len(batch.messages))
                cursor = batch.cursor
                if len(batch.messages) < 2:
                    break
        assert sizes == [2, 2, 1]
        assert got == sent

    def test_fetch_changes_no_flags(self, dovecot_server: Dovecot) -> None:
        """No \\Seen, nothing else: the owner's mail client still shows the mail as new."""
        folder = dovecot_server.new_folder()
        unread = dovecot_server.append(message(20), folder=folder)
        flagged = dovecot_server.append(message(21), folder=folder, flags=[b"\\Flagged"])
        before = {
            uid: lasting(dovecot_server.flags(uid, folder=folder)) for uid in (unread, flagged)
        }
        with ImapSource(dovecot_server.imap_config(folder=folder)) as source:
            assert len(source.fetch(None).messages) == 2
        after = {
            uid: lasting(dovecot_server.flags(uid, folder=folder)) for uid in (unread, flagged)
        }
        assert after == before
        assert before == {unread: set(), flagged: {b"\\Flagged"}}

    def test_new_uidvalidity_fetches_the_folder_again(self, dovecot_server: Dovecot) -> None:
        """The folder re-created under a kept connection: everything in it, flagged resynced."""
        folder = dovecot_server.new_folder()
        dovecot_server.append(message(30), folder=folder)
        dovecot_server.append(message(31), folder=folder)
        with ImapSource(dovecot_server.imap_config(folder=folder), first_delay=0.05) as source:
            first = source.fetch(None)
            assert len(first.messages) == 2
            old = first.cursor.uidvalidity

            dovecot_server.recreate(folder)
            new = dovecot_server.uidvalidity(folder)
            assert new != old, "Dovecot kept the UIDVALIDITY; the test cannot go on"
            again = [message(32), message(33)]
            for data in again:
                dovecot_server.append(data, folder=folder)

            batch = source.fetch(first.cursor)
            assert batch.resynced is True
            assert [m.data for m in batch.messages] == again
            assert batch.cursor.uidvalidity == new
            assert all(m.key.startswith(f"imap:{folder}:{new}:") for m in batch.messages)
            after = source.fetch(batch.cursor)
            assert (after.messages, after.resynced) == ((), False)

    def test_missing_folder_is_a_clear_error(self, dovecot_server: Dovecot) -> None:
        config = dovecot_server.imap_config(folder="No such folder")
        with ImapSource(config) as source, pytest.raises(InboxError) as caught:
            source.fetch(None)
        assert not isinstance(caught.value, InboxUnavailable)
        assert "No such folder" in str(caught.value)
        assert caught.value.key == "imap.folder"


class TestFailures:
    def test_wrong_password_is_a_clear_error_tried_once(
        self, dovecot_own_server: Dovecot, imap_log: LogEvents, tmp_path: Path
    ) -> None:
        # A server of its own: Dovecot delays logins from an address that just failed one.
        dovecot_server = dovecot_own_server
        wrong = tmp_path / "wrong"
        wrong.write_text("not the password\n")
        config = dovecot_server.imap_config(password_file=wrong)
        started = time.monotonic()
        with (
            ImapSource(config, first_delay=1.0) as source,
            pytest.raises(InboxLoginError) as caught,
        ):
            source.fetch(None)
        assert time.monotonic() - started < 1.0  # no retry pause
        text = str(caught.value)
        assert repr(USER) in text
        assert f"{HOST}:{dovecot_server.port}" in text
        assert caught.value.key == "imap.username"
        assert not imap_log.named("imap retry")

    def test_unreachable_server_fails_after_bounded_attempts(self, tmp_path: Path) -> None:
        """Nothing listening: a few quick tries, then an error naming host:port."""
        port = free_port()
        config = plain(port, tmp_path)
        source = ImapSource(config, attempts=3, first_delay=0.01)
        with source, pytest.raises(InboxUnavailable) as caught:
            source.fetch(None)
        text = str(caught.value)
        assert f"{HOST}:{port}" in text
        assert "connect failed" in text
        assert "3 times" in text

    @pytest.mark.parametrize(
        ("change", "key"),
        [
            ({"security": "ssl"}, "imap.security"),
            ({"username": None}, "imap.username"),
            ({"ca_file": Path("/nonexistent/ca.pem")}, "imap.ca_file"),
        ],
    )
    def test_unusable_config_is_refused_before_connecting(
        self, tmp_path: Path, change: dict[str, Any], key: str
    ) -> None:
        config = dataclasses.replace(plain(143, tmp_path), **change)
        if "ca_file" in change:
            config = dataclasses.replace(config, security="tls")
        with pytest.raises(InboxError) as caught:
            ImapSource(config)
        assert caught.value.key == key

    def test_clear_text_refused_for_a_remote_host(self, tmp_path: Path) -> None:
        config = dataclasses.replace(plain(143, tmp_path), host="mail.example.com")
        with pytest.raises(InboxError, match='security = "none"') as caught:
            ImapSource(config)
        assert caught.value.key == "imap.security"


class TestTls:
    def test_implicit_tls_with_a_trusted_ca(
        self, dovecot_tls_server: Dovecot, dovecot_ca: trustme.CA, tmp_path: Path
    ) -> None:
        folder = dovecot_tls_server.new_folder()
        dovecot_tls_server.append(message(40), folder=folder)
        config = dataclasses.replace(
            dovecot_tls_server.imap_config(folder=folder, security="tls"),
            ca_file=ca_file(dovecot_ca, tmp_path),
        )
        with ImapSource(config) as source:
            assert [m.data for m in source.fetch(None).messages] == [message(40)]

    def test_starttls_with_a_given_context(self, dovecot_tls_server: Dovecot) -> None:
        """The caller's SSL context (here trusting the test CA only) replaces the default."""
        folder = dovecot_tls_server.new_folder()
        dovecot_tls_server.append(message(41), folder=folder)
        config = dovecot_tls_server.imap_config(folder=folder, security="starttls")
        context = dovecot_tls_server.client_context()
        with ImapSource(config, ssl_context=context) as source:
            assert [m.data for m in source.fetch(None).messages] == [message(41)]

    @pytest.mark.parametrize("security", ["tls", "starttls"])
    def test_untrusted_ca_is_refused_without_retrying(
        self, dovecot_tls_server: Dovecot, tmp_path: Path, security: str
    ) -> None:
        config = dataclasses.replace(
            dovecot_tls_server.imap_config(security=security),
            ca_file=ca_file(trustme.CA(), tmp_path),
        )
        started = time.monotonic()
        with ImapSource(config, first_delay=1.0) as source, pytest.raises(InboxError) as caught:
            source.fetch(None)
        assert time.monotonic() - started < 1.0
        assert not isinstance(caught.value, InboxUnavailable)
        assert "not trusted" in str(caught.value)
        assert caught.value.key == "imap.ca_file"


class TestWatcher:
    def test_idle_sees_an_append_promptly(
        self, dovecot_server: Dovecot, watch: list[ImapWatcher], imap_log: LogEvents
    ) -> None:
        """Polling is set to five minutes, so only IDLE can see the message in time."""
        folder = dovecot_server.new_folder()
        calls = Calls()
        watcher = ImapWatcher(dovecot_server.imap_config(folder=folder), calls)
        watch.append(watcher)
        watcher.start()
        assert calls.wait_for(1), "no call after connecting"
        assert imap_log.wait_for("imap idle")
        dovecot_server.append(message(50), folder=folder)
        assert calls.wait_for(2), "the appended message was not noticed"

        started = time.monotonic()
        watcher.stop()
        assert time.monotonic() - started < 2.0  # IDLE is interrupted, not waited out
        assert not watcher.running

    def test_idle_is_reissued_and_still_sees_mail(
        self, dovecot_server: Dovecot, watch: list[ImapWatcher], imap_log: LogEvents
    ) -> None:
        """IDLE is renewed before servers drop it (every 25 minutes; here every 0.2 s)."""
        folder = dovecot_server.new_folder()
        calls = Calls()
        watcher = ImapWatcher(dovecot_server.imap_config(folder=folder), calls, idle_renew=0.2)
        watch.append(watcher)
        watcher.start()
        assert imap_log.wait_for("imap idle", count=3)
        assert calls.count == 1
        dovecot_server.append(message(52), folder=folder)
        assert calls.wait_for(2)
        assert not imap_log.named("imap dropped")

    def test_polling_without_idle(
        self, dovecot_server: Dovecot, watch: list[ImapWatcher], imap_log: LogEvents
    ) -> None:
        folder = dovecot_server.new_folder()
        calls = Calls()
        config = dovecot_server.imap_config(folder=folder, idle=False, poll_every="1s")
        watcher = ImapWatcher(config, calls)
        watch.append(watcher)
        watcher.start()
        assert calls.wait_for(1)
        dovecot_server.append(message(51), folder=folder)
        assert calls.wait_for(2)
        assert imap_log.named("imap poll")
        assert not imap_log.named("imap idle")

    def test_reconnects_after_a_server_restart(
        self, dovecot_own_server: Dovecot, watch: list[ImapWatcher], imap_log: LogEvents
    ) -> None:
        """Dovecot stopped and started on the same port mid-IDLE: mail after it is seen."""
        server = dovecot_own_server
        calls = Calls()
        watcher = ImapWatcher(
            server.imap_config(), calls, first_delay=0.05, max_delay=0.5, timeout=5.0
        )
        watch.append(watcher)
        watcher.start()
        assert calls.wait_for(1)
        assert imap_log.wait_for("imap idle")

        server.restart()
        assert calls.wait_for(2), "no call after reconnecting"
        assert imap_log.wait_for("imap idle", count=2)
        server.append(message(60))
        assert calls.wait_for(3), "the message appended after the restart was not noticed"
        assert imap_log.named("imap dropped")
        reconnects = imap_log.named("imap reconnect")
        assert reconnects
        assert [fields_of(r)["attempt"] for r in reconnects] == list(range(1, len(reconnects) + 1))
        assert all(fields_of(r)["delay"] <= 0.5 for r in reconnects)
        assert watcher.running

    def test_refused_login_is_retried_slowly_and_never_raises(
        self,
        dovecot_own_server: Dovecot,
        watch: list[ImapWatcher],
        imap_log: LogEvents,
        tmp_path: Path,
    ) -> None:
        """A refused login waits the longest delay: retrying fast would only lock the account."""
        dovecot_server = dovecot_own_server
        wrong = tmp_path / "wrong"
        wrong.write_text("nope\n")
        calls = Calls()
        config = dovecot_server.imap_config(password_file=wrong)
        watcher = ImapWatcher(config, calls, first_delay=0.01, max_delay=30.0)
        watch.append(watcher)
        watcher.start()
        assert imap_log.wait_for("imap reconnect")
        (record,) = imap_log.named("imap reconnect")
        assert fields_of(record)["delay"] >= 20.0
        assert "refused the login" in fields_of(record)["error"]
        assert calls.count == 0
        started = time.monotonic()
        watcher.stop()
        assert time.monotonic() - started < 2.0
