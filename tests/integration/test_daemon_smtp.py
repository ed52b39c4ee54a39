"""The daemon's ticks against a real aiosmtpd server: at most once, nothing lost."""

from __future__ import annotations

import gc
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from toma.config import Smtp
from toma.core.outbox import MessageState
from toma.daemon.sending import in_doubt_at_most
from toma.daemon.tick import TickReport
from toma.daemon.worker import Worker
from toma.errors import StoreError
from toma.store import MESSAGES, Store, Transaction, open_store
from toma.timeutil import iso

from .conftest import RecordingHandler, SmtpServer
from .projects import make_project, recipient

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday


def tick(config: Path, now: datetime, **options: object) -> dict[str, int]:
    store = open_store(config.parent / "var" / "data")
    try:
        worker = Worker(config, store, **options)  # type: ignore[arg-type]
        worker.recover(now)
        report = worker.run_once(now)
        assert not report.problems, report.problems
        return states(config)
    finally:
        store.close()


def states(config: Path) -> dict[str, int]:
    store = open_store(config.parent / "var" / "data")
    try:
        return dict(Counter(doc["state"] for _key, doc in store.all(MESSAGES)))
    finally:
        store.close()


def received_by(handler: RecordingHandler) -> Counter[str]:
    return Counter(rcpt for message in handler.messages for rcpt in message.rcpt_tos)


def test_500_messages_are_sent_once_each(
    tmp_path: Path, smtp_config: Smtp, smtpd_handler: RecordingHandler
) -> None:
    """One tick delivers every due message; the next tick sends nothing again."""
    config = make_project(tmp_path, smtp=smtp_config, contacts=500, now=NOW)
    assert tick(config, NOW) == {"sent": 500}
    assert tick(config, NOW + timedelta(hours=1)) == {"sent": 500}
    received = received_by(smtpd_handler)
    assert len(received) == 500
    assert set(received.values()) == {1}
    assert set(received) == {recipient(n) for n in range(500)}


@pytest.mark.smtpd_options(tls="starttls", auth=True)
def test_a_refused_password_is_tried_once_until_it_changes(
    tmp_path: Path,
    smtp_config: Smtp,
    smtpd_handler: RecordingHandler,
    auth_credentials: tuple[str, str],
) -> None:
    """A wrong password is refused once: the tick's other messages and its retries do not
    try it again (a server counting refusals, fail2ban or a provider's lockout, would shut
    the address or the account out), nor do the next ticks until the pause is over, be
    they the daemon's or cron's (each tick here is a new worker, as a cron run is: the
    refusal is kept in the store). Written anew into the password file, it is tried at
    the next tick."""
    secret = tmp_path / "smtp-password"
    secret.write_text("not the password\n", encoding="utf-8")
    config = make_project(tmp_path, smtp=smtp_config, contacts=6, now=NOW)
    login = (
        f'ca_file = "{smtp_config.ca_file}"\n'
        f'username = "{auth_credentials[0]}"\npassword_file = "{secret}"\n'
    )
    config.write_text(
        config.read_text().replace('retry_for = "1h"\n', f'retry_for = "1h"\n{login}')
    )

    def run_once(now: datetime) -> TickReport:
        store = open_store(config.parent / "var" / "data")
        try:
            # The daemon's own in-tick retries (20 s): none of them is spent on the password.
            return Worker(config, store).run_once(now)
        finally:
            store.close()

    first = run_once(NOW)
    assert (first.sent, first.retrying, smtpd_handler.count("AUTH")) == (0, 6, 1)
    assert any("535" in reason for reason in first.needs_you), first.needs_you
    # Due again (retried a minute later, then two), within the pause: not tried.
    for minutes in (2, 5):
        again = run_once(NOW + timedelta(minutes=minutes))
        assert (again.retrying, smtpd_handler.count("AUTH")) == (6, 1), minutes
        assert any("not tried again" in reason for reason in again.needs_you)
    kept = [f.read_bytes() for f in (config.parent / "var" / "data").rglob("*") if f.is_file()]
    assert kept and not any(b"not the password" in data for data in kept)
    secret.write_text(f"{auth_credentials[1]}\n", encoding="utf-8")
    fixed = run_once(NOW + timedelta(minutes=10))
    assert (fixed.sent, fixed.retrying) == (6, 0)
    # One sign-in per connection now: the first alone, then the others of the pool.
    assert 2 <= smtpd_handler.count("AUTH") <= 1 + smtp_config.concurrency
    assert fixed.needs_you == []
    assert len(smtpd_handler.messages) == 6


