"""The planner: which step is next, when it may go, and what is never sent again."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.sequences import sequence
from toma.config import Pace, Window
from toma.core.contacts import Contact, Status, make_contact
from toma.core.enrolments import Enrolment
from toma.core.outbox import (
    MessageState,
    OutboxRecord,
    advance,
    new_record,
    repeat_number,
    sequence_key,
)
from toma.core.planner import Plan, PlannedSend, PlanState, plan
from toma.core.sequences import OnReply, Repeat, Sequence, Step
from toma.core.windows import in_window
from toma.timeutil import Duration, parse_duration

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
WEEKDAYS = Window("default", frozenset(range(5)), time(9, 1), time(16, 59))
ALWAYS = Window("always", frozenset(range(7)), time(0, 0), time(23, 59))
WINDOWS = {"default": WEEKDAYS, "always": ALWAYS}
ADA = "ada@example.com"
BOB = "bob@example.com"


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def enrol(contact: str, name: str, at: datetime, **changes: object) -> Enrolment:
    base = Enrolment(contact=contact, sequence=name, enrolled_at=at.astimezone(UTC))
    return replace(base, **changes)  # type: ignore[arg-type]


def record(
    contact: str,
    name: str,
    step: str,
    at: datetime,
    state: MessageState = MessageState.SENT,
    **changes: object,
) -> OutboxRecord:
    at = at.astimezone(UTC)
    base = OutboxRecord(
        key=sequence_key(contact, name, step),
        contact=contact,
        kind="sequence",
        ref=f"{name}/{step}",
        sequence=name,
        step=step,
        template=f"{name}/{step}.md",
        state=state,
        due_at=at,
        attempts=1,
        sent_at=at if state is MessageState.SENT else None,
        updated_at=at,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def make_state(
    sequences: Iterable[Sequence],
    enrolments: Iterable[Enrolment],
    history: Iterable[OutboxRecord] = (),
    contacts: Iterable[Contact] = (),
    **changes: object,
) -> PlanState:
    enrolments = list(enrolments)
    people = {c.email: c for c in contacts}
    for e in enrolments:
        people.setdefault(e.contact, Contact(e.contact))
    base = PlanState(
        contacts=people,
        enrolments=enrolments,
        history={r.key: r for r in history},
        sequences={s.name: s for s in sequences},
        windows=WINDOWS,
        pace=Pace(min_gap=parse_duration("3d"), max_late=parse_duration("14d")),
        default_tz="Europe/Berlin",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def refs(sends: Iterable[PlannedSend]) -> list[tuple[str, str, datetime]]:
    """(contact, ref, send_at in Berlin) for readable assertions."""
    return [(s.contact, s.ref, s.send_at.astimezone(BERLIN)) for s in sends]


def simulate(
    state: PlanState,
    start: datetime,
    end: datetime,
    *,
    tick: timedelta = timedelta(hours=1),
) -> tuple[PlanState, list[OutboxRecord]]:
    """Run the daemon's loop: tick regularly and at every planned send; record what it does."""
    now = start.astimezone(UTC)
    end = end.astimezone(UTC)
    written: list[OutboxRecord] = []
    while now <= end:
        result = plan(state, now, until=now + tick)
        history = dict(state.history)
        for send in result.skipped:
            assert send.key not in history, "at most once"
            history[send.key] = send.to_record(at=now, state=MessageState.SKIPPED)
        for send in result.due:
            assert send.key not in history, "at most once"
            sending = send.to_record(at=now, state=MessageState.SENDING)
            history[send.key] = advance(sending, MessageState.SENT, at=now)
        written += [history[s.key] for s in (*result.skipped, *result.due)]
        state = replace(state, history=history)
        upcoming = [s.send_at for s in result.later]
        now = min([now + tick, *upcoming])
    return state, written


def sent_log(written: Iterable[OutboxRecord]) -> list[tuple[str, str, datetime]]:
    return [
        (r.contact, r.ref, r.sent_at.astimezone(BERLIN))
        for r in written
        if r.state is MessageState.SENT and r.sent_at is not None
    ]


# --------------------------------------------------------------------------- timing


