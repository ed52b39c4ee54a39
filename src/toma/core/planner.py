"""The planner: given everything toma knows and the moment, what goes to whom, and when.

Theory of operation
-------------------

:func:`plan` is a pure function of a :class:`PlanState` (contacts, enrolments,
the outbox history, sequences, windows, pace) and ``now``. It reads no clock,
no disk, no network; the daemon writes down what it decides and sends, and
calls it again next tick. Nothing is remembered between calls, so a crash, a
restart or an edited sequence file can only ever change what is *still* to
come — never repeat what the history says was attempted.

**Which step is next.** Steps are known by id, never by position. For one
enrolment the next step is the first step, in file order, *after* the last
step that has an attempted record (see :func:`toma.core.outbox.ever_attempted`). A
step inserted before it, a reordering or a removal therefore never sends
anything again; steps inserted before the last attempted one are simply never
sent to that contact. After the last step comes the repeat cadence, if any:
``repeat-1``, ``repeat-2``, … numbered on from the highest repeat recorded.

**When it is due.** The first step is due ``after`` from the enrolment; every
later step (and every repeat) ``after`` from when the enrolment's latest
message actually went (``sent_at``; for a skipped or failed one, when that was
decided). Durations are counted on the contact's wall clock, as a person
counts days: a weekly step sent at 09:01 is due at 09:01 a week later even when
the clocks changed in between. A temporary failure (a ``planned`` record with
``next_attempt_at``) keeps its ``due_at`` and is ready again at
``next_attempt_at``.

**Mail the owner wrote by hand** (``last_contacted``, from their Sent folder)
counts as contact: the repeat cadence counts from it when it is later than the
enrolment's latest message, and it takes its place in the pace.

**When it can go.** A step is *ready* at the latest of its due time, the end of
its enrolment's pause, the contact's hold (an out-of-office return date) and,
for a retry, the retry time. Per contact, the ready steps of all its sequences
are taken in order of (ready, sequence name, step) and each is given a turn at
``max(ready, now, pace gate)``: the pace gate is ``pace.min_gap`` after the
contact's latest message (history records sent, sending or unknown: sequence
steps, invoice reminders, newsletters — not notices, which go to the owner — and
the sends planned before it in this very plan). An invoice reminder holds
keep-in-touch mail back by ``INVOICE_GAP`` (a day) only: not on the reminder's
day, yet a client with an open invoice still hears from you. ``send_at`` is the
first opening of the sequence's window, in the contact's zone, at or after the
turn.

**Too late.** ``late_by`` is ``send_at - ready``: waiting that was asked for (a
pause, a hold) is not lateness; an outage, a closed window and the pace are.
A step more than ``pace.max_late`` late is *skipped*: recorded as such, never
sent, and the enrolment goes on from the moment of the skip. A skipped step
does not take a pace slot. ``Plan.skipped`` lists only skips decided *now*
(their turn has come); a skip foreseen further ahead is decided when its turn
comes, so that, say, a failed send before it can still give it the slot.

**The projection.** With ``until``, the planner goes on as if every planned send
went at its ``send_at``: the next step is due ``after`` from there, repeats
follow, and everything with ``send_at`` in ``(now, until]`` is ``Plan.later``.
``Plan.due`` and ``Plan.skipped`` never depend on ``until``.

**One sequence cannot stop the others.** Durations are checked when files are
read, but the planner does not rely on it: arithmetic that fails for one
sequence (a duration no calendar can hold) or one enrolment (a moment at the
end of the calendar) drops only that sequence or that enrolment from the
plan, and ``Plan.problems`` names the sequence, as a broken file is named;
everyone else is planned as usual.

**Cost.** One pass over the history (grouping it by enrolment and finding each
contact's latest message), one pass over the enrolments, then work only for
the contacts that have something ready by the horizon. An enrolment whose next
step cannot be due by then is dropped on a cheap lower bound of its due time
(no zoneinfo). Window openings come from one :class:`~toma.core.windows.WindowCalendar`
per (window, zone), a bisection each. What is kept per enrolment meanwhile is a
few dict entries keyed by the contact strings the state already holds (see
``_Progress``): no object and no new string per enrolment.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from toma.core.lastcheck import RECEIVES
from toma.core.outbox import (
    ATTEMPTED,
    PACED_STATES,
    MessageState,
    OutboxRecord,
    repeat_number,
    sequence_key,
)
from toma.core.plans import DEFAULT_WINDOWS, Plan, PlannedSend, PlanState
from toma.core.sequences import SequenceProblem
from toma.core.turns import (
    _CALENDAR_ERRORS,
    _broken,
    _Candidate,
    _next_step,
    _plan_contact,
    _Track,
    _track,
    _wall_after,
)
from toma.core.windows import Zones

__all__ = ["DEFAULT_WINDOWS", "Plan", "PlanState", "PlannedSend", "plan"]

_PLANNED = MessageState.PLANNED
INVOICE_GAP = timedelta(days=1)  # keep-in-touch mail waits this long after a reminder
_SENDING = MessageState.SENDING
_SENT = MessageState.SENT
_UNKNOWN = MessageState.UNKNOWN
_FAILED = MessageState.FAILED
_SKIPPED = MessageState.SKIPPED
_RECEIVE = RECEIVES["sequence"]  # who may get a sequence's step (core/lastcheck)
_PACED_1, _PACED_2, _PACED_3 = PACED_STATES


# --------------------------------------------------------------------------- internals


_NO_STEP = -1
# In ``_Progress.last`` once the contact's enrolment has been planned: a second
# enrolment of the same contact in the same sequence is a duplicate.
_PLANNED_ONCE = -2


class _Progress:
    """How far the enrolments in one sequence got, from their history, by contact.

    ``last``: the highest file position of an attempted step (none: ``_NO_STEP``);
    ``repeats``: the highest repeat number attempted (none: 0); ``anchor``: when
    the latest attempted message went; ``retries``: the temporary failures
    waiting for a retry, by step.

    A dict per field, keyed by the contact strings the history already holds:
    no object per enrolment, which at 300k enrolments would cost tens of MB (and
    a key built per record, as much again).
    """

    __slots__ = ("anchor", "last", "repeats", "retries")

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.repeats: dict[str, int] = {}
        self.anchor: dict[str, datetime] = {}
        self.retries: dict[str, dict[str | None, OutboxRecord]] = {}


# --------------------------------------------------------------------------- plan


def plan(state: PlanState, now: datetime, *, until: datetime | None = None) -> Plan:
    """What to send at ``now`` (``due``), to skip (``skipped``), and up to ``until`` (``later``)."""
    if now.tzinfo is None or (until is not None and until.tzinfo is None):
        raise ValueError("plan() needs aware datetimes for now and until")
    now = now.astimezone(UTC)
    horizon = max(until.astimezone(UTC), now) if until is not None else now
    pace = state.pace
    gap = pace.min_gap.approx()
    invoice_shift = gap - INVOICE_GAP if gap > INVOICE_GAP else timedelta(0)
    zones = Zones(state.default_tz)
    broken: dict[str, SequenceProblem] = {}

    tracks: dict[str, _Track] = {}
    for name, sequence in state.sequences.items():
        window = state.windows.get(sequence.window)
        # A sequence whose window has gone from the config is held like a broken one.
        if name not in state.held and window is not None and window.days:
            try:
                tracks[name] = _track(sequence, window)
            except _CALENDAR_ERRORS as exc:
                _broken(broken, sequence, exc)

    # One pass over the history: per contact the latest message that counts for
    # the pace; per enrolment how far it got (see _Progress).
    latest: dict[str, datetime] = {}
    progress: dict[str, _Progress] = {name: _Progress() for name in tracks}
    repeat_numbers: dict[str, int] = {}
    for record in state.history.values():
        record_state = record.state
        # The pace's states (outbox.PACED), by identity: an enum's hash is a Python
        # call, too slow for this loop.
        if record_state is _PACED_1 or record_state is _PACED_2 or record_state is _PACED_3:
            moment = record.sent_at or record.updated_at or record.due_at
            # A notice about a contact goes to the owner (or confirms their leaving).
            if record.kind != "notice":
                contact_email = record.contact
                paced = moment
                if record.kind == "invoice":
                    # A reminder keeps keep-in-touch mail off its day, not for the
                    # whole gap: a client with an open invoice still hears a hello.
                    paced = moment - invoice_shift
                previous = latest.get(contact_email)
                if previous is None or paced > previous:
                    latest[contact_email] = paced
        elif record_state is _FAILED or record_state is _SKIPPED:
            moment = record.sent_at or record.updated_at or record.due_at
        elif record.next_attempt_at is None:
            continue  # planned, not yet tried: binds nothing
        else:
            moment = None  # a retry waiting
        record_sequence = record.sequence
        if record_sequence is None:
            continue
        track = tracks.get(record_sequence)
        if track is None:
            continue
        so_far = progress[record_sequence]
        contact_email = record.contact
        step = record.step
        if moment is None:
            retries = so_far.retries.get(contact_email)
            if retries is None:
                retries = so_far.retries[contact_email] = {}
            retries[step] = record
            continue
        anchors = so_far.anchor
        anchor = anchors.get(contact_email)
        if anchor is None or moment > anchor:
            anchors[contact_email] = moment
        position = track.position.get(step) if step is not None else None
        if position is not None:
            lasts = so_far.last
            if position > lasts.get(contact_email, _NO_STEP):
                lasts[contact_email] = position
        elif step is not None:
            number = repeat_numbers.get(step)
            if number is None:
                number = repeat_numbers[step] = repeat_number(step) or 0
            if number > so_far.repeats.get(contact_email, 0):
                so_far.repeats[contact_email] = number

    # One pass over the enrolments: the next message of each, if it can be
    # ready by the horizon.
    contacts = state.contacts
    holds = state.contact_hold_until
    contacted = state.last_contacted
    history = state.history
    waiting: dict[str, list[_Candidate]] = {}
    for enrolment in state.enrolments:
        track = tracks.get(enrolment.sequence)
        if track is None or enrolment.state == "stopped":
            continue
        pause: datetime | None = None
        if enrolment.state == "paused":
            if enrolment.paused_until is None:
                continue
            if enrolment.paused_until > now:
                pause = enrolment.paused_until
                if pause > horizon:
                    continue
        email = enrolment.contact
        contact = contacts.get(email)
        if contact is None or contact.status not in _RECEIVE:
            continue
        so_far = progress[enrolment.sequence]
        last = so_far.last.get(email, _NO_STEP)
        if last == _PLANNED_ONCE:
            continue  # a duplicate enrolment: plan it once
        so_far.last[email] = _PLANNED_ONCE

        try:
            repeats = so_far.repeats.get(email, 0)
            anchor = so_far.anchor.get(email)
            retries = so_far.retries.get(email)
            index = last + 1
            if index < len(track.floors):
                floor = track.floors[index]
            elif track.sequence.repeat is not None:
                floor = track.repeat_floor
            else:
                continue  # finished, no repeat
            anchor = anchor or enrolment.enrolled_at
            if index >= len(track.floors):
                # The repeat counts from the last contact, hand-written mail included.
                wrote = contacted.get(email)
                if wrote is not None and wrote > anchor:
                    anchor = wrote
            if retries is None and anchor + floor > horizon:
                # Cannot be due by the horizon: most enrolments leave here, before
                # any zone arithmetic (a retry, rare, keeps its own due time).
                continue

            following = _next_step(track, index, repeats)
            assert following is not None  # noqa: S101 - checked above
            step_id, after, template, _, repeats = following
            retry = retries.get(step_id) if retries is not None else None
            if retry is not None and retry.next_attempt_at is not None:
                due_at = retry.due_at
                ready = max(due_at, retry.next_attempt_at)
            else:
                if anchor + floor > horizon:
                    continue
                due_at = _wall_after(after, anchor, zones.of(contact.timezone)[1])
                ready = due_at
        except _CALENDAR_ERRORS as exc:  # a try costs nothing here until it catches
            _broken(broken, track.sequence, exc, email)
            continue
        if pause is not None and pause > ready:
            ready = pause
        hold = holds.get(email)
        if hold is not None and hold > ready:
            ready = hold
        if ready > horizon:
            continue
        recorded = history.get(sequence_key(email, enrolment.sequence, step_id))
        if recorded is not None and recorded.state in ATTEMPTED:
            continue  # at most once, whatever the records above say
        candidate = _Candidate(
            track=track,
            step=step_id,
            template=template,
            due_at=due_at,
            ready=ready,
            after_index=index,
            repeats=repeats,
            projected=False,
        )
        found = waiting.get(email)
        if found is None:
            waiting[email] = [candidate]
        else:
            found.append(candidate)

    due: list[PlannedSend] = []
    later: list[PlannedSend] = []
    skipped: list[PlannedSend] = []
    for email, candidates in waiting.items():
        latest_here = latest.get(email)
        wrote = contacted.get(email)
        if wrote is not None and (latest_here is None or wrote > latest_here):
            latest_here = wrote  # a hand-written message takes a pace slot too
        _plan_contact(
            contacts[email],
            candidates,
            latest_here,
            holds.get(email),
            pace,
            zones,
            now,
            horizon,
            due,
            later,
            skipped,
            broken,
        )

    def order(send: PlannedSend) -> tuple[datetime, str, str, str]:
        return (send.send_at, send.contact, send.sequence, send.step)

    return Plan(
        now=now,
        until=horizon,
        due=tuple(sorted(due, key=order)),
        later=tuple(sorted(later, key=order)),
        skipped=tuple(sorted(skipped, key=order)),
        problems=tuple(broken[name] for name in sorted(broken)),
    )
