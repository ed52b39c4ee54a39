"""toma backup while the daemon sends, toma restore into a fresh folder: nothing goes twice."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from toma.config import Smtp, load_config
from toma.core.outbox import MessageState
from toma.mail.unsubscribe import unsubscriber
from toma.store import MESSAGES, open_store
from toma.timeutil import iso

from .conftest import RecordingHandler
from .projects import make_project, recipient

CONTACTS = 300


def toma(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "toma", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def message_states(data: Path) -> dict[str, str]:
    with open_store(data) as store:
        return {doc["contact"]: doc["state"] for _key, doc in store.all(MESSAGES)}


def wait_for(condition: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.smtpd_options(data_delay=0.01)
def test_a_backup_taken_while_the_daemon_sends_restores_a_store_that_sends_nothing_twice(
    tmp_path: Path, smtp_config: Smtp, smtpd_handler: RecordingHandler
) -> None:
    now = datetime.now(UTC) - timedelta(minutes=1)
    first = make_project(tmp_path / "first", smtp=smtp_config, contacts=CONTACTS, now=now)
    links = unsubscriber(load_config(first))  # the daemon uses this key for every link
    link_before = links.url(recipient(7)) or links.mailto(recipient(7))
    token = links.token(recipient(7))

    daemon = subprocess.Popen(
        [sys.executable, "-m", "toma", "--config", str(first), "run"],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: len(smtpd_handler.messages) >= 30, 60)
        assert daemon.poll() is None, "the daemon stopped before the backup"
        archive = tmp_path / "backup.tar.gz"
        taken = toma(first, "backup", str(archive), "--json")
        assert taken.returncode == 0, taken.stderr
        received_at_backup = len(smtpd_handler.messages)
        wait_for(lambda: len(smtpd_handler.messages) >= CONTACTS, 120)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    assert daemon.returncode == 0
    assert received_at_backup < CONTACTS, "the backup was taken after the daemon had finished"
    manifest = json.loads(taken.stdout)
    assert "unsubscribe.key" in manifest["files"]
    assert any(name.startswith("snapshot-") for name in manifest["files"])

    # A fresh folder: the project's files, no data directory; the backup restored into it.
    second = tmp_path / "second"
    shutil.copytree(first.parent, second, ignore=shutil.ignore_patterns("var"))
    restored = toma(second / "config.toml", "restore", str(archive))
    assert restored.returncode == 0, restored.stderr
    data = second / "var" / "data"
    in_backup = message_states(data)
    # Sent, or being sent (now in doubt): never to go again. Planned ones go.
    known = {c for c, state in in_backup.items() if state != MessageState.PLANNED}
    assert MessageState.SENDING not in in_backup.values()
    assert len([s for s in in_backup.values() if s == MessageState.SENT]) >= 30
    assert len(known) < CONTACTS, "the backup holds the state from before the last sends"

    # What the restored store plans: only the contacts the backup had not sent to.
    later = now + timedelta(minutes=5)
    planned = toma(second / "config.toml", "plan", "--json", "--now", iso(later))
    assert planned.returncode == 0, planned.stderr
    planned_for = {row["contact"] for row in json.loads(planned.stdout)}
    assert planned_for.isdisjoint(known)

    before = len(smtpd_handler.messages)
    tick = toma(second / "config.toml", "run", "--once", "--json", "--now", iso(later))
    assert tick.returncode in (0, 78), tick.stderr  # 78: messages in doubt at the backup
    recipients = [to for m in smtpd_handler.messages[before:] for to in m.rcpt_tos]
    assert recipients, "the restored store sent the rest"
    assert set(recipients).isdisjoint(known), sorted(
        (in_backup[c], c) for c in set(recipients) & known
    )[:10]
    assert len(recipients) == len(set(recipients))
    assert set(recipients) == {recipient(n) for n in range(CONTACTS)} - known
    # A second tick of the restored store sends nothing at all.
    settled = len(smtpd_handler.messages)
    tick = toma(second / "config.toml", "run", "--once", "--now", iso(later + timedelta(minutes=5)))
    assert tick.returncode in (0, 78), tick.stderr
    assert len(smtpd_handler.messages) == settled

    # Links made before the backup verify with the restored key.
    after = unsubscriber(load_config(second / "config.toml"))
    assert after.verify(token) == recipient(7)
    assert (after.url(recipient(7)) or after.mailto(recipient(7))) == link_before
    assert (data / "unsubscribe.key").read_bytes() == (
        first.parent / "var" / "data" / "unsubscribe.key"
    ).read_bytes()