class TestTiming:
    def test_friday_evening_enrolment_goes_monday_0901(self) -> None:
        """Due Friday 19:00, outside the window: the first opening is Monday 09:01."""
        state = make_state(
            [sequence("s", [("hello", "1h")])], [enrol(ADA, "s", berlin(2026, 3, 6, 18))]
        )
        result = plan(state, berlin(2026, 3, 6, 18), until=berlin(2026, 3, 10))
        assert refs(result.later) == [(ADA, "s/hello", berlin(2026, 3, 9, 9, 1))]
        assert result.later[0].due_at == berlin(2026, 3, 6, 19)
        assert result.due == ()
        assert plan(state, berlin(2026, 3, 9, 9, 0)).due == ()
        due = plan(state, berlin(2026, 3, 9, 9, 1)).due
        assert refs(due) == [(ADA, "s/hello", berlin(2026, 3, 9, 9, 1))]

    def test_due_inside_the_window_goes_at_once(self) -> None:
        state = make_state(
            [sequence("s", [("hello", "1h")])], [enrol(ADA, "s", berlin(2026, 3, 4, 10))]
        )
        result = plan(state, berlin(2026, 3, 4, 11, 30))
        assert refs(result.due) == [(ADA, "s/hello", berlin(2026, 3, 4, 11, 30))]
        assert result.due[0].late_by == timedelta(minutes=30)
        assert result.due[0].key == sequence_key(ADA, "s", "hello")

    def test_window_is_read_in_the_contacts_zone(self) -> None:
        state = make_state(
            [sequence("s", [("hello", "1h")])],
            [enrol(BOB, "s", berlin(2026, 3, 4, 10))],
            contacts=[Contact(BOB, timezone="America/New_York")],
        )
        result = plan(state, berlin(2026, 3, 4, 11), until=berlin(2026, 3, 6))
        # 11:00 Berlin is 05:00 in New York: wait for 09:01 there.
        assert result.later[0].send_at == datetime(2026, 3, 4, 9, 1, tzinfo=NEW_YORK)
        assert result.later[0].timezone == "America/New_York"
        assert result.later[0].local_send_at().hour == 9

    def test_weekly_steps_keep_0901_across_spring_dst(self) -> None:
        """Durations run on the wall clock: the step after DST goes at 09:01 CEST, once."""
        weekly = sequence("weekly", [("one", "1h"), ("two", "1w"), ("three", "1w"), ("four", "1w")])
        state = make_state([weekly], [enrol(ADA, "weekly", berlin(2026, 3, 16, 8))])
        projected = plan(state, berlin(2026, 3, 16, 8), until=berlin(2026, 4, 30))
        expected = [
            (ADA, "weekly/one", berlin(2026, 3, 16, 9, 1)),
            (ADA, "weekly/two", berlin(2026, 3, 23, 9, 1)),
            (ADA, "weekly/three", berlin(2026, 3, 30, 9, 1)),  # after the last Sunday of March
            (ADA, "weekly/four", berlin(2026, 4, 6, 9, 1)),
        ]
        assert refs(projected.later) == expected
        _, written = simulate(state, berlin(2026, 3, 16, 8), berlin(2026, 4, 30))
        assert sent_log(written) == expected

    def test_weekly_steps_keep_0901_across_autumn_dst(self) -> None:
        weekly = sequence("weekly", [("one", "1h"), ("two", "1w"), ("three", "1w")])
        state = make_state([weekly], [enrol(ADA, "weekly", berlin(2026, 10, 19, 8))])
        _, written = simulate(state, berlin(2026, 10, 19, 8), berlin(2026, 11, 10))
        assert sent_log(written) == [
            (ADA, "weekly/one", berlin(2026, 10, 19, 9, 1)),
            (ADA, "weekly/two", berlin(2026, 10, 26, 9, 1)),
            (ADA, "weekly/three", berlin(2026, 11, 2, 9, 1)),
        ]

    def test_clock_going_back_sends_nothing_twice(self) -> None:
        """Planning again at an earlier moment (a clock change) repeats nothing already sent."""
        state = make_state(
            [sequence("s", [("a", "1h"), ("b", "1d")])],
            [enrol(ADA, "s", berlin(2026, 3, 2, 8))],
            [record(ADA, "s", "a", berlin(2026, 3, 2, 9, 1))],
        )
        for now in (berlin(2026, 3, 2, 9, 1), berlin(2026, 3, 2, 8, 0), berlin(2026, 3, 1, 12)):
            result = plan(state, now, until=berlin(2026, 3, 10))
            assert [s.ref for s in result.sends] == ["s/b"]
            # Due on the 3rd; the pace gap after "a" holds it until the 5th.
            assert result.sends[0].send_at == berlin(2026, 3, 5, 9, 1)


# --------------------------------------------------------------------------- which step is next

ANCHOR = berlin(2026, 3, 2, 12)  # Monday; history is written one day apart from here

# (case, steps in the file, history (step, state) in the order it happened, expected next)
NEXT_STEP = [
    ("fresh enrolment", "a b c", [], "a"),
    ("after the first", "a b c", [("a", "sent")], "b"),
    ("inserted before a sent step", "new a b", [("a", "sent")], "b"),
    ("inserted between sent steps", "a new b c", [("a", "sent"), ("b", "sent")], "c"),
    ("reordered", "b a c", [("a", "sent"), ("b", "sent")], "c"),
    ("reordered, sent one now last", "b c a", [("a", "sent")], None),
    ("sent step removed", "a c", [("a", "sent"), ("b", "sent")], "c"),
    ("every sent step removed", "x y", [("a", "sent"), ("b", "sent")], "x"),
    ("all sent, no repeat", "a b", [("a", "sent"), ("b", "sent")], None),
    ("skipped counts as attempted", "a b c", [("a", "sent"), ("b", "skipped")], "c"),
    ("failed counts as attempted", "a b c", [("a", "failed")], "b"),
    ("unknown counts as attempted", "a b c", [("a", "unknown")], "b"),
    ("planned does not", "a b c", [("a", "sent"), ("b", "planned")], "b"),
]


