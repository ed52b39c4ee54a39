"""Logs under systemd: journald priorities, and warning for a server that does not answer."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from toma.config import Secret, Smtp
from toma.logs import JournalPrefix, TextFormatter, journal_stream, priority
from toma.timeutil import iso, parse_duration

from .conftest import HOST, free_port
from .projects import make_project

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def unanswered_project(tmp_path: Path) -> Path:
    """A project whose SMTP server is a port nobody listens on."""
    smtp = Smtp(
        host=HOST,
        port=free_port(),
        security="none",
        username=None,
        password=Secret(env=None, key="smtp.password_env"),
        concurrency=1,
        rate_per_minute=600,
        timeout=2.0,
        retry_for=parse_duration("1h"),
        ca_file=None,
    )
    return make_project(tmp_path, smtp=smtp, contacts=1, now=NOW)


def run_once(config: Path, log: Path, env: dict[str, str], status: int = 75) -> list[str]:
    with log.open("w") as stderr:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "toma",
                "--config",
                str(config),
                "run",
                "--once",
                "--now",
                iso(NOW),
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            timeout=60,
            check=False,
        )
    assert done.returncode == status  # 75: the server did not answer, retried next tick
    return log.read_text().splitlines()


@pytest.mark.slow  # the tick tries the server a few times before it gives up (~14 s)
def test_a_refused_smtp_connection_is_a_warning_with_its_journald_priority(
    tmp_path: Path,
) -> None:
    config = unanswered_project(tmp_path)
    log = tmp_path / "stderr.log"
    log.touch()
    status = log.stat()
    env = {**os.environ, "JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
    lines = run_once(config, log, env)
    failed = [line for line in lines if "smtp connect failed" in line]
    assert failed
    assert all(line.startswith("<4>") and " warning " in line for line in failed), failed
    tick = [line for line in lines if "tick done" in line]
    assert tick and tick[0].startswith("<6>")  # retried next tick: nothing failed for good
    # Every log line has its prefix (the lines that are not logs say what to do).
    logged = [line for line in lines if not line.startswith(("will retry:", "needs you:"))]
    assert all(line[:1] == "<" and line[2:3] == ">" for line in logged), logged


def test_no_priority_prefix_when_stderr_is_not_the_journal_stream(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.touch()
    status = other.stat()
    for number, env in enumerate(
        [
            {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"},
            {**os.environ, "JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"},
            {**os.environ, "JOURNAL_STREAM": "garbage"},
        ],
    ):
        config = make_project(tmp_path / str(number), contacts=1, now=NOW)  # Maildir out
        lines = run_once(config, tmp_path / "stderr.log", env, status=0)
        assert any(" info    tick done" in line for line in lines), lines
        assert not any(line.startswith("<") for line in lines), lines


def test_levels_map_to_syslog_priorities_and_every_line_keeps_its_prefix() -> None:
    assert [priority(level) for level in (10, 20, 30, 40, 50)] == [7, 6, 4, 3, 2]
    formatter = JournalPrefix(TextFormatter())
    try:
        int("boom")
    except ValueError:
        record = logging.LogRecord("toma", logging.ERROR, __file__, 1, "x", (), sys.exc_info())
    lines = formatter.format(record).split("\n")
    assert len(lines) > 2
    assert all(line.startswith("<3>") for line in lines)
    assert not journal_stream(object(), {"JOURNAL_STREAM": "1:2"})