@pytest.mark.smtpd_options(refuse_for=1.5)
def test_server_refusing_for_a_while_then_accepting(
    tmp_path: Path, smtp_config: Smtp, smtpd_handler: RecordingHandler
) -> None:
    """Connections turned away (421) for a while: retried with back-off, each arrives once."""
    config = make_project(tmp_path, smtp=smtp_config, contacts=40, now=NOW)
    assert tick(config, NOW, in_tick_retry=timedelta(seconds=15)) == {"sent": 40}
    received = received_by(smtpd_handler)
    assert len(received) == 40
    assert set(received.values()) == {1}


def test_outage_across_ticks_is_made_good_at_a_later_tick(
    tmp_path: Path, smtp_config: Smtp, smtpd_server: SmtpServer, smtpd_handler: RecordingHandler
) -> None:
    """Server down for a whole tick: messages wait for their retry time, then go once."""
    config = make_project(tmp_path, smtp=smtp_config, contacts=30, now=NOW)
    smtpd_server.stop()
    assert tick(config, NOW, in_tick_retry=timedelta(seconds=0)) == {"planned": 30}
    # Before the retry time nothing is tried again.
    assert tick(config, NOW + timedelta(seconds=10)) == {"planned": 30}
    smtpd_server.start()
    assert tick(config, NOW + timedelta(minutes=2)) == {"sent": 30}
    received = received_by(smtpd_handler)
    assert len(received) == 30
    assert set(received.values()) == {1}


@pytest.mark.smtpd_options(rcpt_answers={"person3@example.org": "550 5.1.1 No such user"})
def test_a_550_fails_that_message_only(
    tmp_path: Path, smtp_config: Smtp, smtpd_handler: RecordingHandler
) -> None:
    config = make_project(tmp_path, smtp=smtp_config, contacts=10, now=NOW)
    assert tick(config, NOW) == {"sent": 9, "failed": 1}
    store = open_store(tmp_path / "var" / "data")
    try:
        failed = [doc for _k, doc in store.all(MESSAGES) if doc["state"] == "failed"]
    finally:
        store.close()
    assert failed[0]["contact"] == "person3@example.org"
    assert failed[0]["code"] == 550
    assert "No such user" in failed[0]["detail"]
    assert recipient(3) not in received_by(smtpd_handler)
    # Permanent: not tried again.
    assert tick(config, NOW + timedelta(days=1)) == {"sent": 9, "failed": 1}


