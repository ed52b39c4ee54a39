"""Hostile mail through the inbox of a real project: the tick finishes, and sends what is due.

Each example is a fresh project with contacts whose first message is due, and an
inbox Maildir holding a few generated hostile messages (see tests/hostile.py).
The daemon's tick reads the inbox first, then sends; it must finish within its
budget — every message read within the reading budget, and the rest of the
tick quick — deliver every due message to the outbox Maildir, record each
inbound message once, and not read any of them again on the next tick.
"""

from __future__ import annotations

import mailbox
import time
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile import hostile_messages
from toma.core.reading.classify import READ_BUDGET
from toma.daemon.worker import Worker
from toma.store import CONVERSATIONS, open_store

from .projects import make_project, recipient

pytestmark = pytest.mark.timeout(120)

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CONTACTS = 4
# Everything in a tick but the reading: planning, rendering and writing a few
# messages, on a slow and busy machine.
REST_OF_TICK = 10.0


def outbox_recipients(folder: Path) -> list[str]:
    found = []
    for path in sorted((folder / "var" / "outbox" / "new").iterdir()):
        parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
        found.append(parsed["To"].addresses[0].addr_spec)
    return found


@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(st.lists(hostile_messages(), min_size=1, max_size=3))
def test_hostile_mail_does_not_hold_up_due_mail(
    tmp_path_factory: pytest.TempPathFactory, messages: list[bytes]
) -> None:
    folder = tmp_path_factory.mktemp("project")
    config = make_project(folder, contacts=CONTACTS, now=NOW)
    inbox = mailbox.Maildir(folder / "var" / "inbox", create=True)
    for data in messages:
        inbox.add(data)

    store = open_store(folder / "var" / "data")
    try:
        worker = Worker(config, store)
        start = time.monotonic()
        report = worker.run_once(NOW)
        seconds = time.monotonic() - start
        assert seconds < len(messages) * READ_BUDGET + REST_OF_TICK
        assert report.inbound <= len(messages)
        again = worker.run_once(NOW)
        assert again.inbound == 0  # nothing is read twice
        conversations = dict(store.all(CONVERSATIONS))
    finally:
        store.close()

    sent = outbox_recipients(folder)
    for number in range(CONTACTS):
        assert sent.count(recipient(number)) == 1
    assert len(conversations) == report.inbound
    for doc in conversations.values():
        assert doc["direction"] == "in"


def test_the_issues_message_does_not_stop_twenty_due_messages(tmp_path: Path) -> None:
    """2.4 MB, 200,000 header fields, and a subject of 200,000 encoded words: all 20 go out."""
    config = make_project(tmp_path, contacts=20, now=NOW)
    inbox = mailbox.Maildir(tmp_path / "var" / "inbox", create=True)
    fields = "".join(f"X-Field-{i}: value {i}\r\n" for i in range(200_000))
    words = " ".join("=?utf-8?q?w=C3=A4rt?=" for _ in range(200_000))
    for subject, extra in (("Re: hello", fields), (words, "")):
        inbox.add(
            (
                f"From: Eve <eve@evil.example>\r\nTo: alex@example.com\r\nSubject: {subject}\r\n"
                f"{extra}\r\nHello\r\n"
            ).encode()
        )

    store = open_store(tmp_path / "var" / "data")
    try:
        start = time.monotonic()
        report = Worker(config, store).run_once(NOW)
        seconds = time.monotonic() - start
        conversations = dict(store.all(CONVERSATIONS))
    finally:
        store.close()
    assert seconds < 2 * READ_BUDGET + REST_OF_TICK
    assert report.inbound == 2
    assert sorted(outbox_recipients(tmp_path)) == sorted(recipient(n) for n in range(20))
    assert all(doc["kind"] == "reply" for doc in conversations.values())
