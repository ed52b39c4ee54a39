"""One contact's turns: the next message of a sequence, and the pace gate between them.

:func:`toma.core.planner.plan` finds each enrolment's next message (a
:class:`_Candidate`); :func:`_plan_contact` gives one contact's ready messages
their turns in order of (ready, sequence name, step), each at ``max(ready,
now, pace gate)`` and at the next opening of the sequence's window, and with a
horizon, goes on as if each went (:func:`_following`). See the planner's
theory of operation.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from toma.config import Pace, Window
from toma.core.contacts import Contact
from toma.core.offsets import RAREST
from toma.core.outbox import repeat_step, sequence_key
from toma.core.plans import PlannedSend
from toma.core.sequences import Sequence, SequenceProblem
from toma.core.windows import Zones
from toma.timeutil import Duration

# Wall-clock arithmetic differs from UTC arithmetic by the change of UTC offset
# in between (an hour for DST; a day for a zone that jumped the date line). The
# planner allows the rarest; a store's index asks the tz database (core.offsets).
_OFFSET_SLACK = RAREST
_SHORTEST_MONTH = timedelta(days=28)
# What calendar arithmetic raises when a moment leaves the years 1 to 9999.
_CALENDAR_ERRORS = (ArithmeticError, ValueError)


@dataclass(frozen=True, slots=True)
class _Track:
    """A sequence as the planner uses it: steps by id, lower bounds of their delays."""

    sequence: Sequence
    window: Window
    position: dict[str, int]
    floors: tuple[timedelta, ...]  # no due time is earlier than anchor + floor
    repeat_floor: timedelta


def _floor(duration: Duration, slack: timedelta = _OFFSET_SLACK) -> timedelta:
    """No wall-clock ``duration`` after a moment is sooner in UTC, for offsets that rise by at
    most ``slack`` meanwhile."""
    return duration.months * _SHORTEST_MONTH + timedelta(seconds=duration.seconds) - slack


def _track(sequence: Sequence, window: Window) -> _Track:
    return _Track(
        sequence=sequence,
        window=window,
        position={step.id: index for index, step in enumerate(sequence.steps)},
        floors=tuple(_floor(step.after) for step in sequence.steps),
        repeat_floor=_floor(sequence.repeat.every) if sequence.repeat else timedelta(0),
    )


@dataclass(slots=True)
class _Candidate:
    """The next message of one enrolment (mutable: internal to one plan call)."""

    track: _Track
    step: str
    template: str
    due_at: datetime
    ready: datetime
    after_index: int  # position of this step; len(steps) for a repeat
    repeats: int  # repeats recorded (or planned) before this one
    projected: bool  # depends on a send this plan only foresees


def _next_step(
    track: _Track, index: int, repeats: int
) -> tuple[str, Duration, str, timedelta, int] | None:
    """(step, after, template, floor, repeats) of the message after position ``index - 1``."""
    steps = track.sequence.steps
    if index < len(steps):
        step = steps[index]
        return step.id, step.after, step.template, track.floors[index], repeats
    repeat = track.sequence.repeat
    if repeat is None:
        return None
    return repeat_step(repeats + 1), repeat.every, repeat.template, track.repeat_floor, repeats


def _wall_after(duration: Duration, moment: datetime, tz: ZoneInfo) -> datetime:
    return duration.after(moment.astimezone(tz)).astimezone(UTC)


def _broken(
    broken: dict[str, SequenceProblem],
    sequence: Sequence,
    exc: Exception,
    contact: str | None = None,
) -> None:
    """Note that ``sequence`` (for ``contact``, if given) could not be planned: the first cause."""
    if sequence.name in broken:
        return
    who = f" for {contact}" if contact else ""
    broken[sequence.name] = SequenceProblem(
        f"sequence {sequence.name!r} cannot be planned{who}: its times leave the calendar "
        f"({type(exc).__name__}: {exc}); check its durations",
        file=sequence.file,
        sequence=sequence.name,
    )


def _plan_contact(
    contact: Contact,
    candidates: list[_Candidate],
    last_message: datetime | None,
    hold: datetime | None,
    pace: Pace,
    zones: Zones,
    now: datetime,
    horizon: datetime,
    due: list[PlannedSend],
    later: list[PlannedSend],
    skipped: list[PlannedSend],
    broken: dict[str, SequenceProblem],
) -> None:
    """Give one contact's ready messages their turns, in order, under the pace gate.

    A message whose times leave the calendar is dropped (and its sequence noted
    in ``broken``); the contact's other messages keep their turns.
    """
    zone_name, tz = zones.of(contact.timezone)
    try:
        gate = _wall_after(pace.min_gap, last_message, tz) if last_message is not None else None
    except _CALENDAR_ERRORS as exc:
        for candidate in candidates:
            _broken(broken, candidate.track.sequence, exc, contact.email)
        return
    heap = [
        (c.ready, c.track.sequence.name, c.step, counter, c) for counter, c in enumerate(candidates)
    ]
    heapq.heapify(heap)
    counter = len(heap)
    while heap:
        ready, name, step, _, candidate = heapq.heappop(heap)
        try:
            turn = max(ready, now) if gate is None else max(ready, now, gate)
            if turn > horizon:
                break  # everything left is ready later still
            track = candidate.track
            send_at = zones.calendar(track.window, zone_name, tz).next_opening(turn)
            send = PlannedSend(
                key=sequence_key(contact.email, name, step),
                contact=contact.email,
                kind="sequence",
                sequence=name,
                step=step,
                template=candidate.template,
                due_at=candidate.due_at,
                send_at=send_at,
                late_by=send_at - ready,
                timezone=zone_name,
            )
            if send_at > pace.max_late.after(ready):
                if not candidate.projected and turn <= now:
                    skipped.append(send)
                # The enrolment goes on from the skip; no pace slot was used.
                went = turn
            else:
                if send_at > horizon:
                    break  # its slot is beyond the horizon, so is every later turn
                # The gate first: a send is only planned with the gate it sets.
                gate_after = _wall_after(pace.min_gap, send_at, tz)
                (due if send_at <= now else later).append(send)
                gate, went = gate_after, send_at
            following = _following(candidate, hold, went, tz)
            if following is not None and following.ready <= horizon:
                heapq.heappush(
                    heap,
                    (following.ready, name, following.step, counter, following),
                )
                counter += 1
        except _CALENDAR_ERRORS as exc:
            _broken(broken, candidate.track.sequence, exc, contact.email)


def _following(
    candidate: _Candidate, hold: datetime | None, went: datetime, tz: ZoneInfo
) -> _Candidate | None:
    """The message after ``candidate`` in the projection, had it gone at ``went``."""
    track = candidate.track
    index = candidate.after_index + 1
    repeats = candidate.repeats
    if candidate.after_index >= len(track.sequence.steps):
        repeats += 1  # candidate was a repeat
        index = len(track.sequence.steps)
    following = _next_step(track, index, repeats)
    if following is None:
        return None
    step_id, after, template, _, repeats = following
    due_at = _wall_after(after, went, tz)
    ready = due_at if hold is None or hold <= due_at else hold
    return _Candidate(
        track=track,
        step=step_id,
        template=template,
        due_at=due_at,
        ready=ready,
        after_index=index,
        repeats=repeats,
        projected=True,
    )
