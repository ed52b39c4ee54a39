"""Token endpoint answers are checked before use; freshness is judged at a given moment."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from toma.auth import store
from toma.auth.errors import AuthError
from toma.auth.tokens import (
    LONGEST_LIFE,
    SHORTEST_LIFE,
    BadTokenAnswer,
    Token,
    from_answer,
    needs_refresh,
)
from toma.config import OAuth2

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
GOOD = {
    "access_token": "abc.DEF-123",
    "token_type": "Bearer",
    "expires_in": 3600,
    "refresh_token": "r1",
}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"access_token": "abc\x01auth=Bearer evil"}, "characters"),  # would split XOAUTH2
        ({"access_token": "a b"}, "characters"),
        ({"access_token": "x" * 20_000}, "characters"),
        ({"access_token": ""}, "no access_token"),
        ({"access_token": None}, "no access_token"),
        ({"refresh_token": "r\r\nA001 LOGOUT"}, "characters"),
        ({"token_type": "mac"}, "not Bearer"),
        ({"expires_in": "soon"}, "not a number"),
        ({"expires_in": True}, "not a number"),
        ({"expires_in": float("nan")}, "not a number"),
    ],
)
def test_a_hostile_or_broken_answer_is_refused(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(BadTokenAnswer, match=problem):
        from_answer({**GOOD, **change}, NOW)


@pytest.mark.parametrize(
    ("expires_in", "life"),
    [
        (3600, timedelta(hours=1)),
        ("600", timedelta(minutes=10)),  # some endpoints send a string
        (0, SHORTEST_LIFE),
        (-5, SHORTEST_LIFE),
        (10**12, LONGEST_LIFE),  # "valid for ever" is not believed
    ],
)
def test_the_lifetime_is_bounded(expires_in: object, life: timedelta) -> None:
    assert from_answer({**GOOD, "expires_in": expires_in}, NOW).expires_at == NOW + life


def test_a_refresh_answer_without_a_refresh_token_keeps_the_old_one() -> None:
    first = from_answer(GOOD, NOW)
    answer = {k: v for k, v in GOOD.items() if k != "refresh_token"} | {"access_token": "n"}
    second = from_answer(answer, NOW, previous=first)
    assert second.refresh_token == "r1" and second.access_token == "n"


@pytest.mark.parametrize(
    ("minutes_left", "refresh"), [(60, False), (6, False), (5, True), (1, True), (-1, True)]
)
def test_refreshed_five_minutes_ahead_of_expiry(minutes_left: int, refresh: bool) -> None:
    token = Token("a", "r", NOW + timedelta(minutes=minutes_left))
    assert needs_refresh(token, NOW) is refresh


def oauth2(tmp_path: Path, client_id: str = "app") -> OAuth2:
    return OAuth2(
        account="alex@example.com",
        client_id=client_id,
        token_url="https://login.example.com/token",
        token_file=tmp_path / "tokens" / "alex@example.com.json",
    )


def test_the_token_file_is_owner_only_and_read_back(tmp_path: Path) -> None:
    token = from_answer(GOOD, NOW)
    with store.locked(oauth2(tmp_path)):
        store.save(oauth2(tmp_path), token)
    path = oauth2(tmp_path).token_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert store.load(oauth2(tmp_path)) == token
    # Signed in with another app: that sign-in does not apply to this one.
    assert store.load(oauth2(tmp_path, client_id="other")) is None


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b"{" * 300_000])
def test_a_token_file_toma_did_not_write_is_one_clear_error(tmp_path: Path, content: bytes) -> None:
    path = oauth2(tmp_path).token_file
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(AuthError, match="not a token file toma wrote"):
        store.load(oauth2(tmp_path))


def test_a_stored_token_that_was_tampered_with_counts_as_not_signed_in(tmp_path: Path) -> None:
    path = oauth2(tmp_path).token_file
    path.parent.mkdir(parents=True)
    doc = {
        "client_id": "app",
        "token_url": "https://login.example.com/token",
        "access_token": "a\x01b",
        "refresh_token": "r",
        "expires_at": NOW.isoformat(),
    }
    path.write_text(json.dumps(doc))
    assert store.load(oauth2(tmp_path)) is None
