"""Reading the inbox yields: bounded storage, a time budget, SIGTERM, and mail set aside once.

A real Maildir on disk (and a real Dovecot for the IMAP cursor), the real store,
the daemon's tick and `toma run --once` as a child process for the signals.
Time is a fake clock where a budget is under test: nothing here sleeps.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from toma.cli import main
from toma.config import load_config
from toma.daemon.worker import Worker
from toma.inbox.imap import ImapSource
from toma.inbox.sync import LIST_CAP, SUBJECT_CAP, TEXT_CAP, SyncReport, source_for, sync
from toma.store import CONVERSATIONS, open_store
from toma.timeutil import iso

from . import dovecot
from .dovecot import Dovecot
from .projects import add_contacts, make_project

dovecot_server = dovecot.dovecot_server

pytestmark = pytest.mark.timeout(120)

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def message(
    number: int,
    *,
    sender: str = "stranger@example.com",
    subject: str = "",
    body: str = "Hello.",
    headers: str = "",
) -> bytes:
    return (
        f"From: Someone <{sender}>\r\nTo: Alex <alex@example.com>\r\n"
        f"Subject: {subject or f'message {number}'}\r\nMessage-ID: <m-{number}@example.com>\r\n"
        f"Date: Mon, 02 Mar 2026 09:00:00 +0100\r\n{headers}"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def deliver(project: Path, name: str, data: bytes) -> None:
    """Deliver as an MTA does: write in tmp/, then rename into new/."""
    inbox = project / "var" / "inbox"
    for sub in ("tmp", "new", "cur"):
        (inbox / sub).mkdir(parents=True, exist_ok=True)
    (inbox / "tmp" / name).write_bytes(data)
    (inbox / "tmp" / name).rename(inbox / "new" / name)


def run_sync(config_path: Path, **options: object) -> SyncReport:
    config = load_config(config_path)
    store = open_store(config.paths.data)
    source = source_for(config)
    try:
        return sync(store, config, source, now=NOW, **options)  # type: ignore[arg-type]
    finally:
        source.close()
        store.close()


def conversations(config_path: Path) -> dict[str, dict]:
    store = open_store(config_path.parent / "var" / "data")
    try:
        return dict(store.all(CONVERSATIONS))
    finally:
        store.close()


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def ticking(step: float = 1.0) -> Callable[[], float]:
    """A monotonic clock that moves ``step`` seconds each time it is read."""
    counter = itertools.count()
    return lambda: next(counter) * step


# -- what is stored ------------------------------------------------------------------------


def test_huge_fields_from_strangers_are_not_stored(tmp_path: Path) -> None:
    """Ten strangers' messages with 1 MB subjects, a contact's with a 1 MB text, a bounce naming
    500 addresses: the data directory grows by well under 1 MB (12 MB before), strangers'
    messages keep no body at all. (The issue's subjects were 5 MB; 1 MB makes the same point
    at a fifth of the parsing time.)"""
    config = make_project(tmp_path, now=NOW)
    add_contacts(tmp_path, 1, tag="friend", now=NOW)  # person0@example.org
    assert run_sync(config).recorded == 0  # the store and its secret exist from here on
    before = size_of(tmp_path / "var" / "data")
    for number in range(10):
        deliver(
            tmp_path,
            f"{number:02d}.eml",
            message(number, subject="x" * 1_000_000, body="y" * 200_000),
        )
    deliver(
        tmp_path,
        "10.eml",
        message(10, sender="person0@example.org", subject="z" * 5000, body="w " * 500_000),
    )
    blocks = "".join(
        f"Final-Recipient: rfc822; r{n}@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        for n in range(500)
    )
    deliver(
        tmp_path,
        "11.eml",
        (
            "From: postmaster@evil.example\r\nTo: alex@example.com\r\nSubject: failure\r\n"
            "Message-ID: <dsn-11@evil.example>\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
            "--b\r\nContent-Type: text/plain\r\n\r\nFailed.\r\n"
            "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
            f"Reporting-MTA: dns; mx.evil.example\r\n\r\n{blocks}--b--\r\n"
        ).encode(),
    )

    report = run_sync(config)
    assert report.recorded == 12
    grown = size_of(tmp_path / "var" / "data") - before
    assert grown < 300_000, grown
    docs = {doc["source_key"]: doc for doc in conversations(config).values()}
    for number in range(10):
        doc = docs[f"maildir:{number:02d}.eml"]
        assert "text" not in doc and "problems" not in doc
        assert len(doc["subject"]) <= SUBJECT_CAP + 1
        assert doc["sender"] == "stranger@example.com"
        assert doc["size"] > 1_000_000
    known = docs["maildir:10.eml"]
    assert len(known["subject"]) <= SUBJECT_CAP + 1
    assert TEXT_CAP <= len(known["text"]) <= TEXT_CAP + 1
    bounce = docs["maildir:11.eml"]
    assert bounce["kind"] == "bounce" and bounce["untied"]
    assert len(bounce["recipients"]) == LIST_CAP


# -- a budget, a stop --------------------------------------------------------------------


def test_a_tiny_budget_reads_a_little_each_time_and_nothing_twice(tmp_path: Path) -> None:
    config = make_project(tmp_path, now=NOW)
    for number in range(30):
        deliver(tmp_path, f"{number:03d}.eml", message(number))
    reports = []
    for _ in range(40):
        report = run_sync(config, budget=2.5, clock=ticking())
        reports.append(report)
        if not report.more:
            break
    assert not reports[-1].more
    assert all(1 <= r.recorded <= 3 for r in reports[:-1]), [r.recorded for r in reports]
    assert sum(r.recorded for r in reports) == 30
    assert sum(r.duplicates for r in reports) == 0
    assert len(conversations(config)) == 30


def test_a_stop_request_ends_the_sync_between_messages(tmp_path: Path) -> None:
    config = make_project(tmp_path, now=NOW)
    for number in range(25):
        deliver(tmp_path, f"{number:03d}.eml", message(number))
    asked = itertools.count()
    first = run_sync(config, should_stop=lambda: next(asked) >= 8)
    assert first.more and 1 <= first.recorded < 25
    assert len(conversations(config)) == first.recorded
    rest = run_sync(config)
    assert not rest.more
    assert first.recorded + rest.recorded == 25
    assert rest.duplicates == 0


def test_imap_resumes_right_after_the_last_message_read(
    tmp_path: Path, dovecot_server: Dovecot
) -> None:
    """The UID cursor of a part-read batch: each sync reads on from where the last stopped."""
    folder = dovecot_server.new_folder()
    for number in range(12):
        dovecot_server.append(message(number), folder=folder)
    config_path = make_project(tmp_path, now=NOW)
    imap = dovecot_server.imap_config(folder=folder)
    config_path.write_text(
        config_path.read_text()
        + (
            f'\n[inbox]\nkind = "imap"\n\n[imap]\nhost = "{imap.host}"\nport = {imap.port}\n'
            f'security = "none"\nusername = "{imap.username}"\n'
            f'password_file = "{imap.password.file}"\nfolder = "{folder}"\n'
        )
    )
    config = load_config(config_path)
    store = open_store(config.paths.data)
    recorded = []
    try:
        with ImapSource(config.imap) as source:
            for _ in range(20):
                report = sync(store, config, source, now=NOW, budget=1.5, clock=ticking())
                recorded.append(report.recorded)
                assert report.duplicates == 0
                if not report.more:
                    break
        keys = sorted(
            int(doc["source_key"].rsplit(":", 1)[1]) for _k, doc in store.all(CONVERSATIONS)
        )
    finally:
        store.close()
    assert sum(recorded) == 12 and max(recorded) <= 2 and len(recorded) >= 6
    assert keys == list(range(1, 13))


def test_a_slow_inbox_does_not_hold_back_due_mail(tmp_path: Path) -> None:
    """Thousands of messages waiting and a one-second inbox budget (tick_every = 2s): the
    first tick sends everything due and reads part of the inbox; later ticks read the rest."""
    config = make_project(tmp_path, contacts=5, now=NOW)
    config.write_text(config.read_text() + '\n[daemon]\ntick_every = "2s"\n')
    total = 2500
    for number in range(total):
        deliver(tmp_path, f"{number:05d}.eml", message(number, body="Hello there. " * 1000))
    store = open_store(tmp_path / "var" / "data")
    try:
        worker = Worker(config, store)
        first = worker.run_once(NOW)
        assert not first.problems, first.problems
        assert first.sent == 5
        assert 0 < first.inbound < total
        read = first.inbound
        for tick in range(1, 30):
            report = worker.run_once(NOW + timedelta(minutes=tick))
            read += report.inbound
            if read >= total:
                break
        assert read == total
        assert store.count(CONVERSATIONS) == total
    finally:
        store.close()


def once_command(config: Path, now: datetime) -> list[str]:
    return [
        sys.executable,
        "-m",
        "toma",
        "--config",
        str(config),
        "run",
        "--once",
        "--now",
        iso(now),
    ]


def run_once_again(config: Path, now: datetime, timeout: float) -> subprocess.CompletedProcess[str]:
    """The next `toma run --once`, to completion (the one after a stop or a crash)."""
    return subprocess.run(
        once_command(config, now), capture_output=True, text=True, timeout=timeout, check=False
    )


def toma_once(config: Path, now: datetime) -> subprocess.Popen[str]:
    return subprocess.Popen(
        once_command(config, now),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(child: subprocess.Popen[str], wanted: str, count: int = 1) -> None:
    assert child.stderr is not None
    seen = 0
    for line in child.stderr:
        if wanted in line:
            seen += 1
            if seen >= count:
                return
    raise AssertionError(f"the child ended before logging {wanted!r} {count} times")


def test_sigterm_during_a_sync_ends_it_promptly(tmp_path: Path) -> None:
    config = make_project(tmp_path, contacts=3, now=NOW)
    total = 3000
    for number in range(total):
        deliver(tmp_path, f"{number:05d}.eml", message(number))
    child = toma_once(config, NOW)
    try:
        wait_for_line(child, " inbound ", count=300)
        child.send_signal(signal.SIGTERM)
        asked = time.monotonic()
        child.communicate(timeout=30)
        took = time.monotonic() - asked
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0
    assert took < 10, took
    recorded = len(conversations(config))
    assert 0 < recorded < total

    again = run_once_again(config, NOW + timedelta(minutes=5), timeout=120)
    assert again.returncode == 0, again.stderr
    assert len(conversations(config)) == total


# -- set aside once -----------------------------------------------------------------------


def many_headers(count: int) -> bytes:
    """The issue's message: 200,000 distinct header fields, 2.4 MB."""
    fields = "".join(f"X-F{n}: v\r\n" for n in range(count))
    return message(1, sender="eve@evil.example", headers=fields)


