"""`toma run --once` and `toma status` tell cron and a monitor what happened, by exit status.

0: done; 75: will be retried (a server out of reach); 78: needs you (a login
refused, a 5xx, a message in doubt, a held sequence). Against a real aiosmtpd.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from toma.config import Smtp
from toma.exits import Exit

from .conftest import RecordingHandler, free_port
from .projects import make_project

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
PASSWORD_ENV = "TOMA_TEST_EXIT_PASSWORD"


def project(tmp_path: Path, smtp: Smtp, *, username: str | None = None, contacts: int = 3) -> Path:
    config = make_project(tmp_path, smtp=smtp, contacts=contacts, now=NOW)
    extra = f'ca_file = "{smtp.ca_file}"\n'
    if username:
        extra += f'username = "{username}"\npassword_env = "{PASSWORD_ENV}"\n'
    config.write_text(
        config.read_text().replace('retry_for = "1h"\n', 'retry_for = "1h"\n' + extra)
    )
    return config


def toma(config: Path, *args: str, password: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "toma", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, PASSWORD_ENV: password},
    )


def once(
    config: Path, now: datetime = NOW, *, password: str = ""
) -> subprocess.CompletedProcess[str]:
    return toma(config, "run", "--once", "--now", now.isoformat(), password=password)


def status(config: Path, now: datetime = NOW) -> subprocess.CompletedProcess[str]:
    return toma(config, "status", "--now", (now + timedelta(minutes=1)).isoformat())


@pytest.mark.smtpd_options(tls="starttls", auth=True)
def test_a_refused_login_needs_you(
    tmp_path: Path,
    smtp_config: Smtp,
    smtpd_handler: RecordingHandler,
    auth_credentials: tuple[str, str],
) -> None:
    """A wrong password: 535 at every connection; the cron line must not exit 0."""
    config = project(tmp_path, smtp_config, username=auth_credentials[0])
    ran = once(config, password="not the password")
    assert ran.returncode == Exit.NEEDS_YOU, ran.stderr
    assert "needs you: " in ran.stderr and "535" in ran.stderr
    assert smtpd_handler.messages == []
    watched = status(config)
    assert watched.returncode == Exit.NEEDS_YOU, watched.stdout
    assert "the last tick needs you" in watched.stdout

    # The right password: everything goes, and both say so with 0.
    fixed = once(config, NOW + timedelta(hours=1), password=auth_credentials[1])
    assert fixed.returncode == Exit.OK, fixed.stderr
    assert len(smtpd_handler.messages) == 3
    assert status(config, NOW + timedelta(hours=1)).returncode == Exit.OK


def test_a_closed_port_will_be_retried(tmp_path: Path, smtp_config: Smtp) -> None:
    closed = Smtp(**{**smtp_config.__dict__, "port": free_port()})
    config = project(tmp_path, closed)
    ran = once(config)
    assert ran.returncode == Exit.RETRY, ran.stderr
    assert "will retry: " in ran.stderr
    watched = toma(config, "status", "--json", "--now", NOW.isoformat())
    assert watched.returncode == Exit.RETRY
    attention = json.loads(watched.stdout)["attention"]
    assert attention["exit"] == Exit.RETRY
    assert "3 message(s) waiting to retry" in attention["reasons"]


def test_all_good_is_zero(
    tmp_path: Path, smtp_config: Smtp, smtpd_handler: RecordingHandler
) -> None:
    config = project(tmp_path, smtp_config)
    ran = once(config)
    assert ran.returncode == Exit.OK, ran.stderr
    assert len(smtpd_handler.messages) == 3
    assert status(config).returncode == Exit.OK


@pytest.mark.smtpd_options(rcpt_answers={"person1@example.org": "550 5.1.1 no such user"})
def test_a_5xx_needs_you_for_a_week_in_status(tmp_path: Path, smtp_config: Smtp) -> None:
    config = project(tmp_path, smtp_config)
    assert once(config).returncode == Exit.NEEDS_YOU
    assert status(config).returncode == Exit.NEEDS_YOU
    # The next tick has nothing to do: cron is quiet again, the monitor still sees it...
    assert once(config, NOW + timedelta(hours=1)).returncode == Exit.OK
    later = status(config, NOW + timedelta(days=6))
    assert later.returncode == Exit.NEEDS_YOU
    assert "1 message(s) failed in the last 7 days" in later.stdout
    # ...for a week; `toma status` still lists it after that.
    gone = status(config, NOW + timedelta(days=8))
    assert gone.returncode == Exit.OK, gone.stdout
    assert "person1@example.org" in gone.stdout


def test_a_broken_config_needs_you(tmp_path: Path, smtp_config: Smtp) -> None:
    """A config edited into something unusable: cron must hear of it, not exit 0 or 1."""
    config = project(tmp_path, smtp_config)
    config.write_text(
        config.read_text().replace('timezone = "Europe/Berlin"', 'timezone = "Europe/Atlantis"')
    )
    ran = once(config)
    assert ran.returncode == Exit.NEEDS_YOU, ran.stderr
    assert "Atlantis" in ran.stderr
