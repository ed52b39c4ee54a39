"""Sequences end to end on a simulated clock (`--now`), delivered to the Maildir."""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys
import time
from email import policy
from pathlib import Path

from click.testing import CliRunner, Result

from toma.cli import main

SEQUENCE = """\
name = "{name}"
enroll_tag = "{tag}"
on_reply = "stop"
window = "default"
{steps}
"""

STEP = """
[[steps]]
id = "{id}"
after = "{after}"
template = "note.md"
"""


def sequence(name: str, tag: str, *steps: tuple[str, str]) -> str:
    text = SEQUENCE.format(
        name=name,
        tag=tag,
        steps="".join(STEP.format(id=step_id, after=after) for step_id, after in steps),
    )
    return text if tag else text.replace('enroll_tag = ""\n', "")


def make(tmp_path: Path, *sequences: str) -> Path:
    folder = tmp_path / "p"
    (folder / "sequences").mkdir(parents=True)
    (folder / "templates" / "layouts").mkdir(parents=True)
    (folder / "config.toml").write_text(
        '[owner]\nname = "Alex Example"\nemail = "alex@example.com"\ntimezone = "Europe/Berlin"\n'
        '[pace]\nmin_gap = "3d"\nmax_late = "14d"\n'
    )
    (folder / "templates" / "note.md").write_text(
        "---\nsubject: Hello {{ contact.first_name }}\n---\nHi {{ contact.first_name }}!\n"
    )
    (folder / "templates" / "layouts" / "default.html").write_text("{{ body }}")
    for number, text in enumerate(sequences):
        (folder / "sequences" / f"s{number}.toml").write_text(text)
    return folder


def toma(folder: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main, ["--config", str(folder / "config.toml"), *args], catch_exceptions=False
    )


def tick(folder: Path, now: str) -> Result:
    result = toma(folder, "run", "--once", "--now", now)
    assert result.exit_code == 0, result.output
    return result


def sent(folder: Path) -> list[tuple[str, str, str]]:
    """(recipient, subject, Date) of every message in the outbox Maildir, in date order."""
    found = []
    new = folder / "var" / "outbox" / "new"
    for path in sorted(new.iterdir()) if new.exists() else []:
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        found.append(
            (
                message["To"].addresses[0].addr_spec,
                str(message["Subject"]),
                message["Date"].datetime.isoformat(),
            )
        )
    return sorted(found, key=lambda item: item[2])


def add(
    folder: Path,
    address: str,
    *tags: str,
    zone: str = "Europe/Berlin",
    now: str = "2026-03-06T18:00:00+01:00",
) -> None:
    args = ["contacts", "add", address, "--first-name", "Ann", "--timezone", zone, "--now", now]
    for tag in tags:
        args += ["--tag", tag]
    assert toma(folder, *args).exit_code == 0


def test_enrolled_friday_evening_gets_step_one_monday_after_0901(tmp_path: Path) -> None:
    """Enrolled Friday 18:00 Berlin, due at once: nothing at the weekend, Monday 09:01 Berlin."""
    folder = make(tmp_path, sequence("hello", "met", ("first", "0h")))
    add(folder, "ann@example.org", "met")
    tick(folder, "2026-03-06T18:00:00+01:00")  # Friday, enrols
    tick(folder, "2026-03-07T12:00:00+01:00")  # Saturday
    tick(folder, "2026-03-09T09:00:00+01:00")  # Monday 09:00
    assert sent(folder) == []
    planned = json.loads(
        toma(folder, "plan", "--json", "--now", "2026-03-09T09:00:00+01:00").output
    )
    assert planned == [
        {
            "contact": "ann@example.org",
            "kind": "sequence",
            "ref": "hello/first",
            "at": "2026-03-09T09:01:00+01:00",
            "at_owner": "2026-03-09T09:01:00+01:00",
            "note": "waited 2d",
        }
    ]
    tick(folder, "2026-03-09T09:01:00+01:00")
    assert sent(folder) == [("ann@example.org", "Hello Ann", "2026-03-09T09:01:00+01:00")]


def test_dst_change_neither_shifts_nor_duplicates(tmp_path: Path) -> None:
    """Weekly steps across the last Sunday of March stay at 09:01 Berlin, once each."""
    folder = make(tmp_path, sequence("weekly", "w", ("a", "0h"), ("b", "1w"), ("c", "1w")))
    add(folder, "ann@example.org", "w", now="2026-03-20T09:01:00+01:00")
    moments = [
        "2026-03-20T09:01:00+01:00",
        "2026-03-27T09:01:00+01:00",
        "2026-03-27T10:00:00+01:00",  # the same day again: nothing new
        "2026-04-03T08:01:00+02:00",
        "2026-04-03T09:01:00+02:00",
        "2026-04-03T09:30:00+02:00",
    ]
    for moment in moments:
        tick(folder, moment)
    assert [date for _to, _subject, date in sent(folder)] == [
        "2026-03-20T09:01:00+01:00",
        "2026-03-27T09:01:00+01:00",
        "2026-04-03T09:01:00+02:00",
    ]