@pytest.mark.parametrize(
    ("steps", "history", "expected"),
    [case[1:] for case in NEXT_STEP],
    ids=[case[0] for case in NEXT_STEP],
)
def test_next_step(steps: str, history: list[tuple[str, str]], expected: str | None) -> None:
    """The first step after the last attempted one in file order; never an attempted one."""
    seq = sequence("s", [(i, "1d") for i in steps.split()], window="always")
    records = [
        record(ADA, "s", step, ANCHOR + timedelta(days=n), MessageState(state))
        for n, (step, state) in enumerate(history)
    ]
    state = make_state([seq], [enrol(ADA, "s", ANCHOR - timedelta(days=1))], records)
    now = ANCHOR + timedelta(days=len(history) + 1)
    result = plan(state, now, until=now + timedelta(days=30))
    first = result.sends[0] if result.sends else None
    assert (first.step if first else None) == expected
    if first is not None:
        # Due one day after the latest message of the enrolment (or the enrolment).
        attempted = [r for r in records if r.state is not MessageState.PLANNED]
        anchor = attempted[-1].settled_at if attempted else ANCHOR - timedelta(days=1)
        assert first.due_at == anchor + timedelta(days=1)
    attempted_keys = {r.key for r in records if r.state is not MessageState.PLANNED}
    assert not attempted_keys & {s.key for s in result.sends}


def test_editing_the_file_resends_nothing_over_time() -> None:
    """Insert a step before a sent one mid-sequence: the rest go, the new one never does."""
    before = sequence("s", [("a", "1h"), ("b", "2d"), ("c", "2d")])
    start = berlin(2026, 3, 2, 8)
    state = make_state([before], [enrol(ADA, "s", start)])
    state, first = simulate(state, start, berlin(2026, 3, 3, 12))
    assert [r.ref for r in first] == ["s/a"]
    edited = sequence("s", [("intro", "1h"), ("a", "1h"), ("c", "2d"), ("b", "2d"), ("d", "2d")])
    state = replace(state, sequences={"s": edited})
    _, rest = simulate(state, berlin(2026, 3, 3, 12), berlin(2026, 3, 20))
    # After "a" (file order): "c", then "b", then "d"; "intro" was inserted before "a".
    assert [r.ref for r in rest] == ["s/c", "s/b", "s/d"]


# --------------------------------------------------------------------------- repeat


class TestRepeat:
    def test_repeat_follows_the_last_step(self) -> None:
        seq = sequence("s", [("a", "1h")], repeat="30d", window="always")
        state = make_state(
            [seq], [enrol(ADA, "s", ANCHOR)], [record(ADA, "s", "a", ANCHOR + timedelta(hours=1))]
        )
        result = plan(state, ANCHOR, until=ANCHOR + timedelta(days=95))
        assert [s.step for s in result.later] == ["repeat-1", "repeat-2", "repeat-3"]
        # Every 30 days on the wall clock, from the last message (13:00), DST or not.
        assert [s.send_at.astimezone(BERLIN) for s in result.later] == [
            berlin(2026, 4, 1, 13),
            berlin(2026, 5, 1, 13),
            berlin(2026, 5, 31, 13),
        ]

    def test_repeat_numbering_continues_from_history(self) -> None:
        seq = sequence("s", [("a", "1h")], repeat="30d", window="always")
        history = [
            record(ADA, "s", "a", ANCHOR),
            record(ADA, "s", "repeat-1", ANCHOR + timedelta(days=30)),
            record(ADA, "s", "repeat-2", ANCHOR + timedelta(days=61)),
        ]
        state = make_state([seq], [enrol(ADA, "s", ANCHOR)], history)
        now = ANCHOR + timedelta(days=91)
        result = plan(state, now, until=now + timedelta(days=40))
        assert [s.step for s in result.sends] == ["repeat-3", "repeat-4"]
        assert result.sends[0].due_at == ANCHOR + timedelta(days=91)
        assert repeat_number(result.sends[1].step) == 4

    def test_step_appended_after_repeats_began(self) -> None:
        """A new last step is sent, then the repeats go on with the next number."""
        seq = sequence("s", [("a", "1h"), ("b", "1d")], repeat="30d", window="always")
        history = [
            record(ADA, "s", "a", ANCHOR),
            record(ADA, "s", "repeat-1", ANCHOR + timedelta(days=30)),
        ]
        state = make_state([seq], [enrol(ADA, "s", ANCHOR)], history)
        now = ANCHOR + timedelta(days=31)
        result = plan(state, now, until=now + timedelta(days=40))
        assert [s.step for s in result.sends] == ["b", "repeat-2"]
        # "b" waits for the pace gap after repeat-1; repeat-2 comes 30 days after "b".
        assert [s.send_at.astimezone(BERLIN) for s in result.sends] == [
            berlin(2026, 4, 4, 12),
            berlin(2026, 5, 4, 12),
        ]

    def test_repeat_stops_when_the_contact_leaves(self) -> None:
        seq = sequence("s", [("a", "1h")], repeat="30d", window="always")
        state = make_state(
            [seq],
            [enrol(ADA, "s", ANCHOR)],
            [record(ADA, "s", "a", ANCHOR)],
            contacts=[Contact(ADA, status=Status.UNSUBSCRIBED)],
        )
        assert plan(state, ANCHOR, until=ANCHOR + timedelta(days=365)).sends == ()


