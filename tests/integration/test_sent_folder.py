"""The owner's Sent folder against a real Dovecot and a real aiosmtpd.

What toma sends over SMTP lands in the Sent folder exactly once, across a
SIGKILL and a restart too; a refused APPEND never blocks or repeats a send;
what the owner writes by hand is logged and steps the sequences back; a
second configured folder is read.
"""

from __future__ import annotations

import email
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from toma.cli import main
from toma.config import Smtp, load_config
from toma.inbox.sentcopy import SPOOL, Spool, copy_sent
from toma.store import CONVERSATIONS, ENROLMENTS, MESSAGES, SYNC, open_store
from toma.timeutil import iso

from . import dovecot
from .conftest import RecordingHandler
from .dovecot import Dovecot
from .projects import make_project, table, tick

dovecot_server = dovecot.dovecot_server

pytestmark = pytest.mark.timeout(120)

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday


def with_imap(config: Path, server: Dovecot, extra: str = "") -> Path:
    """``config`` reading ``server`` over IMAP, ``extra`` (TOML lines) added to [imap]."""
    settings = server.imap_config()
    text = config.read_text()
    config.write_text(
        text.replace(
            "[windows.default]",
            '[inbox]\nkind = "imap"\n\n'
            f'[imap]\nhost = "{settings.host}"\nport = {settings.port}\nsecurity = "none"\n'
            f'username = "{settings.username}"\npassword_file = "{settings.password.file}"\n'
            f"{extra}\n\n[windows.default]",
        )
    )
    return config


def in_folder(server: Dovecot, folder: str) -> list[tuple[bytes, tuple[bytes, ...]]]:
    """(message, flags) of everything in ``folder``."""
    with server.client() as client:
        client.select_folder(folder, readonly=True)
        uids = client.search(["ALL"])
        items = client.fetch(uids, ["BODY.PEEK[]", "FLAGS"]) if uids else {}
    return [(bytes(item[b"BODY[]"]), tuple(item[b"FLAGS"])) for item in items.values()]


def message_ids(messages: list[tuple[bytes, tuple[bytes, ...]]]) -> Counter[str]:
    found: Counter[str] = Counter()
    for data, _flags in messages:
        match = re.search(rb"^Message-ID:\s*(<[^>\r\n]*>)", data, re.MULTILINE | re.IGNORECASE)
        assert match, data[:300]
        found[match.group(1).decode()] += 1
    return found


def sent_records(config: Path) -> dict[str, dict[str, object]]:
    return {k: d for k, d in table(config, MESSAGES).items() if d["state"] == "sent"}


def spooled(config: Path) -> list[Path]:
    folder = config.parent / "var" / "data" / SPOOL
    return sorted(folder.glob("*.eml")) if folder.exists() else []


def test_a_tick_puts_each_message_it_sends_in_the_sent_folder_once(
    tmp_path: Path,
    dovecot_server: Dovecot,
    smtp_config: Smtp,
    smtpd_handler: RecordingHandler,
) -> None:
    """Five sent over SMTP: five copies, byte for byte what the server took, flagged Seen,
    none twice after another tick."""
    sent_folder = dovecot_server.new_folder()
    config = make_project(tmp_path, smtp=smtp_config, contacts=5, now=NOW)
    with_imap(config, dovecot_server, f'sent_folder = "{sent_folder}"')
    tick(config, NOW)
    records = sent_records(config)
    assert len(records) == 5
    copies = in_folder(dovecot_server, sent_folder)
    assert message_ids(copies) == Counter({str(d["message_id"]): 1 for d in records.values()})
    assert all(rb"\Seen" in flags for _data, flags in copies)
    assert {data for data, _f in copies} == {m.data for m in smtpd_handler.messages}
    assert spooled(config) == []

    tick(config, NOW + timedelta(minutes=1))  # reads the Sent folder: toma's own, not by hand
    assert message_ids(in_folder(dovecot_server, sent_folder)) == message_ids(copies)
    assert not [d for d in table(config, CONVERSATIONS).values() if d["kind"] == "handwritten"]