def test_two_sequences_due_the_same_day_respect_the_pace(tmp_path: Path) -> None:
    folder = make(tmp_path, sequence("one", "a", ("x", "0h")), sequence("two", "b", ("y", "0h")))
    add(folder, "ann@example.org", "a", "b", now="2026-03-02T10:00:00+01:00")
    tick(folder, "2026-03-02T10:00:00+01:00")
    tick(folder, "2026-03-03T10:00:00+01:00")
    assert len(sent(folder)) == 1
    tick(folder, "2026-03-05T10:00:00+01:00")  # the 3-day gap has passed
    assert [date for *_rest, date in sent(folder)] == [
        "2026-03-02T10:00:00+01:00",
        "2026-03-05T10:00:00+01:00",
    ]


def test_inserting_a_step_before_one_already_sent_resends_nothing(tmp_path: Path) -> None:
    folder = make(tmp_path, sequence("s", "t", ("first", "0h"), ("second", "1d")))
    add(folder, "ann@example.org", "t", now="2026-03-02T10:00:00+01:00")
    tick(folder, "2026-03-02T10:00:00+01:00")
    tick(folder, "2026-03-05T10:00:00+01:00")
    assert len(sent(folder)) == 2
    (folder / "sequences" / "s0.toml").write_text(
        sequence(
            "s",
            "t",
            ("zero", "0h"),
            ("first", "0h"),
            ("inserted", "1d"),
            ("second", "1d"),
            ("third", "3d"),
        )
    )
    tick(folder, "2026-03-06T10:00:00+01:00")
    tick(folder, "2026-03-07T10:00:00+01:00")
    assert len(sent(folder)) == 2  # neither "zero" nor "inserted" nor a second "first"
    tick(folder, "2026-03-09T10:00:00+01:00")  # "third", 3 days after "second"
    assert len(sent(folder)) == 3


def test_paused_and_unsubscribed_contacts_get_nothing(tmp_path: Path) -> None:
    folder = make(tmp_path, sequence("s", "t", ("first", "0h")))
    for name in ("paused", "gone", "here"):
        add(folder, f"{name}@example.org", "t", now="2026-03-02T10:00:00+01:00")
    toma(folder, "contacts", "pause", "paused@example.org")
    toma(folder, "contacts", "unsubscribe", "gone@example.org")
    tick(folder, "2026-03-02T10:00:00+01:00")
    tick(folder, "2026-03-10T10:00:00+01:00")
    assert [to for to, *_ in sent(folder)] == ["here@example.org"]


def test_broken_sequence_file_is_held_and_the_others_go_on(tmp_path: Path) -> None:
    folder = make(
        tmp_path,
        sequence("good", "t", ("first", "0h")),
        sequence("bad", "t", ("first", "0h")).replace('after = "0h"', 'after = "soon"'),
    )
    add(folder, "ann@example.org", "t", now="2026-03-02T10:00:00+01:00")
    result = toma(folder, "run", "--once", "--now", "2026-03-02T10:00:00+01:00")
    assert result.exit_code == 78, result.output  # a held sequence needs its owner
    assert "s1.toml" in result.output
    assert [to for to, *_ in sent(folder)] == ["ann@example.org"]
    status = toma(folder, "status", "--now", "2026-03-02T10:05:00+01:00")
    assert status.exit_code == 78
    assert "s1.toml" in status.output
    assert "steps[0].after" in status.output
    as_json = json.loads(toma(folder, "status", "--json").output)
    assert as_json["messages"] == {"sent": 1}


def test_enroll_and_unenroll_by_hand(tmp_path: Path) -> None:
    folder = make(tmp_path, sequence("manual", "", ("first", "0h"), ("second", "1d")))
    add(folder, "ann@example.org", now="2026-03-02T10:00:00+01:00")
    result = toma(
        folder, "enroll", "Ann@Example.org", "manual", "--now", "2026-03-02T10:00:00+01:00"
    )
    assert result.exit_code == 0, result.output
    assert toma(folder, "enroll", "ann@example.org", "nope").exit_code == 1
    tick(folder, "2026-03-02T10:00:00+01:00")
    assert toma(folder, "unenroll", "ann@example.org", "manual").exit_code == 0
    tick(folder, "2026-03-10T10:00:00+01:00")
    assert len(sent(folder)) == 1


def test_run_stops_cleanly_on_sigterm_and_a_second_run_is_refused(tmp_path: Path) -> None:
    folder = make(tmp_path, sequence("s", "t", ("first", "0h")))
    command = [sys.executable, "-m", "toma", "--config", str(folder / "config.toml"), "run"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    daemon = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        log = folder / "var" / "data" / "daemon.lock"
        while time.monotonic() < deadline and not (log.exists() and log.read_text().strip()):
            time.sleep(0.05)
        second = subprocess.run(
            [*command, "--once"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert second.returncode == 1
        assert "another toma run" in second.stderr
        assert second.stderr.count("\n") <= 2
        daemon.terminate()
        _out, err = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert daemon.returncode == 0, err
    assert "daemon stopped" in err
