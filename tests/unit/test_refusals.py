"""The passwords SMTP servers refused, as the store keeps them (toma.core.refusals)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from toma.core.refusals import LOGIN_PAUSE, Account, Refusals

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
ANN = Account("mail.example.com", 587, "ann@example.com")


def refused_once() -> Refusals:
    refusals = Refusals()
    refusals.refused(ANN, "wrong", NOW, 535, "authentication failed")
    return refusals


def test_the_same_password_waits_out_the_pause() -> None:
    refusals = refused_once()
    found = refusals.standing(ANN, "wrong", NOW + LOGIN_PAUSE - timedelta(seconds=1))
    assert found is not None
    assert (found.code, found.detail, found.at, found.until) == (
        535,
        "authentication failed",
        NOW,
        NOW + LOGIN_PAUSE,
    )
    assert refusals.standing(ANN, "wrong", NOW + LOGIN_PAUSE) is None


def test_another_password_is_tried_at_once() -> None:
    assert refused_once().standing(ANN, "corrected", NOW) is None


def test_only_the_account_refused_waits() -> None:
    refusals = refused_once()
    for other in (
        Account("mail.example.com", 587, "bob@example.com"),
        Account("smtp.example.org", 587, "ann@example.com"),
        Account("mail.example.com", 465, "ann@example.com"),
    ):
        assert refusals.standing(other, "wrong", NOW) is None
    assert refusals.standing(Account("MAIL.example.com", 587, ANN.username), "wrong", NOW)


def test_a_clock_set_back_ends_the_pause() -> None:
    assert refused_once().standing(ANN, "wrong", NOW - timedelta(minutes=1)) is None


def test_a_login_accepted_forgets_the_refusal() -> None:
    refusals = refused_once()
    refusals.accepted(ANN)
    assert refusals.standing(ANN, "wrong", NOW) is None
    assert refusals.to_doc() == {}


def test_the_store_keeps_a_salted_digest_and_never_the_password() -> None:
    doc = refused_once().to_doc()
    text = json.dumps(doc)
    assert "wrong" not in text
    kept = Refusals.from_doc(json.loads(text))
    assert kept.standing(ANN, "wrong", NOW) is not None
    assert kept.standing(ANN, "corrected", NOW) is None
    # Salted: the same password refused twice is written differently.
    assert doc != refused_once().to_doc()


@pytest.mark.parametrize(
    "damaged",
    [
        None,
        [],
        "text",
        {"x": "y"},
        {"ann@mail.example.com:587": {"code": "535"}},
        {"ann@mail.example.com:587": {"code": 535, "detail": "no", "at": "yesterday"}},
        {
            "ann@mail.example.com:587": {
                "code": 535,
                "detail": "no",
                "at": "2026-03-02T10:00:00",  # no offset
                "until": "2026-03-02T10:15:00+00:00",
                "salt": "00",
                "digest": "00",
            }
        },
    ],
)
def test_a_damaged_document_is_memory_lost_not_an_error(damaged: object) -> None:
    assert Refusals.from_doc(damaged).to_doc() == {}


def test_a_huge_document_is_read_in_part() -> None:
    entry = refused_once().to_doc()[ANN.name]
    many = {f"user{n}@example.com:587": entry for n in range(10_000)}
    assert len(Refusals.from_doc(many).to_doc()) == 64