def test_a_crash_while_reading_sets_the_message_aside_for_good(tmp_path: Path) -> None:
    """SIGKILL while a huge message is being read: the restart does not read it again, goes on
    with the next one, and `toma status` lists it by mailbox and file key."""
    config = make_project(tmp_path, contacts=2, now=NOW)
    deliver(tmp_path, "1-before.eml", message(1))
    deliver(tmp_path, "2-huge.eml", many_headers(200_000))
    deliver(tmp_path, "3-after.eml", message(3))

    child = toma_once(config, NOW)
    try:
        wait_for_line(child, "inbound reading")
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    docs = {doc["source_key"]: doc for doc in conversations(config).values()}
    assert set(docs) == {"maildir:1-before.eml", "maildir:2-huge.eml"}
    aside = docs["maildir:2-huge.eml"]
    assert aside["set_aside"] and aside["kind"] == "unread"
    assert aside["reason"].startswith("reading it did not finish")

    again = run_once_again(config, NOW + timedelta(minutes=5), timeout=60)
    assert again.returncode == 0, again.stderr
    assert "inbound reading" not in again.stderr
    docs = {doc["source_key"]: doc for doc in conversations(config).values()}
    assert set(docs) == {"maildir:1-before.eml", "maildir:2-huge.eml", "maildir:3-after.eml"}
    assert docs["maildir:2-huge.eml"]["set_aside"]

    status = CliRunner().invoke(main, ["--config", str(config), "status"])
    assert "Inbox, set aside" in status.output
    assert "file 2-huge.eml" in status.output
    assert str(tmp_path / "var" / "inbox") in status.output