def test_a_copy_made_before_a_crash_is_not_made_again(
    tmp_path: Path, dovecot_server: Dovecot, smtp_config: Smtp
) -> None:
    """Killed between the APPEND and the removal of its spool file: the next run finds the
    Message-ID in the folder and appends nothing."""
    sent_folder = dovecot_server.new_folder()
    config = make_project(tmp_path, smtp=smtp_config, contacts=2, now=NOW)
    with_imap(config, dovecot_server, f'sent_folder = "{sent_folder}"')
    tick(config, NOW)
    [(data, _flags), *_rest] = in_folder(dovecot_server, sent_folder)
    key = next(k for k, d in sent_records(config).items() if str(d["message_id"]).encode() in data)
    loaded = load_config(config)
    Spool.of(loaded).keep(key, data)  # what the crash leaves: copied, still spooled
    with open_store(loaded.paths.data) as store:
        report = copy_sent(store, loaded, NOW + timedelta(minutes=1))
    assert (report.copied, report.present) == (0, 1)
    assert set(message_ids(in_folder(dovecot_server, sent_folder)).values()) == {1}
    assert spooled(config) == []


@pytest.mark.slow
@pytest.mark.smtpd_options(data_delay=0.01)
def test_sigkill_in_the_middle_of_a_tick_leaves_one_copy_of_each_sent_message(
    tmp_path: Path,
    dovecot_server: Dovecot,
    smtp_config: Smtp,
    smtpd_handler: RecordingHandler,
) -> None:
    """Killed mid-send and restarted: each message recorded sent is in Sent exactly once,
    and nothing else is."""
    sent_folder = dovecot_server.new_folder()
    config = make_project(tmp_path, smtp=smtp_config, contacts=200, now=NOW)
    with_imap(config, dovecot_server, f'sent_folder = "{sent_folder}"')
    command = [sys.executable, "-m", "toma", "--config", str(config), "run", "--once", "--now"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [*command, iso(NOW)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    try:
        while len(smtpd_handler.messages) < 50 and time.monotonic() < deadline:
            assert child.poll() is None, "the tick ended before it could be killed"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert 50 <= len(smtpd_handler.messages) < 200
    restart = subprocess.run(
        [*command, iso(NOW + timedelta(minutes=5))],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert restart.returncode == 0, restart.stderr
    records = table(config, MESSAGES)
    sent = {str(d["message_id"]) for d in records.values() if d["state"] == "sent"}
    assert len(sent) >= 100
    copies = message_ids(in_folder(dovecot_server, sent_folder))
    assert copies == Counter(dict.fromkeys(sent, 1))
    in_doubt = [d for d in records.values() if d["state"] == "unknown"]
    assert len(spooled(config)) <= len(in_doubt)  # kept for the owner's verdict only


def test_a_refused_append_neither_blocks_nor_repeats_the_send(
    tmp_path: Path,
    dovecot_server: Dovecot,
    smtp_config: Smtp,
    smtpd_handler: RecordingHandler,
) -> None:
    """The Sent folder does not exist: everything is sent once, the copies wait, and are made
    once the folder is there."""
    missing = f"{dovecot_server.new_folder()}-sent"
    config = make_project(tmp_path, smtp=smtp_config, contacts=3, now=NOW)
    # The Sent folder is not read here: only the copy meets the missing folder.
    with_imap(config, dovecot_server, f'sent_folder = "{missing}"\nread_sent = false')
    tick(config, NOW)
    assert len(smtpd_handler.messages) == 3
    assert len(sent_records(config)) == 3
    assert len(spooled(config)) == 3
    tick(config, NOW + timedelta(minutes=1))
    assert len(smtpd_handler.messages) == 3, "a failed copy sent a message again"
    dovecot_server.create(missing)
    tick(config, NOW + timedelta(minutes=2))
    assert len(smtpd_handler.messages) == 3
    assert set(message_ids(in_folder(dovecot_server, missing)).values()) == {1}
    assert len(message_ids(in_folder(dovecot_server, missing))) == 3
    assert spooled(config) == []


def handwritten(to: str, number: int, *, subject: str = "Lunch next week?") -> bytes:
    return (
        f"From: Alex Example <alex@example.com>\r\n"
        f"To: {to}\r\n"
        f"Subject: {subject}\r\n"
        f"Date: Tue, 03 Mar 2026 09:00:00 +0000\r\n"
        f"Message-ID: <by-hand-{number}@example.com>\r\n"
        f"\r\n"
        f"Shall we have lunch on Thursday?\r\n"
    ).encode()


def test_mail_written_by_hand_is_logged_and_holds_the_next_step(
    tmp_path: Path, dovecot_server: Dovecot
) -> None:
    """The owner writes to an enrolled contact from their own mail program: `toma log` shows
    it written by hand, and the sequence's on_handwritten pauses the next step."""
    sent_folder = dovecot_server.new_folder()
    config = make_project(tmp_path, contacts=2, steps=(("hello", "0h"), ("again", "1w")), now=NOW)
    with_imap(config, dovecot_server, f'sent_folder = "{sent_folder}"')
    sequence = config.parent / "sequences" / "keep.toml"
    sequence.write_text(
        sequence.read_text().replace(
            'on_reply = "stop"\n', 'on_reply = "stop"\non_handwritten = "pause 30d"\n'
        )
    )
    tick(config, NOW)  # the first sync of the Sent folder; hello goes to both
    with dovecot_server.client() as client:
        client.append(
            sent_folder,
            handwritten("P0 <person0@example.org>", 1),
            flags=(rb"\Seen",),
            msg_time=NOW + timedelta(days=1),
        )
    tick(config, NOW + timedelta(days=1, hours=1))
    enrolments = {d["contact"]: d for d in table(config, ENROLMENTS).values()}
    assert enrolments["person0@example.org"]["state"] == "paused"
    assert enrolments["person1@example.org"]["state"] == "active"
    contacted = table(config, SYNC)["contacted:person0@example.org"]
    assert contacted["at"] == iso(NOW + timedelta(days=1))

    tick(config, NOW + timedelta(days=8))  # "again" is due for both: only person1 gets it
    again = {d["contact"] for d in table(config, MESSAGES).values() if d["step"] == "again"}
    assert again == {"person1@example.org"}

    result = CliRunner().invoke(main, ["--config", str(config), "log", "person0@example.org"])
    assert result.exit_code == 0, result.output
    assert "→ handwritten: Lunch next week?" in result.output
    assert "written by hand" in result.output
    assert "paused keep until" in result.output


def test_the_sent_folder_history_is_logged_without_acting(
    tmp_path: Path, dovecot_server: Dovecot
) -> None:
    """What was in the Sent folder before toma first read it changes nothing."""
    sent_folder = dovecot_server.new_folder()
    with dovecot_server.client() as client:
        client.append(
            sent_folder,
            handwritten("person0@example.org", 2, subject="Old news"),
            msg_time=NOW - timedelta(days=30),
        )
    config = make_project(tmp_path, contacts=1, now=NOW)
    with_imap(config, dovecot_server, f'sent_folder = "{sent_folder}"')
    tick(config, NOW)
    [doc] = [d for d in table(config, CONVERSATIONS).values() if d["kind"] == "handwritten"]
    assert doc["history"] is True
    assert "contacted:person0@example.org" not in table(config, SYNC)
    assert {d["state"] for d in table(config, ENROLMENTS).values()} == {"active"}


def test_a_second_configured_folder_is_read_with_its_own_cursor(
    tmp_path: Path, dovecot_server: Dovecot
) -> None:
    """folders = [a, b]: a reply filed in b by the owner's rules stops the sequence."""
    first, second = dovecot_server.new_folder(), dovecot_server.new_folder()
    config = make_project(tmp_path, contacts=1, steps=(("hello", "0h"), ("again", "1w")), now=NOW)
    with_imap(config, dovecot_server, f'folders = ["{first}", "{second}"]\nread_sent = false')
    tick(config, NOW)
    [hello] = (config.parent / "var" / "outbox" / "new").iterdir()
    original = email.message_from_bytes(hello.read_bytes(), policy=policy.default)
    dovecot_server.append(
        (
            "From: P0 <person0@example.org>\r\nTo: alex@example.com\r\n"
            f"Subject: Re: {original['Subject']}\r\nDate: Mon, 02 Mar 2026 12:00:00 +0000\r\n"
            f"Message-ID: <reply-0@example.org>\r\nIn-Reply-To: {original['Message-ID']}\r\n"
            "\r\nGood to hear from you!\r\n"
        ).encode(),
        folder=second,
    )
    tick(config, NOW + timedelta(hours=3))
    [enrolment] = table(config, ENROLMENTS).values()
    assert enrolment["state"] == "stopped"
    state = table(config, SYNC)
    cursors = {d["cursor"]["folder"]: d["cursor"] for k, d in state.items() if "cursor" in d}
    assert set(cursors) >= {first, second}
    assert cursors[second]["last_uid"] == 1
    assert cursors[first]["last_uid"] == 0
    assert f"inbox:imap:127.0.0.1:toma:{second}" in state


def stored_in(server: Dovecot, folder: str) -> int:
    """How many messages Dovecot has written into ``folder`` (its Maildir, read on disk)."""
    base = server.root / "home" / dovecot.USER / "Maildir" / f".{folder}"
    return sum(
        len(list((base / part).glob("*"))) for part in ("new", "cur") if (base / part).exists()
    )


@pytest.mark.slow
def test_sigkill_while_copying_then_a_restart_leaves_one_copy_of_each(
    tmp_path: Path, dovecot_server: Dovecot, smtp_config: Smtp
) -> None:
    """Killed in the middle of the copy step: the restart appends the rest, nothing twice."""
    sent_folder = dovecot_server.new_folder()
    config = make_project(tmp_path, smtp=smtp_config, contacts=200, now=NOW)
    with_imap(config, dovecot_server, f'sent_folder = "{sent_folder}"')
    command = [sys.executable, "-m", "toma", "--config", str(config), "run", "--once", "--now"]
    child = subprocess.Popen(
        [*command, iso(NOW)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    try:
        while stored_in(dovecot_server, sent_folder) < 20 and time.monotonic() < deadline:
            assert child.poll() is None, "the tick ended before it could be killed"
            time.sleep(0.002)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    copied = stored_in(dovecot_server, sent_folder)
    assert 20 <= copied < 200
    assert len(spooled(config)) >= 200 - copied  # the rest still waits
    restart = subprocess.run(
        [*command, iso(NOW + timedelta(minutes=5))],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert restart.returncode == 0, restart.stderr
    sent = {str(d["message_id"]) for d in sent_records(config).values()}
    assert len(sent) == 200
    assert message_ids(in_folder(dovecot_server, sent_folder)) == Counter(dict.fromkeys(sent, 1))
    assert spooled(config) == []


def test_the_sent_folder_is_found_by_its_special_use(
    tmp_path: Path, dovecot_server: Dovecot, smtp_config: Smtp
) -> None:
    """No sent_folder set: the copy goes to the folder the server marks \\Sent ("Outgoing"
    here, a name no guess would find)."""
    dovecot_server.create("Outgoing")
    config = make_project(tmp_path, smtp=smtp_config, contacts=2, now=NOW)
    with_imap(config, dovecot_server)
    tick(config, NOW)
    sent = {str(d["message_id"]) for d in sent_records(config).values()}
    assert message_ids(in_folder(dovecot_server, "Outgoing")) == Counter(dict.fromkeys(sent, 1))


def test_copying_stops_when_its_time_is_spent_and_goes_on_next_run(
    tmp_path: Path, dovecot_server: Dovecot, smtp_config: Smtp
) -> None:
    """A budget spent after the first APPEND: one copy now, the rest at the next run."""
    sent_folder = f"{dovecot_server.new_folder()}-sent"
    config = make_project(tmp_path, smtp=smtp_config, contacts=4, now=NOW)
    with_imap(config, dovecot_server, f'sent_folder = "{sent_folder}"\nread_sent = false')
    tick(config, NOW)  # the folder is missing: all four wait in the spool
    dovecot_server.create(sent_folder)
    loaded = load_config(config)
    ticks = iter(range(100))
    with open_store(loaded.paths.data) as store:
        first = copy_sent(store, loaded, NOW, budget=1.0, clock=lambda: float(next(ticks)))
        assert (first.copied, first.more) == (1, True)
        rest = copy_sent(store, loaded, NOW)
    assert (rest.copied, rest.more) == (3, False)
    assert len(message_ids(in_folder(dovecot_server, sent_folder))) == 4


def test_an_append_the_server_refuses_fails_that_copy_only(
    tmp_path: Path,
    dovecot_server: Dovecot,
    smtp_config: Smtp,
    smtpd_handler: RecordingHandler,
) -> None:
    """The server answers NO to one APPEND (Dovecot will not save an empty message): the other
    copies are made, that one waits, and nothing is sent again."""
    sent_folder = f"{dovecot_server.new_folder()}-sent"
    config = make_project(tmp_path, smtp=smtp_config, contacts=2, now=NOW)
    with_imap(config, dovecot_server, f'sent_folder = "{sent_folder}"\nread_sent = false')
    tick(config, NOW)  # no folder yet: both wait
    dovecot_server.create(sent_folder)
    loaded = load_config(config)
    refused = sorted(sent_records(config))[0]
    Spool.of(loaded).keep(refused, b"")
    with open_store(loaded.paths.data) as store:
        report = copy_sent(store, loaded, NOW + timedelta(minutes=1))
    assert (report.copied, report.failed) == (1, 1)
    assert len(message_ids(in_folder(dovecot_server, sent_folder))) == 1
    assert len(spooled(config)) == 1
    tick(config, NOW + timedelta(minutes=2))
    assert len(smtpd_handler.messages) == 2, "a refused copy sent a message again"
    assert {d["state"] for d in table(config, MESSAGES).values()} == {"sent"}
