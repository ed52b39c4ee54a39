"""The exit-status rules, as tables: one message's result, a tick, the status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from toma.exits import ATTENTION_FOR, Exit, for_result, for_status, for_tick, worst
from toma.transports import Outcome, Result

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("outcome", "code", "detail", "expected"),
    [
        (Outcome.SENT, 250, "250 OK", Exit.OK),
        (Outcome.WITHDRAWN, None, "withdrawn before the hand-over", Exit.OK),
        (Outcome.PERMANENT, 550, "recipient refused", Exit.NEEDS_YOU),
        (Outcome.UNKNOWN, None, "no answer after the message was sent", Exit.NEEDS_YOU),
        (Outcome.TEMPORARY, 535, "authentication as toma failed: 535 5.7.8", Exit.NEEDS_YOU),
        (
            Outcome.TEMPORARY,
            None,
            "TLS with h:587 failed: [SSL: CERTIFICATE_VERIFY_FAILED] "
            "certificate verify failed: unable to get local issuer",
            Exit.NEEDS_YOU,
        ),
        (Outcome.TEMPORARY, None, "127.0.0.1:9: Connect call failed", Exit.RETRY),
        (Outcome.TEMPORARY, 421, "421 4.3.2 try later", Exit.RETRY),
    ],
)
def test_one_result(outcome: Outcome, code: int | None, detail: str, expected: Exit) -> None:
    assert for_result(Result("k", outcome, code, detail)) is expected


@pytest.mark.parametrize(
    ("tick", "expected"),
    [
        ({"sent": 3}, Exit.OK),
        ({"retrying": 2, "temporary": ["connect failed"]}, Exit.RETRY),
        ({"problems": ["inbox: unreachable"], "temporary": ["inbox: unreachable"]}, Exit.RETRY),
        ({"problems": ["inbox: refused the login"]}, Exit.NEEDS_YOU),
        ({"problems": ["s1.toml: steps[0].after"], "held": ["s1"]}, Exit.NEEDS_YOU),
        ({"retrying": 16, "needs_you": ["535 5.7.8"]}, Exit.NEEDS_YOU),
        ({"failed": 1, "retrying": 5}, Exit.NEEDS_YOU),
        ({"unknown": 1}, Exit.NEEDS_YOU),
    ],
)
def test_one_tick(tick: dict[str, Any], expected: Exit) -> None:
    assert for_tick(tick) is expected


def status(**given: Any) -> tuple[Exit, list[str]]:
    values: dict[str, Any] = {
        "last_tick": {"sent": 1},
        "unknown": 0,
        "failed_at": [],
        "retrying": 0,
        "set_aside_at": [],
        "journal_damage_at": None,
        "now": NOW,
    }
    return for_status(**{**values, **given})


def test_status_is_zero_when_all_is_well() -> None:
    assert status() == (Exit.OK, [])
    assert status(last_tick=None) == (Exit.OK, [])


@pytest.mark.parametrize(
    "given",
    [
        {"unknown": 1},
        {"failed_at": [NOW - timedelta(days=1)]},
        {"set_aside_at": [NOW - timedelta(hours=1)]},
        {"journal_damage_at": NOW - timedelta(days=2)},
        {"last_tick": {"held": ["s1"], "problems": ["s1.toml: bad"]}},
        {"unknown": 1, "retrying": 3},  # needing you wins
    ],
)
def test_status_needs_you(given: dict[str, Any]) -> None:
    code, reasons = status(**given)
    assert code is Exit.NEEDS_YOU
    assert reasons


def test_old_failures_stop_counting_after_the_attention_window() -> None:
    old = NOW - ATTENTION_FOR - timedelta(minutes=1)
    assert status(failed_at=[old], set_aside_at=[old], journal_damage_at=old) == (Exit.OK, [])


def test_status_retry() -> None:
    assert status(retrying=2) == (Exit.RETRY, ["2 message(s) waiting to retry"])
    assert status(last_tick={"temporary": ["x"], "problems": ["x"]})[0] is Exit.RETRY


def test_worst() -> None:
    assert worst([Exit.OK, Exit.RETRY, Exit.NEEDS_YOU, Exit.ERROR]) is Exit.NEEDS_YOU
    assert worst([Exit.OK, Exit.RETRY]) is Exit.RETRY
    assert worst([]) is Exit.OK
