"""The outbox: one record per message toma means to send, and what became of it.

Theory of operation
-------------------

Every message has a *key* that names what it is, not when it went: a step of a
sequence for a contact (:func:`sequence_key`), the n-th repeat
(:func:`repeat_key`), an invoice reminder stage, a newsletter issue. The key is
what makes sending at most once: once a record for a key has left ``planned``
(:func:`ever_attempted`), that key is never planned again — not after a crash,
a restart, a re-import or an edit of the sequence file.

A record moves through the states below, and only along the arrows
(:data:`TRANSITIONS`; :func:`advance` refuses anything else)::

    from      to         when
    planned   sending    about to be handed to the transport
    planned   skipped    too late to be worth sending
    planned   failed     retries given up
    planned   planned    a retry rescheduled
    sending   sent       the server took it
    sending   planned    a temporary failure, with next_attempt_at; or a crash
                         before the hand-over (recover_after_crash)
    sending   failed     a 5xx answer: this message will not go
    sending   skipped    the last check before the hand-over: the contact left
    sending   unknown    a crash after the hand-over (recover_after_crash)
    unknown   sent       the owner's verdict: it went
    unknown   failed     the owner's verdict: it did not (it is still never resent)
    unknown   planned    the owner checked and released it (:func:`release`)
    sent, failed, skipped are final.

- ``planned`` with ``next_attempt_at`` is a temporary failure waiting for its
  retry; the planner plans it again at that moment (within the window).
- ``sending`` is written *before* the message is handed to the transport, so a
  crash in between leaves ``sending`` behind. Its ``handover`` says how far it
  got: ``pending`` while the transport has not yet begun to hand the body
  over (SMTP: before DATA; Maildir: before the link into ``new/``), ``handed``
  once it may have (written durably just before). :func:`recover_after_crash`
  plans a ``pending`` one again (nothing can have reached the server) and turns
  a ``handed`` one, or one from a version that did not track the hand-over
  (``handover`` empty), into ``unknown``: whether the server took it cannot be
  known, and sending it again could send it twice. ``toma status`` shows them,
  and :func:`release` lets the owner send one again once they have checked.
- ``skipped`` is a step the planner judged too late to be worth sending.

Records are frozen; every change returns a new one with ``updated_at`` set.
All moments are aware UTC datetimes; documents carry ISO 8601 strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Protocol

from toma.core._frozen import maker
from toma.errors import TomaError
from toma.timeutil import stored_moment

# A notice is toma's own short message: a reply reported to the owner, an
# unsubscribe confirmed.
MessageKind = Literal["sequence", "invoice", "newsletter", "notice"]
KINDS: frozenset[str] = frozenset({"sequence", "invoice", "newsletter", "notice"})


class MessageState(StrEnum):
    PLANNED = "planned"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"


_P, _SG, _ST, _F, _U, _SK = (
    MessageState.PLANNED,
    MessageState.SENDING,
    MessageState.SENT,
    MessageState.FAILED,
    MessageState.UNKNOWN,
    MessageState.SKIPPED,
)

TRANSITIONS: Mapping[MessageState, frozenset[MessageState]] = {
    # A retry may be rescheduled (planned -> planned) before it is tried again.
    _P: frozenset({_SG, _SK, _F, _P}),
    # planned again: a temporary failure with a next_attempt_at.
    _SG: frozenset({_ST, _F, _U, _P, _SK}),
    # Only the owner can say what became of an interrupted send; never "sending"
    # directly: a release plans it again (see release()).
    _U: frozenset({_ST, _F, _P}),
    _ST: frozenset(),
    _F: frozenset(),
    _SK: frozenset(),
}

_STATES: Mapping[str, MessageState] = {state.value: state for state in MessageState}

ATTEMPTED: frozenset[MessageState] = frozenset({_SG, _ST, _F, _U, _SK})
# Messages that (may) have reached the person, so they count against the pace gap.
# The planner tests these by identity, in this order (see toma.core.planner).
PACED_STATES: tuple[MessageState, MessageState, MessageState] = (_SG, _ST, _U)
PACED: frozenset[MessageState] = frozenset(PACED_STATES)

# How far a ``sending`` message got (see the module docstring).
HANDOVER_PENDING = "pending"
HANDED = "handed"

REPEAT_PREFIX = "repeat-"
_REPEAT = re.compile(r"^repeat-(\d+)\Z")


def ever_attempted(state: MessageState) -> bool:
    """True once a key has left ``planned``: such a key is never planned again."""
    return state in ATTEMPTED


def counts_for_pace(state: MessageState) -> bool:
    """True for messages that went, or may have gone: sent, sending, unknown."""
    return state in PACED


def sequence_key(contact: str, sequence: str, step_id: str) -> str:
    """The key of step ``step_id`` of ``sequence`` for ``contact``: stable across edits."""
    return f"sequence/{sequence}/{step_id}/{contact}"


def repeat_step(n: int) -> str:
    """The step name of the ``n``-th repeat: ``repeat-3``."""
    return f"{REPEAT_PREFIX}{n}"


def repeat_number(step: str | None) -> int | None:
    """``3`` for ``"repeat-3"``; ``None`` for a step id."""
    if step is None or not step.startswith(REPEAT_PREFIX):
        return None
    found = _REPEAT.match(step)
    return int(found.group(1)) if found else None


def repeat_key(contact: str, sequence: str, n: int) -> str:
    """The key of the ``n``-th repeat message (1-based) of ``sequence`` for ``contact``."""
    return sequence_key(contact, sequence, repeat_step(n))


class IllegalTransition(TomaError):
    """A record was asked to move along an arrow that does not exist (sent -> sending)."""


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    key: str
    contact: str
    kind: MessageKind
    ref: str  # "new-acquaintance/nice-to-meet", "INV-7/+7d", "newsletters/2026-03.md"
    sequence: str | None
    step: str | None
    template: str
    state: MessageState
    due_at: datetime
    attempts: int = 0
    next_attempt_at: datetime | None = None
    sent_at: datetime | None = None
    message_id: str | None = None
    code: int | None = None
    detail: str = ""
    updated_at: datetime | None = None
    subject: str = ""  # as sent: what `toma log` shows
    handover: str = ""  # while sending: "pending" or "handed" (see the module docstring)
    released_at: datetime | None = None  # the owner released it from unknown (release())
    released_by: str = ""

    def __post_init__(self) -> None:
        # The planner tells states apart by identity; a plain "sent" string must
        # not slip through as "not attempted" and be sent again.
        if type(self.state) is not MessageState:
            object.__setattr__(self, "state", MessageState(self.state))

    @property
    def is_retry(self) -> bool:
        """A temporary failure waiting for ``next_attempt_at``."""
        return self.state is MessageState.PLANNED and self.next_attempt_at is not None

    @property
    def settled_at(self) -> datetime:
        """When this message went (or was given up on): what the next step counts from."""
        return self.sent_at or self.updated_at or self.due_at

    def to_doc(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "contact": self.contact,
            "kind": self.kind,
            "ref": self.ref,
            "sequence": self.sequence,
            "step": self.step,
            "template": self.template,
            "state": self.state.value,
            "due_at": _iso(self.due_at),
            "attempts": self.attempts,
            "next_attempt_at": _iso(self.next_attempt_at),
            "sent_at": _iso(self.sent_at),
            "message_id": self.message_id,
            "code": self.code,
            "detail": self.detail,
            "updated_at": _iso(self.updated_at),
            "subject": self.subject,
            "handover": self.handover,
            "released_at": _iso(self.released_at),
            "released_by": self.released_by,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> OutboxRecord:
        # The planner decodes every record of the outbox: this is kept lean.
        get = doc.get
        kind = get("kind", "sequence")
        if kind not in KINDS:
            raise TomaError(f"outbox record {get('key')!r}: unknown kind {kind!r}")
        value = doc["state"]
        state = _STATES.get(value) if type(value) is str else None
        if state is None:
            try:
                state = MessageState(value)
            except ValueError:
                raise TomaError(f"outbox record {get('key')!r}: unknown state {value!r}") from None
        due_at = stored_moment(doc["due_at"])
        assert due_at is not None  # noqa: S101 - a required field
        code = get("code")
        return _make_record(
            key=doc["key"],
            contact=doc["contact"],
            kind=kind,
            ref=get("ref", ""),
            sequence=get("sequence"),
            step=get("step"),
            template=get("template", ""),
            state=state,
            due_at=due_at,
            attempts=int(get("attempts", 0)),
            next_attempt_at=stored_moment(get("next_attempt_at")),
            sent_at=stored_moment(get("sent_at")),
            message_id=get("message_id"),
            code=int(code) if code is not None else None,
            detail=get("detail", ""),
            updated_at=stored_moment(get("updated_at")),
            subject=get("subject", ""),
            handover=get("handover", ""),
            released_at=stored_moment(get("released_at")),
            released_by=get("released_by", ""),
        )


# The values are checked above, state included: __post_init__ has nothing to add.
_make_record = maker(OutboxRecord)


def new_record(
    *,
    key: str,
    contact: str,
    kind: MessageKind,
    ref: str,
    template: str,
    due_at: datetime,
    at: datetime,
    sequence: str | None = None,
    step: str | None = None,
    state: MessageState = MessageState.PLANNED,
    detail: str = "",
) -> OutboxRecord:
    """A first record for ``key``: planned, or directly ``sending`` / ``skipped``.

    Starting in ``sending`` counts the attempt, as :func:`advance` would.
    """
    if state not in (_P, _SG, _SK):
        raise IllegalTransition(f"a new record cannot start as {state.value}")
    return OutboxRecord(
        key=key,
        contact=contact,
        kind=kind,
        ref=ref,
        sequence=sequence,
        step=step,
        template=template,
        state=state,
        due_at=due_at.astimezone(UTC),
        attempts=1 if state is _SG else 0,
        detail=detail,
        updated_at=at.astimezone(UTC),
    )


def check_transition(old: MessageState, new: MessageState) -> None:
    """Raise :class:`IllegalTransition` unless ``old -> new`` is in :data:`TRANSITIONS`."""
    if new not in TRANSITIONS[old]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[old])) or "nothing (final)"
        raise IllegalTransition(
            f"a {old.value} message cannot become {new.value} (from {old.value}: {allowed})"
        )


def advance(
    record: OutboxRecord,
    to: MessageState,
    *,
    at: datetime,
    sent_at: datetime | None = None,
    message_id: str | None = None,
    code: int | None = None,
    detail: str | None = None,
    next_attempt_at: datetime | None = None,
) -> OutboxRecord:
    """``record`` moved to state ``to`` at ``at``; illegal moves raise :class:`IllegalTransition`.

    - to ``sending``: counts an attempt, clears ``next_attempt_at``;
    - to ``sent``: ``sent_at`` (default ``at``), ``message_id``;
    - to ``planned`` (a temporary failure): ``next_attempt_at`` is required;
    - to ``failed`` / ``unknown`` / ``skipped``: ``code`` and ``detail`` say why.
    """
    check_transition(record.state, to)
    moment = at.astimezone(UTC)
    # The hand-over is tracked by the sender, anew for each attempt.
    changes: dict[str, Any] = {"state": to, "updated_at": moment, "handover": ""}
    if code is not None:
        changes["code"] = code
    if detail is not None:
        changes["detail"] = detail
    if to is _SG:
        changes["attempts"] = record.attempts + 1
        changes["next_attempt_at"] = None
    elif to is _ST:
        changes["sent_at"] = (sent_at or moment).astimezone(UTC)
        changes["next_attempt_at"] = None
        if message_id is not None:
            changes["message_id"] = message_id
    elif to is _P:
        if next_attempt_at is None:
            raise IllegalTransition("a message planned again needs next_attempt_at")
        changes["next_attempt_at"] = next_attempt_at.astimezone(UTC)
    else:
        changes["next_attempt_at"] = None
        if to is _U and detail is None:
            changes["detail"] = "interrupted while sending: it may or may not have gone"
    return replace(record, **changes)


def recover_after_crash(
    records: Iterable[OutboxRecord], *, at: datetime | None = None
) -> list[OutboxRecord]:
    """``records`` after a crash: every ``sending`` one planned again or ``unknown``.

    A message the transport had not begun to hand over (``handover`` pending)
    cannot have reached the server: it is planned again, for ``at`` (the next
    tick sends it). Any other ``sending`` one may have: ``unknown``, never
    resent on its own. Other records are returned as they are (the same
    objects, so ``new is not old`` finds what to write back). ``at`` is the
    moment of recovery; without it ``updated_at`` is used.
    """
    recovered: list[OutboxRecord] = []
    for record in records:
        if record.state is _SG:
            moment = at or record.updated_at or record.due_at
            if record.handover == HANDOVER_PENDING:
                recovered.append(
                    advance(
                        record,
                        _P,
                        at=moment,
                        next_attempt_at=moment,
                        detail="interrupted before it was handed to the server: sent again",
                    )
                )
            else:
                recovered.append(advance(record, _U, at=moment))
        else:
            recovered.append(record)
    return recovered


def release(record: OutboxRecord, *, at: datetime, by: str) -> OutboxRecord:
    """An ``unknown`` record planned again: the owner checked that it did not go.

    The next tick sends it (it waits for ``at``, as a retry would). Who
    released it and when stay in the record.
    """
    if record.state is not _U:
        raise IllegalTransition(
            f"only an unknown message can be released; {record.key} is {record.state.value}"
        )
    released = advance(
        record, _P, at=at, next_attempt_at=at, detail=f"released by {by}: sent again"
    )
    return replace(released, released_at=at.astimezone(UTC), released_by=by)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


class Recordable(Protocol):
    """A planned message that can make its first outbox record (a send, a reminder)."""

    def to_record(
        self, *, at: datetime, state: MessageState, detail: str | None
    ) -> OutboxRecord: ...


def carry_on(
    old: OutboxRecord | None,
    planned: Recordable,
    to: MessageState,
    *,
    at: datetime,
    detail: str | None = None,
) -> OutboxRecord:
    """The record of ``planned`` moved to ``to``: the stored one advanced, or its first.

    A retry (or a skip of a message tried before) already has a record, which
    keeps its attempts and history; a message never tried gets a new one.
    """
    if old is not None:
        return advance(old, to, at=at, detail=detail)
    return planned.to_record(at=at, state=to, detail=detail)


# --------------------------------------------------------------------------- retries

# A temporary failure is tried again after FIRST_RETRY, then after twice as long
# each time, at most LONGEST_RETRY apart, until [smtp] retry_for has passed.
FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(minutes=30)


def retry_delay(attempts: int) -> timedelta:
    """The wait before attempt ``attempts + 1``: doubling from a minute, at most half an hour."""
    doubled: timedelta = FIRST_RETRY * 2 ** max(0, attempts - 1)
    return min(LONGEST_RETRY, doubled)


def retried_for(attempts: int) -> timedelta:
    """How long retrying has taken after ``attempts`` failed attempts (by the schedule above)."""
    return sum((retry_delay(n) for n in range(1, attempts + 1)), timedelta())
