"""One tick's order of decisions: reminders planned first hold keep-in-touch mail back."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from toma.config import Pace, Window
from toma.core.agenda import decide
from toma.core.contacts import make_contact
from toma.core.enrolments import Enrolment
from toma.core.planner import PlanState
from toma.core.reminders import PlannedReminder
from toma.core.sequences import OnReply, Sequence, Step
from toma.timeutil import parse_duration

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday, inside the window
ANN = "ann@example.org"


def state() -> PlanState:
    keep = Sequence(
        name="keep",
        description="",
        enroll_tag=None,
        on_reply=OnReply("stop", None),
        window="default",
        steps=(Step("only", parse_duration("0h"), "t.md"),),
        repeat=None,
        file=Path("keep.toml"),
    )
    return PlanState(
        contacts={ANN: make_contact(ANN, timezone="UTC")},
        enrolments=[Enrolment(contact=ANN, sequence="keep", enrolled_at=NOW - timedelta(days=1))],
        history={},
        sequences={"keep": keep},
        windows={"default": Window("default", frozenset(range(7)), time(9, 1), time(16, 59))},
        pace=Pace(min_gap=parse_duration("3d")),
    )


def reminder(send_at: datetime, *, skipped: bool = False) -> PlannedReminder:
    return PlannedReminder(
        key="invoice:INV-1:0d",
        contact=ANN,
        number="INV-1",
        stage="0d",
        template="r.md",
        due_at=send_at,
        send_at=send_at,
        late_by=timedelta(0),
        skipped=skipped,
    )


def test_a_reminder_due_now_holds_the_step() -> None:
    assert decide(state(), [reminder(NOW)], NOW).due == ()


def test_a_reminder_later_today_holds_the_step() -> None:
    assert decide(state(), [reminder(NOW + timedelta(hours=5))], NOW).due == ()


def test_a_reminder_days_away_does_not_hold_the_step() -> None:
    """`toma plan` passes the reminders of the weeks it shows: only the coming day's count."""
    decided = decide(state(), [reminder(NOW + timedelta(days=3))], NOW)
    assert [send.step for send in decided.due] == ["only"]


def test_a_skipped_reminder_holds_nothing() -> None:
    decided = decide(state(), [reminder(NOW, skipped=True)], NOW)
    assert [send.step for send in decided.due] == ["only"]


def test_without_reminders_the_step_is_due() -> None:
    assert [send.step for send in decide(state(), [], NOW).due] == ["only"]