# --------------------------------------------------------------------------- pace


class TestPace:
    def test_two_sequences_due_the_same_day(self) -> None:
        """At most one automated message per contact per min_gap, across sequences."""
        state = make_state(
            [sequence("alpha", [("a", "1h")]), sequence("beta", [("b", "2h")])],
            [enrol(ADA, "alpha", berlin(2026, 3, 2, 8)), enrol(ADA, "beta", berlin(2026, 3, 2, 8))],
        )
        result = plan(state, berlin(2026, 3, 2, 8), until=berlin(2026, 3, 10))
        assert refs(result.later) == [
            (ADA, "alpha/a", berlin(2026, 3, 2, 9, 1)),
            (ADA, "beta/b", berlin(2026, 3, 5, 9, 1)),
        ]
        assert result.later[1].late_by == timedelta(days=2, hours=23, minutes=1)

    def test_same_due_time_goes_by_sequence_name(self) -> None:
        state = make_state(
            [sequence("zeta", [("z", "1h")]), sequence("alpha", [("a", "1h")])],
            [enrol(ADA, "zeta", berlin(2026, 3, 2, 8)), enrol(ADA, "alpha", berlin(2026, 3, 2, 8))],
        )
        result = plan(state, berlin(2026, 3, 2, 8), until=berlin(2026, 3, 10))
        assert [s.ref for s in result.later] == ["alpha/a", "zeta/z"]

    def test_history_of_any_kind_counts(self) -> None:
        """A message sent, being sent, or of unknown outcome holds the gap; a failed one not."""
        seq = sequence("s", [("a", "1h")])
        enrolments = [enrol(ADA, "s", berlin(2026, 3, 2, 8))]
        for state_, gated in (
            (MessageState.SENT, True),
            (MessageState.SENDING, True),
            (MessageState.UNKNOWN, True),
            (MessageState.FAILED, False),
        ):
            other = record(ADA, "other", "x", berlin(2026, 3, 1, 12), state_)
            invoice = replace(
                record(ADA, "x", "y", berlin(2026, 2, 1), state_),
                kind="invoice",
                key="invoice/7/+7d",
                sequence=None,
                step=None,
            )
            state = make_state([seq], enrolments, [other, invoice])
            result = plan(state, berlin(2026, 3, 2, 8), until=berlin(2026, 3, 10))
            expected = berlin(2026, 3, 4, 12) if gated else berlin(2026, 3, 2, 9, 1)
            assert [s.send_at for s in result.later] == [expected], state_

    def test_notices_about_a_contact_do_not_count(self) -> None:
        """A notice to the owner about Ada's reply is not a message to Ada."""
        notice = replace(
            record(ADA, "x", "y", berlin(2026, 3, 1, 12)),
            kind="notice",
            key="notice/reply/1",
            sequence=None,
            step=None,
        )
        state = make_state(
            [sequence("s", [("a", "1h")])], [enrol(ADA, "s", berlin(2026, 3, 2, 8))], [notice]
        )
        result = plan(state, berlin(2026, 3, 2, 8), until=berlin(2026, 3, 10))
        assert [s.send_at for s in result.later] == [berlin(2026, 3, 2, 9, 1)]

    def test_other_contacts_are_not_gated(self) -> None:
        state = make_state(
            [sequence("s", [("a", "1h")])],
            [enrol(ADA, "s", berlin(2026, 3, 2, 8)), enrol(BOB, "s", berlin(2026, 3, 2, 8))],
        )
        result = plan(state, berlin(2026, 3, 2, 9, 1))
        assert refs(result.due) == [
            (ADA, "s/a", berlin(2026, 3, 2, 9, 1)),
            (BOB, "s/a", berlin(2026, 3, 2, 9, 1)),
        ]

    def test_month_long_outage(self) -> None:
        """After an outage the pace spreads the backlog; steps too late are skipped."""
        seqs = [
            sequence("alpha", [("a1", "1d"), ("a2", "2d")]),
            sequence("beta", [("b1", "18d")]),
            sequence("gamma", [("g1", "20d")]),
        ]
        enrolled = berlin(2026, 3, 2, 8)  # Monday; the daemon is down until April
        state = make_state(
            [seqs[0], seqs[1], seqs[2]], [enrol(ADA, s.name, enrolled) for s in seqs]
        )
        back = berlin(2026, 4, 1, 10)  # Wednesday
        first = plan(state, back)
        # alpha/a1 was due 3 March: 29 days late. beta/b1 due 20 March: 12 days late.
        assert [s.ref for s in first.skipped] == ["alpha/a1"]
        assert [s.ref for s in first.due] == ["beta/b1"]
        assert first.skipped[0].late_by > timedelta(days=14)
        _, written = simulate(state, back, berlin(2026, 4, 30))
        log = [(r.ref, r.state.value, r.updated_at.astimezone(BERLIN)) for r in written]
        assert log == [
            ("alpha/a1", "skipped", berlin(2026, 4, 1, 10)),
            ("beta/b1", "sent", berlin(2026, 4, 1, 10)),
            # gamma/g1 (due 22 March) gets its turn on Saturday 4 April (pace), could go
            # only on Monday 6 April: 15 days late, so it is skipped when its turn comes.
            ("gamma/g1", "skipped", berlin(2026, 4, 4, 10)),
            # alpha goes on two days after its skip: a2 on Friday 3 April would break the
            # pace, so it waits for Saturday's gap and the window: Monday 6 April.
            ("alpha/a2", "sent", berlin(2026, 4, 6, 9, 1)),
        ]

    def test_outage_backlog_across_many_contacts(self) -> None:
        """Every contact's sends stay min_gap apart and inside the window; skips are late."""
        seqs = [sequence(f"s{i}", [("a", f"{i + 1}d"), ("b", "2d")]) for i in range(4)]
        people = [f"p{i}@example.com" for i in range(6)]
        enrolments = [
            enrol(p, s.name, berlin(2026, 3, 10, 8) + timedelta(hours=7 * n))
            for n, p in enumerate(people)
            for s in seqs
        ]
        state = make_state(seqs, enrolments)
        final, written = simulate(state, berlin(2026, 3, 25, 12), berlin(2026, 5, 1))
        assert len(final.history) == len(people) * 8
        for person in people:
            times = sorted(
                r.sent_at for r in written if r.contact == person and r.sent_at is not None
            )
            assert all(b - a >= timedelta(days=3) for a, b in pairwise(times))
            assert all(t.astimezone(BERLIN).weekday() < 5 for t in times)
        for r in written:
            if r.state is MessageState.SKIPPED:
                assert r.updated_at is not None


