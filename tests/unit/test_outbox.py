"""Outbox records: stable keys, legal transitions only, at most once across crashes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from toma.core.outbox import (
    HANDED,
    HANDOVER_PENDING,
    TRANSITIONS,
    IllegalTransition,
    MessageState,
    OutboxRecord,
    advance,
    check_transition,
    counts_for_pace,
    ever_attempted,
    new_record,
    recover_after_crash,
    release,
    repeat_key,
    repeat_number,
    sequence_key,
)
from toma.errors import TomaError

NOW = datetime(2026, 3, 9, 8, 1, tzinfo=UTC)
S = MessageState


def record(state: MessageState = S.PLANNED, **changes: object) -> OutboxRecord:
    base = new_record(
        key=sequence_key("ada@example.com", "new-acquaintance", "nice-to-meet"),
        contact="ada@example.com",
        kind="sequence",
        ref="new-acquaintance/nice-to-meet",
        template="acquaintance/nice-to-meet.md",
        due_at=NOW - timedelta(hours=1),
        at=NOW,
        sequence="new-acquaintance",
        step="nice-to-meet",
    )
    return replace(base, state=state, **changes)  # type: ignore[arg-type]


def test_keys_are_stable_strings() -> None:
    assert sequence_key("ada@example.com", "new-acquaintance", "nice-to-meet") == (
        "sequence/new-acquaintance/nice-to-meet/ada@example.com"
    )
    assert repeat_key("ada@example.com", "new-acquaintance", 3) == (
        "sequence/new-acquaintance/repeat-3/ada@example.com"
    )
    assert repeat_number("repeat-3") == 3
    assert repeat_number("nice-to-meet") is None
    assert repeat_number("repeat-x") is None


@pytest.mark.parametrize(
    ("state", "attempted", "paced"),
    [
        (S.PLANNED, False, False),
        (S.SENDING, True, True),
        (S.SENT, True, True),
        (S.FAILED, True, False),
        (S.UNKNOWN, True, True),
        (S.SKIPPED, True, False),
    ],
)
def test_ever_attempted_and_pace(state: MessageState, attempted: bool, paced: bool) -> None:
    """Once a key has left planned it is never planned again."""
    assert ever_attempted(state) is attempted
    assert counts_for_pace(state) is paced


LEGAL = [
    (S.PLANNED, S.SENDING),
    (S.PLANNED, S.SKIPPED),
    (S.PLANNED, S.FAILED),
    (S.PLANNED, S.PLANNED),
    (S.SENDING, S.SENT),
    (S.SENDING, S.FAILED),
    (S.SENDING, S.UNKNOWN),
    (S.SENDING, S.PLANNED),
    (S.SENDING, S.SKIPPED),  # the last check before the hand-over
    (S.UNKNOWN, S.SENT),
    (S.UNKNOWN, S.FAILED),
    (S.UNKNOWN, S.PLANNED),  # released by the owner
]


@pytest.mark.parametrize(("old", "new"), [(a, b) for a in S for b in S])
def test_transition_table(old: MessageState, new: MessageState) -> None:
    """Exactly the arrows of the table are allowed; everything else is refused."""
    assert (new in TRANSITIONS[old]) is ((old, new) in LEGAL)
    if (old, new) in LEGAL:
        check_transition(old, new)
    else:
        with pytest.raises(IllegalTransition):
            check_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [(S.SENT, S.SENDING), (S.UNKNOWN, S.SENDING), (S.SKIPPED, S.SENDING), (S.FAILED, S.PLANNED)],
)
def test_no_second_attempt(old: MessageState, new: MessageState) -> None:
    with pytest.raises(IllegalTransition, match=f"{old.value} message cannot become"):
        advance(record(old), new, at=NOW)


def test_a_send_from_planned_to_sent() -> None:
    sending = advance(record(), S.SENDING, at=NOW)
    assert (sending.state, sending.attempts, sending.updated_at) == (S.SENDING, 1, NOW)
    later = NOW + timedelta(seconds=2)
    sent = advance(sending, S.SENT, at=later, message_id="<x@example.com>")
    assert (sent.state, sent.sent_at, sent.message_id) == (S.SENT, later, "<x@example.com>")


def test_temporary_failure_is_planned_again_with_a_retry_time() -> None:
    sending = advance(record(), S.SENDING, at=NOW)
    with pytest.raises(IllegalTransition, match="next_attempt_at"):
        advance(sending, S.PLANNED, at=NOW, code=451)
    retry = advance(
        sending,
        S.PLANNED,
        at=NOW,
        code=451,
        detail="try later",
        next_attempt_at=NOW + timedelta(minutes=5),
    )
    assert retry.is_retry
    assert (retry.code, retry.attempts) == (451, 1)
    again = advance(retry, S.SENDING, at=NOW + timedelta(minutes=5))
    assert (again.attempts, again.next_attempt_at) == (2, None)


def test_permanent_failure() -> None:
    failed = advance(
        advance(record(), S.SENDING, at=NOW), S.FAILED, at=NOW, code=550, detail="no such user"
    )
    assert (failed.state, failed.code, failed.detail) == (S.FAILED, 550, "no such user")


def test_recover_after_crash_marks_sending_unknown() -> None:
    """A send interrupted by a crash is never repeated on its own: it becomes unknown."""
    sending = advance(record(), S.SENDING, at=NOW)
    sent = advance(sending, S.SENT, at=NOW)
    planned = record()
    later = NOW + timedelta(hours=1)
    recovered = recover_after_crash([sending, sent, planned], at=later)
    assert [r.state for r in recovered] == [S.UNKNOWN, S.SENT, S.PLANNED]
    assert recovered[0].updated_at == later
    assert "may or may not" in recovered[0].detail
    assert recovered[1] is sent
    assert recovered[2] is planned


def test_recover_after_crash_plans_again_what_was_never_handed() -> None:
    """Only a message handed to the server can be in doubt; one still pending goes again."""
    sending = advance(record(), S.SENDING, at=NOW)
    pending = replace(sending, handover=HANDOVER_PENDING)
    handed = replace(sending, handover=HANDED)
    later = NOW + timedelta(hours=1)
    again, doubt, legacy = recover_after_crash([pending, handed, sending], at=later)
    assert (again.state, again.next_attempt_at, again.handover) == (S.PLANNED, later, "")
    assert again.attempts == 1
    assert "before it was handed" in again.detail
    assert doubt.state is S.UNKNOWN
    # A record from before the hand-over was tracked may have gone: never resent.
    assert legacy.state is S.UNKNOWN


def test_handover_round_trips_and_is_reset_by_each_transition() -> None:
    handed = replace(advance(record(), S.SENDING, at=NOW), handover=HANDED)
    assert OutboxRecord.from_doc(handed.to_doc()) == handed
    assert advance(handed, S.SENT, at=NOW).handover == ""


def test_release_plans_an_unknown_message_again_and_records_who() -> None:
    unknown = advance(advance(record(), S.SENDING, at=NOW), S.UNKNOWN, at=NOW)
    later = NOW + timedelta(days=1)
    released = release(unknown, at=later, by="owner@laptop")
    assert (released.state, released.next_attempt_at) == (S.PLANNED, later)
    assert (released.released_at, released.released_by) == (later, "owner@laptop")
    assert "released by owner@laptop" in released.detail
    assert OutboxRecord.from_doc(released.to_doc()) == released
    # The next attempt carries the release with it.
    assert advance(released, S.SENDING, at=later).released_by == "owner@laptop"
    for state in (S.PLANNED, S.SENDING, S.SENT, S.FAILED, S.SKIPPED):
        other = replace(unknown, state=state)
        with pytest.raises(IllegalTransition, match="only an unknown message"):
            release(other, at=later, by="owner@laptop")


def test_new_record_cannot_start_finished() -> None:
    with pytest.raises(IllegalTransition):
        new_record(
            key="k",
            contact="c",
            kind="sequence",
            ref="s/a",
            template="t",
            due_at=NOW,
            at=NOW,
            state=S.SENT,
        )
    assert (
        new_record(
            key="k",
            contact="c",
            kind="sequence",
            ref="s/a",
            template="t",
            due_at=NOW,
            at=NOW,
            state=S.SENDING,
        ).attempts
        == 1
    )


def test_record_round_trips_through_a_document() -> None:
    full = advance(
        advance(record(), S.SENDING, at=NOW),
        S.SENT,
        at=NOW + timedelta(seconds=1),
        message_id="<m@example.com>",
    )
    doc = full.to_doc()
    assert doc["state"] == "sent"
    assert doc["sent_at"] == "2026-03-09T08:01:01+00:00"
    assert doc["next_attempt_at"] is None
    assert OutboxRecord.from_doc(doc) == full


def test_documents_with_other_offsets_read_as_utc() -> None:
    doc = record().to_doc()
    doc["due_at"] = "2026-03-09T09:01:00+01:00"
    assert OutboxRecord.from_doc(doc).due_at == datetime(2026, 3, 9, 8, 1, tzinfo=UTC)
    doc["state"] = "lost"
    with pytest.raises(TomaError, match="unknown state"):
        OutboxRecord.from_doc(doc)


def test_state_given_as_a_string_becomes_the_enum() -> None:
    """A state written as the plain string "sent" still counts as attempted."""
    loose = replace(record(), state="sent")  # type: ignore[arg-type]
    assert loose.state is S.SENT
    assert ever_attempted(loose.state)
