"""`newsletter send` "now" means from now, in each recipient's window; it asks first.

An immediate send at 10:00 in Berlin reached Tokyo at 18:00 and New York at
04:00. Now Berlin gets it at once, and the daemon's ticks send New York's and
Tokyo's copies when their working hours (09:01–16:59) open.
"""

from __future__ import annotations

import email
import os
import pty
import select
import subprocess
import sys
import time
from datetime import datetime
from email import policy
from pathlib import Path
from zoneinfo import ZoneInfo

from toma.core.contacts import make_contact
from toma.exits import Exit
from toma.store import CONTACTS, MESSAGES, open_store
from toma.timeutil import iso

from .projects import make_project

SENT_AT = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # Monday 10:00 CET
PEOPLE = {
    "berlin@example.org": "",
    "tokyo@example.org": "Asia/Tokyo",
    "newyork@example.org": "America/New_York",
}

ISSUE = """---
subject: "News for {{ contact.first_name }}"
purpose: "What changed this quarter, for the people I work with."
---
Hi {{ contact.first_name }}, three things.
"""


def project(tmp_path: Path) -> Path:
    config = make_project(tmp_path, window=("09:01", "16:59"), now=SENT_AT, tag="unused")
    (tmp_path / "newsletters").mkdir()
    (tmp_path / "newsletters" / "q1.md").write_text(ISSUE)
    store = open_store(tmp_path / "var" / "data")
    try:
        with store.transaction() as tx:
            for address, zone in PEOPLE.items():
                contact = make_contact(
                    address,
                    first_name=address.split("@")[0].title(),
                    timezone=zone,
                    added_at=iso(SENT_AT),
                )
                tx.put(CONTACTS, contact.email, contact.to_doc())
    finally:
        store.close()
    return config


def toma(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "toma", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def delivered(config: Path) -> dict[str, datetime]:
    """Each recipient of the issue, and the Date its copy carries."""
    found = {}
    new = config.parent / "var" / "outbox" / "new"
    for path in new.iterdir() if new.exists() else []:
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        if str(message["Subject"]).startswith("News for"):
            found[message["To"].addresses[0].addr_spec] = message["Date"].datetime
    return found


def sent_at(config: Path) -> dict[str, datetime]:
    store = open_store(config.parent / "var" / "data")
    try:
        return {
            doc["contact"]: datetime.fromisoformat(doc["sent_at"])
            for _k, doc in store.all(MESSAGES)
            if doc["kind"] == "newsletter" and doc.get("sent_at")
        }
    finally:
        store.close()


def test_an_immediate_issue_reaches_tokyo_in_tokyo_working_hours(tmp_path: Path) -> None:
    config = project(tmp_path)
    sent = toma(config, "newsletter", "send", "q1.md", "--now", SENT_AT.isoformat(), "--yes")
    assert sent.returncode == Exit.OK, sent.stderr
    assert "1 sent now" in sent.stdout and "2 wait for their working hours" in sent.stdout
    assert set(delivered(config)) == {"berlin@example.org"}

    # 09:00 in New York, 23:00 in Tokyo: nobody's window is open yet.
    assert toma(config, "run", "--once", "--now", "2026-03-02T14:00:00+00:00").returncode == 0
    assert set(delivered(config)) == {"berlin@example.org"}
    # 09:05 in New York.
    assert toma(config, "run", "--once", "--now", "2026-03-02T14:05:00+00:00").returncode == 0
    assert set(delivered(config)) == {"berlin@example.org", "newyork@example.org"}
    # 18:00 Tokyo was the old defect; 07:00 in Tokyo is still too early.
    assert toma(config, "run", "--once", "--now", "2026-03-02T22:00:00+00:00").returncode == 0
    assert "tokyo@example.org" not in delivered(config)
    # 09:05 on Tuesday in Tokyo: the daemon's tick sends it.
    assert toma(config, "run", "--once", "--now", "2026-03-03T00:05:00+00:00").returncode == 0
    assert set(delivered(config)) == set(PEOPLE)

    for address, at in sent_at(config).items():
        local = at.astimezone(ZoneInfo(PEOPLE[address] or "Europe/Berlin"))
        assert local.weekday() < 5 and "09:01" <= local.strftime("%H:%M") <= "16:59", (
            address,
            local,
        )
    assert (
        sent_at(config)["tokyo@example.org"].astimezone(ZoneInfo("Asia/Tokyo")).strftime("%a %H:%M")
        == "Tue 09:05"
    )
    # Once each, whatever the ticks after.
    assert toma(config, "run", "--once", "--now", "2026-03-03T01:00:00+00:00").returncode == 0
    assert len(list((config.parent / "var" / "outbox" / "new").iterdir())) == 3


def test_dry_run_lists_who_gets_it_when_in_their_zone_and_sends_nothing(
    tmp_path: Path,
) -> None:
    config = project(tmp_path)
    dry = toma(config, "newsletter", "send", "q1.md", "--now", SENT_AT.isoformat(), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in dry.stdout.splitlines()[1:4]}
    assert rows["berlin@example.org"] == [
        "Mon 2026-03-02 10:00",
        "Europe/Berlin",
        "Mon 2026-03-02 10:00",
        "now",
    ]
    assert rows["newyork@example.org"] == [
        "Mon 2026-03-02 09:01",
        "America/New_York",
        "Mon 2026-03-02 15:01",
        "later",
    ]
    assert rows["tokyo@example.org"] == [
        "Tue 2026-03-03 09:01",
        "Asia/Tokyo",
        "Tue 2026-03-03 01:01",
        "later",
    ]
    assert "Dry run: 3 recipient(s), 1 now, 2 later; nothing sent." in dry.stdout
    assert delivered(config) == {}
    assert sent_at(config) == {}


def test_off_a_terminal_without_yes_it_refuses_and_sends_nothing(tmp_path: Path) -> None:
    config = project(tmp_path)
    refused = toma(config, "newsletter", "send", "q1.md", "--now", SENT_AT.isoformat())
    assert refused.returncode == 1
    assert "q1.md goes to 3 recipient(s): 1 now, 2 later" in refused.stderr
    assert "add --yes" in refused.stderr
    assert delivered(config) == {}


def on_a_terminal(config: Path, answer: bytes) -> tuple[int, str]:
    leader, follower = pty.openpty()
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "toma",
            "--config",
            str(config),
            "newsletter",
            "send",
            "q1.md",
            "--now",
            SENT_AT.isoformat(),
        ],
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    output = b""
    answered = False
    deadline = time.monotonic() + 60
    try:
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
                if not answered and b"Send? [y/N]" in output:
                    os.write(leader, answer)
                    answered = True
            elif child.poll() is not None:
                break
    finally:
        child.wait(timeout=30)
        os.close(leader)
    return child.returncode, output.decode(errors="replace")


def test_on_a_terminal_it_asks_and_no_sends_nothing(tmp_path: Path) -> None:
    config = project(tmp_path)
    code, text = on_a_terminal(config, b"n\n")
    assert "q1.md goes to 3 recipient(s): 1 now, 2 later, in their working hours. Send?" in text
    assert code == 1, text
    assert "nothing sent" in text
    assert delivered(config) == {}

    code, text = on_a_terminal(config, b"y\n")
    assert code == 0, text
    assert set(delivered(config)) == {"berlin@example.org"}
