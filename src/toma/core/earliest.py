"""How soon an enrolment's next step can be due, from where it stands: what a store indexes.

Theory of operation
-------------------
The planner (:mod:`toma.core.planner`) finds an enrolment's next step from its
whole history and drops it early when ``anchor + floor`` is past the horizon:
``anchor`` is when the enrolment's latest attempted message went (else when
the contact was enrolled), ``floor`` a lower bound of the next step's delay
(:func:`toma.core.turns._floor`, which allows for months and clock changes).
Here the clock changes allowed for are those the tz database holds around the
horizon (:mod:`toma.core.offsets`: an hour or two in most years), not the
rarest of all: each hour of slack is an hour's worth of contacts read ahead of
their time at every tick.

A store with many contacts can keep, per enrolment, just the facts this test
needs: ``since`` (that anchor), ``anchor_step`` (the step of its latest
attempted message that is not a repeat; ``""`` when there is none) and the
earliest retry a temporary failure waits for. :func:`earliest` turns the
sequence files into the delay to ask for each ``anchor_step``: an enrolment can
have something ready by ``horizon`` only if ``since + delay <= horizon`` or its
retry is due. The contacts that pass are then planned in full by the very same
planner; the others are left out unread.

Why this is never later than the planner: the step the planner sends next is
the first step after the *furthest* step (in file order) ever attempted, and
the furthest is at or after ``anchor_step`` (a repeat only ever follows the
last step, so a keep-in-touch enrolment that repeats stands at its last step
and waits the repeat's delay). So the next step is one of the steps after
``anchor_step``, or the repeat: the smallest of their floors is a lower bound
of its delay. Waiting the planner adds (a pause, a hold, the pace,
a window, mail written by hand) only ever makes it later. When the last step
was the latest attempted and there is no repeat, nothing follows: the
enrolment is finished and never asked for. A step the file no longer has
bounds with the smallest floor of all (:attr:`Earliest.otherwise`).

**The pace.** A contact's every turn is at or after the pace gate, ``[pace]
min_gap`` after their latest message that counts for it
(:func:`toma.core.turns._plan_contact`), so nothing can go to them by
``horizon`` while ``paced + gap > horizon``, where ``gap`` is the gap's floor
(:attr:`Earliest.gap`). Without this, a contact who was just sent one step
while steps of their other sequences are due is read and planned again at
every tick until the gate opens: days of ticks. The store knows only the
moments of sequence messages that pace; the planner's latest message is at or
after the latest of those (newsletters, invoice reminders and mail written by
hand count too), so this leaves out nobody the planner would plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from toma.config import Pace, Window
from toma.core.offsets import largest_rise
from toma.core.sequences import Sequence
from toma.core.turns import _CALENDAR_ERRORS, _floor
from toma.timeutil import Duration

_MONTH_AT_MOST = timedelta(days=31)
_ZERO = timedelta(0)
_AROUND = timedelta(days=2)  # the span reckoned reaches this far past the delays

NOT_YET = ""  # anchor_step of an enrolment with no attempted step (repeats aside)


@dataclass(frozen=True, slots=True)
class Earliest:
    """Per planned sequence, the least delay after ``since`` by ``anchor_step``.

    A sequence missing here is not planned (held, broken, no window): its
    enrolments are never asked for. An ``anchor_step`` missing from its
    sequence's ``delays`` and not in ``finished`` waits ``otherwise``.
    """

    delays: Mapping[str, Mapping[str, timedelta]]
    finished: Mapping[str, frozenset[str]]
    otherwise: Mapping[str, timedelta]
    # The least wait after a contact's latest paced sequence message before anything
    # else can go to them (the pace gate); None: the pace was not given.
    gap: timedelta | None = None

    def delay(self, sequence: str, anchor_step: str) -> timedelta | None:
        """The least delay for this (sequence, anchor_step); None: nothing can follow."""
        if sequence not in self.otherwise or anchor_step in self.finished[sequence]:
            return None
        return self.delays[sequence].get(anchor_step, self.otherwise[sequence])


def earliest(
    sequences: Mapping[str, Sequence],
    windows: Mapping[str, Window],
    held: frozenset[str] = frozenset(),
    *,
    horizon: datetime,
    pace: Pace | None = None,
) -> Earliest:
    """The delays to ask the store for, from the sequences the planner would plan, for
    the question "what can be due by ``horizon``"; with ``pace``, the gap too."""
    slack = _slack(sequences, horizon, (pace.min_gap,) if pace else ())
    gap = None
    if pace is not None:
        try:
            gap = _floor(pace.min_gap, slack)
        except _CALENDAR_ERRORS:
            gap = None  # the planner reports it; the store leaves nobody out for it
    delays: dict[str, Mapping[str, timedelta]] = {}
    finished: dict[str, frozenset[str]] = {}
    otherwise: dict[str, timedelta] = {}
    for name, sequence in sequences.items():
        window = windows.get(sequence.window)
        if name in held or window is None or not window.days:
            continue  # the planner leaves these out too
        try:
            repeat = (_floor(sequence.repeat.every, slack),) if sequence.repeat else ()
            floors = tuple(_floor(step.after, slack) for step in sequence.steps)
        except _CALENDAR_ERRORS:
            continue  # broken: the planner reports it and plans none of it
        by_step: dict[str, timedelta] = {}
        done: set[str] = set()
        first = floors[:1] or repeat
        if first:
            by_step[NOT_YET] = first[0]
        for position, step in enumerate(sequence.steps):
            rest = floors[position + 1 :] + repeat
            if rest:
                by_step[step.id] = min(rest)
            else:
                done.add(step.id)
        delays[name] = MappingProxyType(by_step)
        finished[name] = frozenset(done)
        otherwise[name] = min(floors + repeat)
    return Earliest(
        delays=MappingProxyType(delays),
        finished=MappingProxyType(finished),
        otherwise=MappingProxyType(otherwise),
        gap=gap,
    )


def _slack(
    sequences: Mapping[str, Sequence], horizon: datetime, also: tuple[Duration, ...] = ()
) -> timedelta:
    """The largest rise of a UTC offset that can lie between an anchor and a due time
    that matter: an anchor older than the longest delay (or ``also``) before ``horizon``
    passes the question whatever the slack."""
    durations = [
        duration
        for sequence in sequences.values()
        for duration in [step.after for step in sequence.steps]
        + ([sequence.repeat.every] if sequence.repeat else [])
    ]
    longest = max((_longest(duration) for duration in durations + list(also)), default=_ZERO)
    return largest_rise(horizon - longest - _AROUND, horizon + _AROUND)


def _longest(duration: Duration) -> timedelta:
    return abs(duration.months) * _MONTH_AT_MOST + abs(timedelta(seconds=duration.seconds))