# --------------------------------------------------------------------------- who gets nothing


class TestNothingSent:
    @pytest.mark.parametrize("status", [Status.PAUSED, Status.UNSUBSCRIBED, Status.BOUNCED])
    def test_inactive_contacts_get_nothing(self, status: Status) -> None:
        state = make_state(
            [sequence("s", [("a", "1h")])],
            [enrol(ADA, "s", berlin(2026, 3, 2, 8))],
            contacts=[Contact(ADA, status=status)],
        )
        assert plan(state, berlin(2026, 3, 2, 10), until=berlin(2026, 6, 1)).sends == ()

    def test_stopped_enrolment_gets_nothing(self) -> None:
        state = make_state(
            [sequence("s", [("a", "1h")])],
            [enrol(ADA, "s", berlin(2026, 3, 2, 8), state="stopped", stopped_reason="replied")],
        )
        assert plan(state, berlin(2026, 3, 2, 10), until=berlin(2026, 6, 1)).sends == ()

    def test_paused_without_a_date_gets_nothing(self) -> None:
        state = make_state(
            [sequence("s", [("a", "1h")])], [enrol(ADA, "s", berlin(2026, 3, 2, 8), state="paused")]
        )
        assert plan(state, berlin(2026, 3, 2, 10), until=berlin(2026, 6, 1)).sends == ()

    def test_forgotten_contact_gets_nothing(self) -> None:
        state = make_state([sequence("s", [("a", "1h")])], [enrol(ADA, "s", berlin(2026, 3, 2, 8))])
        state = replace(state, contacts={})
        assert plan(state, berlin(2026, 3, 2, 10), until=berlin(2026, 6, 1)).sends == ()

    def test_held_sequence_sends_nothing_while_others_do(self) -> None:
        state = make_state(
            [sequence("broken", [("a", "1h")]), sequence("fine", [("a", "1h")])],
            [
                enrol(ADA, "broken", berlin(2026, 3, 2, 8)),
                enrol(BOB, "fine", berlin(2026, 3, 2, 8)),
            ],
            held=frozenset({"broken"}),
        )
        result = plan(state, berlin(2026, 3, 2, 10), until=berlin(2026, 6, 1))
        assert [(s.contact, s.ref) for s in result.sends] == [(BOB, "fine/a")]

    def test_sequence_whose_window_is_gone_is_held(self) -> None:
        state = make_state(
            [sequence("s", [("a", "1h")], window="evenings")],
            [enrol(ADA, "s", berlin(2026, 3, 2, 8))],
        )
        assert plan(state, berlin(2026, 3, 2, 10), until=berlin(2026, 6, 1)).sends == ()

    def test_duplicate_enrolments_send_once(self) -> None:
        at = berlin(2026, 3, 2, 8)
        state = make_state(
            [sequence("s", [("a", "1h")])], [enrol(ADA, "s", at), enrol(ADA, "s", at)]
        )
        assert len(plan(state, berlin(2026, 3, 2, 10)).due) == 1

    def test_attempted_key_is_never_planned_whatever_the_file_says(self) -> None:
        """Even a record whose step the file no longer has keeps its key from going again."""
        seq = sequence("s", [("a", "1h")], window="always")
        state = make_state(
            [seq],
            [enrol(ADA, "s", ANCHOR)],
            [replace(record(ADA, "s", "a", ANCHOR, MessageState.UNKNOWN), step="renamed")],
        )
        assert (
            plan(state, ANCHOR + timedelta(hours=2), until=ANCHOR + timedelta(days=9)).sends == ()
        )


