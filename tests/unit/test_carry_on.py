"""carry_on: a planned message's record is the stored one advanced, or a first one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from toma.core.outbox import MessageState, OutboxRecord, advance, carry_on, new_record

NOW = datetime(2026, 3, 9, 8, 1, tzinfo=UTC)
S = MessageState


@dataclass(frozen=True)
class Planned:
    key: str = "keep/mira@example.org/hello"

    def to_record(self, *, at: datetime, state: MessageState, detail: str | None) -> OutboxRecord:
        return new_record(
            key=self.key,
            contact="mira@example.org",
            kind="sequence",
            ref="keep/hello",
            template="hello.md",
            due_at=NOW - timedelta(hours=1),
            at=at,
            state=state,
            detail=detail or "",
        )


def test_a_message_never_tried_gets_its_first_record() -> None:
    record = carry_on(None, Planned(), S.SENDING, at=NOW)
    assert record == Planned().to_record(at=NOW, state=S.SENDING, detail=None)
    assert record.state is S.SENDING and record.attempts == 1


def test_a_retry_advances_the_stored_record_and_keeps_its_attempts() -> None:
    first = advance(
        carry_on(None, Planned(), S.SENDING, at=NOW - timedelta(minutes=5)),
        S.PLANNED,
        at=NOW - timedelta(minutes=4),
        next_attempt_at=NOW,
    )
    again = carry_on(first, Planned(), S.SENDING, at=NOW)
    assert again == advance(first, S.SENDING, at=NOW)
    assert again.attempts == 2


def test_a_skip_says_why_either_way() -> None:
    fresh = carry_on(None, Planned(), S.SKIPPED, at=NOW, detail="too late")
    assert fresh.state is S.SKIPPED and fresh.detail == "too late"
    stored = Planned().to_record(at=NOW - timedelta(days=1), state=S.PLANNED, detail=None)
    skipped = carry_on(stored, Planned(), S.SKIPPED, at=NOW, detail="too late")
    assert skipped.state is S.SKIPPED and skipped.detail == "too late"