def test_what_the_reader_gave_up_on_is_set_aside_once(tmp_path: Path) -> None:
    """A Reading with ``unread`` set (what the reader returns when parsing fails or runs out
    of its budget) is recorded once by its place in the mailbox, listed by `toma status`,
    and the same bytes are not read again, also under another name."""
    import hashlib

    from toma.core.reading.classify import read_message
    from toma.inbox.base import Cursor, Inbound
    from toma.inbox.sync import _Read, _record, cursor_key

    config_path = make_project(tmp_path, now=NOW)
    data = message(1, sender="eve@evil.example")
    deliver(tmp_path, "gave-up.eml", data)
    config = load_config(config_path)
    given_up = replace(read_message(data), unread="reading took longer than its budget")
    store = open_store(config.paths.data)
    try:
        _record(
            store,
            config,
            [
                _Read(
                    Inbound("maildir:gave-up.eml", data, None),
                    given_up,
                    hashlib.sha256(data).hexdigest(),
                )
            ],
            Cursor(),
            cursor_key(config),
            NOW,
            SyncReport(),
        )
    finally:
        store.close()
    deliver(tmp_path, "copy.eml", data)  # the same bytes again, under another key

    report = run_sync(config_path)
    assert (report.recorded, report.duplicates) == (0, 1)
    docs = list(conversations(config_path).values())
    assert len(docs) == 1 and docs[0]["key"] == "aside:maildir:gave-up.eml"
    assert docs[0]["reason"] == "reading took longer than its budget"
    assert docs[0]["sender"] == "eve@evil.example" and "text" not in docs[0]
    status = CliRunner().invoke(main, ["--config", str(config_path), "status"])
    assert "file gave-up.eml" in status.output
    assert "reading took longer than its budget" in status.output
