"""A provider's daily limit holds over ticks: what does not fit today goes tomorrow, once."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from toma.config import Smtp, load_config
from toma.store import MESSAGES, open_store

from .conftest import RecordingHandler
from .projects import make_project, tick

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