# --------------------------------------------------------------------------- waiting


class TestWaiting:
    def test_paused_until_a_date_waits_then_goes(self) -> None:
        """A pause is asked-for waiting, not lateness: the step goes when it ends."""
        pause_end = berlin(2026, 4, 10, 12)  # Friday
        state = make_state(
            [sequence("s", [("a", "1h")])],
            [enrol(ADA, "s", berlin(2026, 3, 2, 8), state="paused", paused_until=pause_end)],
        )
        assert plan(state, berlin(2026, 3, 2, 10), until=berlin(2026, 4, 10, 11)).sends == ()
        result = plan(state, berlin(2026, 3, 2, 10), until=berlin(2026, 4, 30))
        assert refs(result.later) == [(ADA, "s/a", pause_end)]
        assert result.later[0].late_by == timedelta(0)
        assert result.skipped == ()

    def test_pause_over_means_active(self) -> None:
        state = make_state(
            [sequence("s", [("a", "1h")])],
            [
                enrol(
                    ADA,
                    "s",
                    berlin(2026, 3, 2, 8),
                    state="paused",
                    paused_until=berlin(2026, 3, 3, 8),
                )
            ],
        )
        assert [s.ref for s in plan(state, berlin(2026, 3, 4, 10)).due] == ["s/a"]

    def test_hold_until_moves_the_next_step(self) -> None:
        """An out-of-office return date holds the contact's next message until after it."""
        state = make_state(
            [sequence("s", [("a", "1h"), ("b", "5d")])],
            [enrol(ADA, "s", berlin(2026, 3, 2, 8))],
            contact_hold_until={ADA: berlin(2026, 3, 11, 12)},
        )
        result = plan(state, berlin(2026, 3, 2, 8), until=berlin(2026, 3, 20))
        assert refs(result.later) == [
            (ADA, "s/a", berlin(2026, 3, 11, 12)),
            (ADA, "s/b", berlin(2026, 3, 16, 12)),
        ]
        assert result.later[0].due_at == berlin(2026, 3, 2, 9)
        assert result.later[0].late_by == timedelta(0)

    def test_temporary_failure_is_retried_in_the_window(self) -> None:
        """A planned record with next_attempt_at goes again then, within the window."""
        retry = record(
            ADA,
            "s",
            "a",
            berlin(2026, 3, 6, 16, 50),
            MessageState.PLANNED,
            next_attempt_at=berlin(2026, 3, 6, 17, 20),
            code=451,
        )
        state = make_state(
            [sequence("s", [("a", "1h"), ("b", "1d")])],
            [enrol(ADA, "s", berlin(2026, 3, 6, 15))],
            [retry],
        )
        assert plan(state, berlin(2026, 3, 6, 17, 0)).due == ()
        result = plan(state, berlin(2026, 3, 6, 17, 0), until=berlin(2026, 3, 20))
        first = result.later[0]
        assert (first.ref, first.send_at, first.due_at) == (
            "s/a",
            berlin(2026, 3, 9, 9, 1),
            berlin(2026, 3, 6, 16, 50),
        )
        assert result.later[0].key == retry.key

    def test_skip_moves_the_enrolment_on_from_now(self) -> None:
        state = make_state(
            [sequence("s", [("a", "1h"), ("b", "2d")])], [enrol(ADA, "s", berlin(2026, 1, 5, 8))]
        )
        now = berlin(2026, 3, 2, 10)
        result = plan(state, now, until=berlin(2026, 3, 10))
        assert [s.ref for s in result.skipped] == ["s/a"]
        assert refs(result.later) == [(ADA, "s/b", berlin(2026, 3, 4, 10))]
        assert result.later[0].due_at == berlin(2026, 3, 4, 10)


# --------------------------------------------------------------------------- the projection


class TestProjection:
    def test_until_lists_future_steps_in_order(self) -> None:
        state = make_state(
            [sequence("s", [("a", "1h"), ("b", "2d"), ("c", "1w")]), sequence("t", [("x", "5d")])],
            [
                enrol(ADA, "s", berlin(2026, 3, 2, 8)),
                enrol(BOB, "s", berlin(2026, 3, 3, 8)),
                enrol(ADA, "t", berlin(2026, 3, 2, 8)),
            ],
        )
        result = plan(state, berlin(2026, 3, 2, 8), until=berlin(2026, 3, 31))
        assert refs(result.later) == [
            (ADA, "s/a", berlin(2026, 3, 2, 9, 1)),
            (BOB, "s/a", berlin(2026, 3, 3, 9, 1)),
            (ADA, "s/b", berlin(2026, 3, 5, 9, 1)),  # due the 4th: the pace gap
            (BOB, "s/b", berlin(2026, 3, 6, 9, 1)),  # due the 5th: the pace gap
            (ADA, "t/x", berlin(2026, 3, 9, 9, 1)),  # due the 7th (Sat.), gap to Sunday
            (ADA, "s/c", berlin(2026, 3, 12, 9, 1)),
            (BOB, "s/c", berlin(2026, 3, 13, 9, 1)),
        ]
        assert [s.send_at for s in result.later] == sorted(s.send_at for s in result.later)

    def test_due_and_skipped_do_not_depend_on_until(self) -> None:
        state = make_state(
            [sequence("s", [("a", "1h"), ("b", "1d")]), sequence("t", [("x", "1h")])],
            [
                enrol(ADA, "s", berlin(2026, 2, 2, 8)),
                enrol(ADA, "t", berlin(2026, 2, 25, 8)),
                enrol(BOB, "t", berlin(2026, 3, 2, 8)),
            ],
        )
        now = berlin(2026, 3, 2, 10)
        plain = plan(state, now)
        for until in (None, now, now + timedelta(days=3), now + timedelta(days=90)):
            result = plan(state, now, until=until)
            assert (result.due, result.skipped) == (plain.due, plain.skipped)
        assert plain.later == ()
        assert isinstance(plain, Plan)

    def test_naive_now_is_refused(self) -> None:
        state = make_state([], [])
        with pytest.raises(ValueError, match="aware"):
            plan(state, datetime(2026, 3, 2, 10))


