"""Newsletters end to end: the send, a kill in the middle, the ways out."""

from __future__ import annotations

import email
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import pytest

from toma.config import Smtp, load_config
from toma.daemon.sending import CHUNKS_IN_FLIGHT, in_doubt_at_most
from toma.mail.unsubscribe import unsubscriber
from toma.store import CONTACTS, MESSAGES, open_store

from .conftest import RecordingHandler, free_port
from .projects import make_project

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

ISSUE = """---
subject: "Three things I learned this year, {{ contact.first_name }}"
purpose: "A thank-you to the people I worked with, and three lessons they may find useful."
audience: "friend and not no-news"
{send_at}---
Hi {{ contact.first_name }},

three things I learned this year.
"""


def project(
    tmp_path: Path,
    *,
    smtp: Smtp | None = None,
    contacts: int = 0,
    send_at: str = "",
    extra_config: str = "",
) -> Path:
    config = make_project(tmp_path, smtp=smtp, contacts=contacts, now=NOW)
    if extra_config:
        config.write_text(config.read_text() + extra_config)
    (tmp_path / "newsletters").mkdir(exist_ok=True)
    (tmp_path / "newsletters" / "2026-03.md").write_text(
        ISSUE.format(send_at=f'send_at: "{send_at}"\n' if send_at else "")
    )
    return config


def toma(config: Path, *args: str, **options: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "toma", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **options,
    )  # type: ignore[call-overload]


def states(config: Path) -> Counter[str]:
    store = open_store(config.parent / "var" / "data")
    try:
        return Counter(
            doc["state"] for _k, doc in store.all(MESSAGES) if doc["kind"] == "newsletter"
        )
    finally:
        store.close()


@pytest.mark.smtpd_options(data_delay=0.003)
def test_killed_send_resumes_and_nobody_gets_two(
    tmp_path: Path, smtp_config: Smtp, smtpd_handler: RecordingHandler
) -> None:
    """2,000 recipients, SIGKILL half-way, send again: one copy each, the rest reported."""
    config = project(tmp_path, smtp=smtp_config, contacts=2000)
    command = [
        sys.executable,
        "-m",
        "toma",
        "--config",
        str(config),
        "newsletter",
        "send",
        "2026-03.md",
        "--now",
        NOW.isoformat(),
        "--yes",
    ]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    try:
        while len(smtpd_handler.messages) < 1000 and time.monotonic() < deadline:
            assert child.poll() is None, "the send ended before it could be killed"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert 1000 <= len(smtpd_handler.messages) < 2000

    resumed = toma(config, "newsletter", "send", "2026-03.md", "--now", NOW.isoformat(), "--yes")
    assert resumed.returncode == 0, resumed.stderr

    received = Counter(r for m in smtpd_handler.messages for r in m.rcpt_tos)
    assert set(received.values()) == {1}, "somebody got two copies"
    final = states(config)
    unknown = final["unknown"]
    assert final["sent"] + unknown == 2000
    assert len(received) >= 2000 - unknown
    # In doubt are only the messages in flight (which may not have arrived), and those
    # whose outcome was not yet written (which did): nothing is written ahead of them.
    never_arrived = [a for a in all_recipients(2000) if a not in received]
    assert len(never_arrived) <= CHUNKS_IN_FLIGHT * smtp_config.concurrency
    assert unknown <= in_doubt_at_most(smtp_config.concurrency)
    status = json.loads(toma(config, "status", "--json").stdout)
    assert len(status["unknown"]) == unknown


