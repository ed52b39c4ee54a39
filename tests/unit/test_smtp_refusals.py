"""A daemon's memory of the passwords SMTP servers refused (toma.transports.smtp_login)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from toma.config import Smtp
from toma.transports.smtp_login import LOGIN_PAUSE, Refusals

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
ACCOUNT = Smtp(host="mail.example.com", port=587, username="ann@example.com")


def refused_once() -> Refusals:
    refusals = Refusals()
    refusals.refused(ACCOUNT, "wrong", NOW, 535, "authentication failed")
    return refusals


def test_the_same_password_waits_out_the_pause() -> None:
    refusals = refused_once()
    found = refusals.standing(ACCOUNT, "wrong", NOW + LOGIN_PAUSE - timedelta(seconds=1))
    assert found is not None
    assert (found.code, found.detail, found.at, found.until) == (
        535,
        "authentication failed",
        NOW,
        NOW + LOGIN_PAUSE,
    )
    assert refusals.standing(ACCOUNT, "wrong", NOW + LOGIN_PAUSE) is None


def test_another_password_is_tried_at_once() -> None:
    assert refused_once().standing(ACCOUNT, "corrected", NOW) is None


def test_only_the_account_refused_waits() -> None:
    refusals = refused_once()
    for other in (
        replace(ACCOUNT, username="bob@example.com"),
        replace(ACCOUNT, host="smtp.example.org"),
        replace(ACCOUNT, port=465),
    ):
        assert refusals.standing(other, "wrong", NOW) is None
    assert refusals.standing(replace(ACCOUNT, host="MAIL.example.com"), "wrong", NOW) is not None


def test_a_clock_set_back_ends_the_pause() -> None:
    assert refused_once().standing(ACCOUNT, "wrong", NOW - timedelta(minutes=1)) is None


def test_a_login_accepted_forgets_the_refusal() -> None:
    refusals = refused_once()
    refusals.accepted(ACCOUNT)
    assert refusals.standing(ACCOUNT, "wrong", NOW) is None


def test_the_password_is_not_kept() -> None:
    refusals = refused_once()
    found = refusals.standing(ACCOUNT, "wrong", NOW)
    assert found is not None
    assert "wrong" not in repr(found) and "wrong" not in found.secret