# --------------------------------------------------------------------------- properties

ZONE_NAMES = ("", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Pacific/Auckland")
DELAYS = ("1h", "20h", "1d", "2d", "1w")


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[PlanState, list[Sequence], datetime, datetime, datetime]:
    start = berlin(2026, 3, 2, 8) + timedelta(hours=draw(st.integers(0, 24 * 220)))
    seqs = []
    for n in range(draw(st.integers(1, 3))):
        ids = [f"s{n}-{i}" for i in range(draw(st.integers(1, 4)))]
        steps = [(i, draw(st.sampled_from(DELAYS))) for i in ids]
        repeat = draw(st.sampled_from([None, "10d"]))
        seqs.append(
            sequence(
                f"seq{n}", steps, repeat=repeat, window=draw(st.sampled_from(["default", "always"]))
            )
        )
    people = [
        Contact(f"p{n}@example.com", timezone=draw(st.sampled_from(ZONE_NAMES)))
        for n in range(draw(st.integers(1, 3)))
    ]
    enrolments = [
        enrol(p.email, s.name, start + timedelta(hours=draw(st.integers(0, 200))))
        for p in people
        for s in seqs
        if draw(st.booleans())
    ]
    edited = []
    for seq in seqs:
        steps = list(seq.steps)
        order = draw(st.permutations(range(len(steps))))
        steps = [steps[i] for i in order]
        if len(steps) > 1 and draw(st.booleans()):
            del steps[draw(st.integers(0, len(steps) - 1))]
        new = Step(f"{seq.name}-new", parse_duration(draw(st.sampled_from(DELAYS))), "new.md")
        steps.insert(draw(st.integers(0, len(steps))), new)
        edited.append(replace(seq, steps=tuple(steps)))
    state = make_state(seqs, enrolments, contacts=people)
    edit_at = start + timedelta(days=draw(st.integers(1, 20)))
    outage = draw(st.integers(0, 30))
    return state, edited, start, edit_at, edit_at + timedelta(days=outage)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_properties_hold_through_edits_and_outages(
    scenario: tuple[PlanState, list[Sequence], datetime, datetime, datetime],
) -> None:
    """Whatever the edits and outages: each key at most once, pace kept, windows kept."""
    state, edited, start, edit_at, back_at = scenario
    state, first = simulate(state, start, edit_at, tick=timedelta(hours=3))
    # The daemon is down from edit_at to back_at; the file was edited meanwhile.
    state = replace(state, sequences={s.name: s for s in edited})
    state, second = simulate(state, back_at, back_at + timedelta(days=40), tick=timedelta(hours=3))
    written = first + second
    event(f"messages: {min(len(written) // 5 * 5, 20)}+")
    event(f"skipped: {any(r.state is MessageState.SKIPPED for r in written)}")
    keys = [r.key for r in written]
    assert len(keys) == len(set(keys))
    for person in state.contacts.values():
        tz = ZoneInfo(person.timezone or "Europe/Berlin")
        times = sorted(
            r.sent_at for r in written if r.contact == person.email and r.sent_at is not None
        )
        for earlier, later in pairwise(times):
            assert later >= state.pace.min_gap.after(earlier.astimezone(tz))
    for r in written:
        assert r.sequence is not None
        window = WINDOWS[next(s.window for s in edited if s.name == r.sequence)]
        if r.state is MessageState.SENT:
            assert r.sent_at is not None
            tz = ZoneInfo(state.contacts[r.contact].timezone or "Europe/Berlin")
            assert in_window(r.sent_at, window, tz)


def test_an_invoice_reminder_holds_keep_in_touch_mail_for_a_day_only() -> None:
    """Not on the reminder's day, but not for the whole pace gap either."""
    reminder_at = datetime(2026, 3, 2, 9, 1, tzinfo=UTC)
    record = new_record(
        key="invoice:INV-1:0d",
        contact="ann@example.org",
        kind="invoice",
        ref="INV-1/0d",
        template="r.md",
        due_at=reminder_at,
        at=reminder_at,
        state=MessageState.SENDING,
    )
    sent = advance(record, MessageState.SENT, at=reminder_at)
    sequence = _one_step_sequence()
    state = PlanState(
        contacts={"ann@example.org": make_contact("ann@example.org", timezone="UTC")},
        enrolments=[
            Enrolment(contact="ann@example.org", sequence=sequence.name, enrolled_at=reminder_at)
        ],
        history={sent.key: sent},
        sequences={sequence.name: sequence},
        windows={"default": Window("default", frozenset(range(7)), time(9, 1), time(16, 59))},
        pace=Pace(min_gap=parse_duration("3d")),
    )
    same_day = plan(state, reminder_at + timedelta(hours=3))
    assert same_day.due == ()
    next_day = plan(state, reminder_at + timedelta(days=1, hours=3))
    assert [send.step for send in next_day.due] == ["only"]


def _one_step_sequence() -> Sequence:
    return Sequence(
        name="keep",
        description="",
        enroll_tag=None,
        on_reply=OnReply("stop", None),
        window="default",
        steps=(Step("only", parse_duration("0h"), "t.md"),),
        repeat=None,
        file=Path("keep.toml"),
    )


# --------------------------------------------------------------------------- isolation


class TestOneSequenceCannotStopTheOthers:
    """Arithmetic that fails for one sequence or enrolment leaves the rest planned."""

    def _twenty(self, broken: Sequence) -> PlanState:
        start = berlin(2026, 3, 2, 10)  # a Monday, in the window
        people = [f"p{n}@example.com" for n in range(20)]
        good = [sequence("alpha", [("hello", "0d")]), sequence("beta", [("hello", "0d")])]
        enrolments = [enrol(p, "alpha" if n % 2 else "beta", start) for n, p in enumerate(people)]
        enrolments += [enrol(p, broken.name, start) for p in people]
        return make_state([*good, broken], enrolments)

    @pytest.mark.parametrize(
        "broken",
        [
            replace(
                sequence("huge", [("hello", "1d")]),
                steps=(Step("hello", Duration(months=99_999_999_999_999 * 12), "h.md"),),
            ),
            replace(
                sequence("huge", [("hello", "0d"), ("later", "1d")]),
                steps=(
                    Step("hello", parse_duration("0d"), "h.md"),
                    Step("later", Duration(seconds=10**15), "l.md"),
                ),
            ),
            replace(
                sequence("huge", [("hello", "0d")]),
                repeat=Repeat(Duration(months=10**13), "r.md"),
            ),
        ],
        ids=["first step", "second step", "repeat"],
    )
    def test_huge_duration_holds_only_its_sequence(self, broken: Sequence) -> None:
        """`after = "99999999999999y"` once crashed every tick: 0 of 20 messages went."""
        now = berlin(2026, 3, 2, 10)
        result = plan(self._twenty(broken), now, until=now + timedelta(days=400))
        good = [s for s in result.due if s.sequence != "huge"]
        assert len(good) == 20
        assert {s.sequence for s in good} == {"alpha", "beta"}
        assert [(p.sequence, p.file) for p in result.problems] == [
            ("huge", str(Path("sequences/huge.toml")))
        ]
        assert "cannot be planned" in result.problems[0].message

    def test_one_enrolment_out_of_the_calendar_holds_only_itself(self) -> None:
        """A message recorded as sent in year 9999 (a bad clock) does not stop its sequence."""
        now = berlin(2026, 3, 2, 10)
        alpha = sequence("alpha", [("hello", "0d"), ("again", "30d")], repeat="90d")
        far = datetime(9999, 12, 30, tzinfo=UTC)
        enrolments = [enrol(f"p{n}@example.com", "alpha", now) for n in range(5)]
        enrolments.insert(2, enrol("late@example.com", "alpha", now))
        history = [record("late@example.com", "alpha", "hello", far)]
        state = make_state([alpha], enrolments, history)
        result = plan(state, now, until=now + timedelta(days=400))
        assert {s.contact for s in result.due} == {f"p{n}@example.com" for n in range(5)}
        assert [(p.sequence, "late@example.com" in p.message) for p in result.problems] == [
            ("alpha", True)
        ]

    def test_a_projection_running_off_the_calendar_is_reported(self) -> None:
        """Planning up to the end of year 9999 reports the sequences whose times run out.

        What is due now is still planned: only the projection beyond it is lost.
        """
        now = datetime(9999, 12, 10, 10, tzinfo=UTC)
        alpha = sequence("alpha", [("hello", "0d"), ("again", "30d")], window="always")
        beta = sequence("beta", [("hello", "0d"), ("again", "1d")], window="always")
        enrolments = [enrol(ADA, "alpha", now), enrol(BOB, "beta", now)]
        state = make_state([alpha, beta], enrolments)
        result = plan(state, now, until=datetime.max.replace(tzinfo=UTC))
        assert {(s.contact, s.ref) for s in result.due} == {
            (ADA, "alpha/hello"),
            (BOB, "beta/hello"),
        }
        assert [p.sequence for p in result.problems] == ["alpha", "beta"]
        assert all("leave the calendar" in p.message for p in result.problems)