def test_one_click_unsubscribe_through_the_daemon(tmp_path: Path) -> None:
    """GET shows a page; a tampered token is refused; a valid POST unsubscribes for good."""
    port = free_port()
    config = project(
        tmp_path,
        contacts=3,
        extra_config=(
            f'\n[unsubscribe]\nbase_url = "http://127.0.0.1:{port}"\nlisten = "127.0.0.1:{port}"\n'
        ),
    )
    daemon = subprocess.Popen(
        [sys.executable, "-m", "toma", "--config", str(config), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        links = unsubscriber(load_config(config))
        url = links.url("person1@example.org")
        assert url is not None
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    page = response.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline, "the endpoint did not start"
                time.sleep(0.05)
        assert "person1@example.org" in page
        assert contact_status(config, "person1@example.org") == "active"

        tampered = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
        with pytest.raises(urllib.error.HTTPError) as refused:
            post(tampered)
        assert refused.value.code == 400
        refused.value.close()

        post(url)
        deadline = time.monotonic() + 20
        while contact_status(config, "person1@example.org") != "unsubscribed":
            assert time.monotonic() < deadline, "the unsubscribe was not applied"
            time.sleep(0.05)
    finally:
        daemon.terminate()
        daemon.communicate(timeout=30)
    assert daemon.returncode == 0

    sent = toma(config, "newsletter", "send", "2026-03.md", "--now", NOW.isoformat(), "--yes")
    assert sent.returncode == 0, sent.stderr
    outbox = config.parent / "var" / "outbox" / "new"
    issues = [
        email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in outbox.iterdir()
    ]
    recipients = {
        m["To"].addresses[0].addr_spec
        for m in issues
        if str(m["Subject"]).startswith("Three things")
    }
    assert "person1@example.org" not in recipients, sent.stdout + sent.stderr
    assert {"person0@example.org", "person2@example.org"} <= recipients, sent.stdout + sent.stderr


def all_recipients(count: int) -> list[str]:
    return [f"person{n}@example.org" for n in range(count)]


def post(url: str) -> None:
    request = urllib.request.Request(url, data=b"List-Unsubscribe=One-Click", method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()


def contact_status(config: Path, address: str) -> str:
    store = open_store(config.parent / "var" / "data")
    try:
        doc = store.get(CONTACTS, address)
        assert doc is not None
        return str(doc["status"])
    finally:
        store.close()


def test_the_mailto_way_out_works_through_the_inbox(tmp_path: Path) -> None:
    """The issue's List-Unsubscribe mailto, sent back from another address, unsubscribes."""
    config = project(tmp_path, contacts=2)
    assert (
        toma(
            config, "newsletter", "send", "2026-03.md", "--now", NOW.isoformat(), "--yes"
        ).returncode
        == 0
    )
    outbox = config.parent / "var" / "outbox" / "new"
    issue = next(
        email.message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in outbox.iterdir()
        if b"person0@example.org" in p.read_bytes().split(b"\n\n")[0]
    )
    header = str(issue["List-Unsubscribe"])
    mailto = header.split("<", 1)[1].split(">", 1)[0]
    assert mailto.startswith("mailto:alex@example.com?subject=unsubscribe%20")
    subject = mailto.split("subject=", 1)[1].replace("%20", " ")
    inbox = config.parent / "var" / "inbox" / "new"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "1772445600.u1.host").write_bytes(
        b"From: someone.else@example.net\r\nTo: alex@example.com\r\n"
        b"Subject: " + subject.encode() + b"\r\nMessage-ID: <u1@example.net>\r\n\r\n\r\n"
    )
    ticked = toma(config, "run", "--once", "--now", NOW.isoformat())
    assert ticked.returncode == 0, ticked.stderr
    assert contact_status(config, "person0@example.org") == "unsubscribed"
    assert contact_status(config, "person1@example.org") == "active"


def test_scheduled_issue_goes_from_send_at_in_each_window(tmp_path: Path) -> None:
    config = project(tmp_path, contacts=2, send_at="2026-03-04T12:00:00+01:00")
    scheduled = toma(config, "newsletter", "send", "2026-03.md", "--now", NOW.isoformat(), "--yes")
    assert "Scheduled" in scheduled.stdout
    toma(config, "run", "--once", "--now", "2026-03-04T10:00:00+01:00")
    assert states(config)["sent"] == 0
    toma(config, "run", "--once", "--now", "2026-03-04T12:30:00+01:00")
    assert states(config)["sent"] == 2
    figures = json.loads(toma(config, "status", "--json").stdout)["newsletters"]
    assert figures == [
        {
            "newsletter": "2026-03.md",
            "sent": 2,
            "failed": 0,
            "unknown": 0,
            "in_progress": 0,
            "bounced": 0,
            "replies": 0,
            "unsubscribes": 0,
        }
    ]


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    config = project(tmp_path, contacts=300)
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "toma",
            "--config",
            str(config),
            "newsletter",
            "send",
            "2026-03.md",
            "--now",
            NOW.isoformat(),
            "--yes",
        ],
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        elif child.poll() is not None:
            break
    child.wait(timeout=30)
    os.close(leader)
    text = output.decode(errors="replace")
    assert child.returncode == 0, text
    assert "300/300" in text
    assert "msg/s" in text
    assert "ETA" in text
    assert "━" in text  # the bar itself