def descendants(pid: int) -> list[int]:
    """The processes below ``pid``, read from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        below = [child for child, parent in parents.items() if parent in frontier]
        found += below
        frontier = below
    return found


def outlived(pids: list[int], *, seconds: float) -> list[int]:
    """Those of ``pids`` still running after waiting up to ``seconds`` for them to end."""
    deadline = time.monotonic() + seconds
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [pid for pid in alive if Path(f"/proc/{pid}").exists()]
    return alive


@pytest.mark.smtpd_options(data_delay=0.01)
def test_sigkill_in_the_middle_of_a_tick_sends_nothing_twice(
    tmp_path: Path, smtp_config: Smtp, smtpd_handler: RecordingHandler
) -> None:
    """Killed mid-tick and restarted: nobody gets two; each is received or reported unknown."""
    config = make_project(tmp_path, smtp=smtp_config, contacts=500, now=NOW)
    command = [
        sys.executable,
        "-m",
        "toma",
        "--config",
        str(config),
        "run",
        "--once",
        "--now",
        iso(NOW),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    try:
        while len(smtpd_handler.messages) < 100 and time.monotonic() < deadline:
            assert child.poll() is None, "the tick ended before it could be killed"
            time.sleep(0.01)
        builders = descendants(child.pid)  # the fork server and the builder worker
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    before = len(smtpd_handler.messages)
    assert 100 <= before < 500
    assert builders, "a 500-message tick builds in a worker process"
    assert outlived(builders, seconds=10) == [], "the builder outlived the killed daemon"

    restart = subprocess.run(
        [*command[:-1], iso(NOW + timedelta(minutes=5))],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert restart.returncode == 0, restart.stderr

    received = received_by(smtpd_handler)
    assert set(received.values()) == {1}, "a recipient got a message twice"
    store = open_store(tmp_path / "var" / "data")
    try:
        by_contact = {doc["contact"]: doc["state"] for _k, doc in store.all(MESSAGES)}
    finally:
        store.close()
    for number in range(500):
        address = recipient(number)
        state = by_contact.get(address)
        assert (address in received) == (state == MessageState.SENT) or state == "unknown", (
            address,
            state,
        )
        assert address in received or state == "unknown", (address, state)
    unknown = [a for a, s in by_contact.items() if s == "unknown"]
    # Only what was handed to the server (in flight, or its outcome not yet
    # recorded) is left in doubt; what was marked ahead went at the restart.
    assert len(unknown) <= in_doubt_at_most(smtp_config.concurrency)
    # In doubt yet never received: only a body cut off by the kill, one per connection.
    assert len([a for a in unknown if a not in received]) <= smtp_config.concurrency
    assert len(received) + len([a for a in unknown if a not in received]) == 500
    status = subprocess.run(
        [sys.executable, "-m", "toma", "--config", str(config), "status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert status.returncode == 78, status.stderr  # messages in doubt need their owner
    assert "Unknown (may or may not have gone; never resent)" in status.stdout


class FullDisk:
    """A store whose disk is full once the server has received ``after`` messages."""

    def __init__(self, inner: Store, handler: RecordingHandler, after: int) -> None:
        self.inner, self.handler, self.after = inner, handler, after

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        if len(self.handler.messages) >= self.after:
            raise StoreError("cannot append to the journal: No space left on device")
        with self.inner.transaction() as tx:
            yield tx


@pytest.mark.smtpd_options(data_delay=0.005)
def test_a_full_disk_mid_tick_stops_the_sends_and_loses_nothing(
    tmp_path: Path, smtp_config: Smtp, smtpd_handler: RecordingHandler
) -> None:
    """Records that cannot be written stop the tick: nothing goes unrecorded, nothing twice."""
    config = make_project(tmp_path, smtp=smtp_config, contacts=400, now=NOW)
    store = open_store(tmp_path / "var" / "data")
    try:
        worker = Worker(config, FullDisk(store, smtpd_handler, after=60))  # type: ignore[arg-type]
        report = worker.run_once(NOW)
    finally:
        store.close()
    assert any("No space left on device" in problem for problem in report.problems)
    stopped_at = len(smtpd_handler.messages)
    assert 60 <= stopped_at < 400
    # Every message the server holds was durably `sending` before it went.
    store = open_store(tmp_path / "var" / "data")
    try:
        by_contact = {doc["contact"]: doc["state"] for _k, doc in store.all(MESSAGES)}
    finally:
        store.close()
    for address in received_by(smtpd_handler):
        assert by_contact.get(address) in ("sending", "sent"), (address, by_contact.get(address))

    # Space again: the next tick sends the rest, and nothing twice.
    final = tick(config, NOW + timedelta(minutes=5))
    received = received_by(smtpd_handler)
    assert set(received.values()) == {1}, "a recipient got a message twice"
    assert final.get("unknown", 0) <= in_doubt_at_most(smtp_config.concurrency)
    assert final["sent"] + final.get("unknown", 0) == 400
    assert len(received) >= final["sent"]


@pytest.mark.smtpd_options(data_delay=0.005)
def test_a_full_disk_is_one_clear_line_not_a_traceback(
    tmp_path: Path,
    smtp_config: Smtp,
    smtpd_handler: RecordingHandler,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Every send's error is heard: no "Task exception was never retrieved", no traceback."""
    config = make_project(tmp_path, smtp=smtp_config, contacts=400, now=NOW)
    store = open_store(tmp_path / "var" / "data")
    caplog.set_level(logging.DEBUG)
    try:
        worker = Worker(config, FullDisk(store, smtpd_handler, after=60))  # type: ignore[arg-type]
        report = worker.run_once(NOW)
    finally:
        store.close()
    gc.collect()  # an unretrieved task error is reported when the task is collected
    assert report.problems == ["cannot append to the journal: No space left on device"]
    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()
        assert "never retrieved" not in record.getMessage()
        assert record.name != "asyncio", record.getMessage()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == ["tick failed", "cannot record the tick"]
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert "never retrieved" not in captured.err + captured.out


@pytest.mark.smtpd_options(data_delay=0.005)
def test_a_full_file_system_under_the_cli_is_one_line_and_sends_nothing_unrecorded(
    tmp_path: Path, smtp_config: Smtp, smtpd_handler: RecordingHandler
) -> None:
    """A real write failure mid-tick (the journal may grow no further), through `toma run`."""
    config = make_project(tmp_path, smtp=smtp_config, contacts=300, now=NOW)
    data = tmp_path / "var" / "data"
    grown = max(path.stat().st_size for path in data.iterdir() if path.is_file())
    room = grown + 150_000  # the enrolments and some marks, then no more

    def full() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails: EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (room, room))

    run = subprocess.run(
        [sys.executable, "-m", "toma", "--config", str(config), "run", "--once", "--now", iso(NOW)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=full,
        check=False,
    )
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert "never retrieved" not in run.stderr
    problems = [line for line in run.stderr.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 1 and "File too large" in problems[0], run.stderr[-3000:]
    assert 0 < len(smtpd_handler.messages) < 300

    # Room again: the rest goes, nobody twice, every message received was recorded first.
    final = tick(config, NOW + timedelta(minutes=5))
    received = received_by(smtpd_handler)
    assert set(received.values()) == {1}, "a recipient got a message twice"
    assert final["sent"] + final.get("unknown", 0) == 300
    assert final.get("unknown", 0) <= in_doubt_at_most(smtp_config.concurrency)
