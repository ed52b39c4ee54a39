"""A provider's daily limit: what went in the last 24 hours leaves room for the rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from toma.core.daylimit import counts_today, room_left
from toma.core.outbox import MessageState, OutboxRecord, advance, new_record

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def record(
    n: int, state: MessageState, at: datetime, contact: str = "a@example.org"
) -> OutboxRecord:
    made = new_record(
        key=f"k{n}",
        contact=contact,
        kind="sequence",
        ref=f"s/{n}",
        template="t.md",
        due_at=at,
        at=at,
        state=MessageState.SENDING,
    )
    return made if state is MessageState.SENDING else advance(made, state, at=at)


def test_no_limit_is_no_room_counted() -> None:
    assert room_left([record(1, MessageState.SENT, NOW)], NOW, 0) is None


def test_what_went_in_the_last_day_counts_and_older_does_not() -> None:
    history = [
        record(1, MessageState.SENT, NOW - timedelta(hours=1)),
        record(2, MessageState.SENT, NOW - timedelta(hours=23, minutes=59)),
        record(3, MessageState.SENT, NOW - timedelta(days=1)),  # exactly a day ago: free again
        record(4, MessageState.SENT, NOW - timedelta(days=3)),
    ]
    assert room_left(history, NOW, 500) == 498


def test_messages_in_doubt_count_failed_and_planned_do_not() -> None:
    """A message in doubt may have gone: it counts; a refused or unsent one did not."""
    history = [
        record(1, MessageState.UNKNOWN, NOW - timedelta(hours=2)),
        record(2, MessageState.SENDING, NOW - timedelta(minutes=1)),
        record(3, MessageState.FAILED, NOW - timedelta(hours=2)),
    ]
    assert [counts_today(r, NOW) for r in history] == [True, True, False]
    assert room_left(history, NOW, 10) == 8


def test_the_room_never_goes_below_nothing() -> None:
    history = [record(n, MessageState.SENT, NOW - timedelta(minutes=n)) for n in range(5)]
    assert room_left(history, NOW, 3) == 0


def test_each_account_counts_its_own() -> None:
    history = [
        record(1, MessageState.SENT, NOW - timedelta(hours=1), contact="ann@example.org"),
        record(2, MessageState.SENT, NOW - timedelta(hours=1), contact="bo@example.org"),
    ]
    assert room_left(history, NOW, 5, lambda r: r.contact == "ann@example.org") == 4


def test_a_provider_preset_brings_its_daily_limit_and_a_written_one_wins(tmp_path) -> None:
    from toma.config import load_config

    base = '[owner]\nname = "A"\nemail = "a@example.com"\n[transport]\nkind = "smtp"\n'
    config = tmp_path / "config.toml"
    config.write_text(base + '[smtp]\nprovider = "icloud"\nusername = "a@icloud.com"\n')
    assert load_config(config).smtp.per_day == 1000
    config.write_text(
        base + '[smtp]\nprovider = "icloud"\nusername = "a@icloud.com"\nper_day = 200\n'
    )
    assert load_config(config).smtp.per_day == 200
    config.write_text(base + '[smtp]\nhost = "smtp.example.com"\n')
    assert load_config(config).smtp.per_day == 0


def test_a_daily_limit_out_of_range_names_its_key(tmp_path) -> None:
    import pytest

    from toma.config import load_config
    from toma.errors import ConfigError

    config = tmp_path / "config.toml"
    config.write_text(
        '[owner]\nname = "A"\nemail = "a@example.com"\n[smtp]\nhost = "h"\nper_day = -1\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert caught.value.key == "smtp.per_day" and caught.value.line == 6
