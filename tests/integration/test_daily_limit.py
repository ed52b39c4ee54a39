"""A provider's daily limit holds over ticks: what does not fit today goes tomorrow, once."""

from __future__ import annotations

import contextlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.postgres import PgServer
from toma.config import Smtp, load_config
from toma.core.contacts import make_contact
from toma.daemon.worker import Worker
from toma.store import CONTACTS, MESSAGES, open_configured, open_store

from .conftest import RecordingHandler, SmtpServer
from .projects import make_project, tick
from .test_senders import ann_server as ann_server  # a fixture

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def limited(config: Path, per_day: int) -> Path:
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[smtp]\n", f"[smtp]\nper_day = {per_day}\n", 1))
    assert load_config(config).smtp.per_day == per_day
    return config


def received(handler: RecordingHandler) -> Counter[str]:
    return Counter(rcpt for message in handler.messages for rcpt in message.rcpt_tos)


def states(config: Path) -> Counter[str]:
    with open_store(config.parent / "var" / "data") as store:
        return Counter(doc["state"] for _key, doc in store.all(MESSAGES))


def test_a_tick_sends_no_more_than_the_day_allows_and_the_rest_goes_a_day_later(
    tmp_path: Path, smtp_config: Smtp, smtpd_handler: RecordingHandler
) -> None:
    config = limited(make_project(tmp_path, smtp=smtp_config, contacts=5, now=NOW), 3)

    tick(config, NOW)
    assert sum(received(smtpd_handler).values()) == 3
    assert states(config) == {"sent": 3}  # the other two were never marked sending

    tick(config, NOW + timedelta(hours=6))
    tick(config, NOW + timedelta(hours=23, minutes=59))
    assert sum(received(smtpd_handler).values()) == 3

    tick(config, NOW + timedelta(days=1, minutes=1))
    got = received(smtpd_handler)
    assert len(got) == 5 and set(got.values()) == {1}
    assert states(config) == {"sent": 5}


def test_without_a_limit_every_due_message_goes_in_one_tick(
    tmp_path: Path, smtp_config: Smtp, smtpd_handler: RecordingHandler
) -> None:
    config = make_project(tmp_path, smtp=smtp_config, contacts=5, now=NOW)
    assert load_config(config).smtp.per_day == 0
    tick(config, NOW)
    assert sum(received(smtpd_handler).values()) == 5


@pytest.mark.parametrize("kind", ["embedded", "postgres"])
def test_each_sender_counts_only_what_it_sent_itself(
    tmp_path: Path,
    kind: str,
    smtp_config: Smtp,
    smtpd_handler: RecordingHandler,
    ann_server: SmtpServer,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What Ann sent this morning does not eat into Alex's limit in the afternoon, on a
    store whose tick reads only the contacts it plans too."""
    config = make_project(tmp_path, smtp=smtp_config, now=NOW)
    text = config.read_text(encoding="utf-8").replace("[smtp]\n", "[smtp]\nper_day = 3\n", 1)
    text = text.replace(
        "[windows.default]",
        '[[senders]]\nname = "Ann Able"\nemail = "ann@example.com"\n'
        f'smtp = {{ host = "{ann_server.host}", port = {ann_server.port}, security = "none",'
        " per_day = 5 }\n\n[windows.default]",
    )
    with contextlib.ExitStack() as stack:
        if kind == "postgres":
            server: PgServer = request.getfixturevalue("pg_server")
            monkeypatch.setenv("TOMA_LIMIT_DSN", stack.enter_context(server.database()))
            text += '\n[store]\nkind = "postgres"\ndsn_env = "TOMA_LIMIT_DSN"\n'
        config.write_text(text, encoding="utf-8")
        store = stack.enter_context(contextlib.closing(open_configured(load_config(config))))

        def add(emails: list[str], owner: str) -> None:
            with store.transaction() as tx:
                for email in emails:
                    contact = make_contact(email, first_name="P", tags=["friend"], owner=owner)
                    tx.put(CONTACTS, email, contact.to_doc())

        add(["a0@example.org", "a1@example.org"], "ann@example.com")
        assert not Worker(config, store).run_once(NOW).problems
        assert len(ann_server.handler.messages) == 2
        add(["x0@example.org", "x1@example.org", "x2@example.org"], "")
        assert not Worker(config, store).run_once(NOW + timedelta(hours=2)).problems
        assert sum(received(smtpd_handler).values()) == 3
