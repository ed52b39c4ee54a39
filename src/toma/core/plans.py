"""What the planner reads (:class:`PlanState`) and what it decides (:class:`Plan`).

Plain frozen values; :mod:`toma.core.planner` is the function between them.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence as SequenceOf
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Literal
from zoneinfo import ZoneInfo

from toma.config import DEFAULT_WINDOW, Pace, Window
from toma.core.contacts import Contact
from toma.core.enrolments import Enrolment
from toma.core.outbox import MessageState, OutboxRecord, new_record
from toma.core.sequences import Sequence, SequenceProblem

DEFAULT_WINDOWS: Mapping[str, Window] = MappingProxyType({"default": DEFAULT_WINDOW})
_PLANNED = MessageState.PLANNED


@dataclass(frozen=True, slots=True)
class PlanState:
    """Everything the planner reads. Moments are aware datetimes (UTC is fastest)."""

    contacts: Mapping[str, Contact]
    enrolments: SequenceOf[Enrolment]
    history: Mapping[str, OutboxRecord]
    sequences: Mapping[str, Sequence]
    held: frozenset[str] = frozenset()  # sequences whose file is broken: nothing is sent
    windows: Mapping[str, Window] = field(default_factory=lambda: DEFAULT_WINDOWS)
    pace: Pace = field(default_factory=Pace)
    default_tz: str = "UTC"  # the owner's zone, for contacts without one
    contact_hold_until: Mapping[str, datetime] = field(default_factory=lambda: MappingProxyType({}))
    # When the owner last wrote to a contact by hand (toma.inbox.handwritten): the
    # repeat cadence and the pace count from it as from a message toma sent.
    last_contacted: Mapping[str, datetime] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class PlannedSend:
    """One message the planner means to send (or to record as skipped)."""

    key: str
    contact: str
    kind: Literal["sequence"]
    sequence: str
    step: str  # a step id or "repeat-N"
    template: str
    due_at: datetime  # when the step became due
    send_at: datetime  # when it goes: in the window, after the pace gap (UTC)
    late_by: timedelta  # send_at - ready (see the module docstring)
    timezone: str = "UTC"  # the zone the window was read in: the contact's

    @property
    def ref(self) -> str:
        return f"{self.sequence}/{self.step}"

    def local_send_at(self) -> datetime:
        """``send_at`` in the contact's zone (what ``toma plan`` shows)."""
        return self.send_at.astimezone(ZoneInfo(self.timezone))

    def to_record(
        self, *, at: datetime, state: MessageState = _PLANNED, detail: str | None = None
    ) -> OutboxRecord:
        """A first outbox record for this send (``sending``, or ``skipped`` with a reason).

        A retry already has a record: advance that one instead.
        """
        return new_record(
            key=self.key,
            contact=self.contact,
            kind=self.kind,
            ref=self.ref,
            template=self.template,
            due_at=self.due_at,
            at=at,
            sequence=self.sequence,
            step=self.step,
            state=state,
            detail=detail or "",
        )


@dataclass(frozen=True, slots=True)
class Plan:
    """What :func:`plan` decided at ``now``; each tuple is ordered by (send_at, contact, ref)."""

    now: datetime
    until: datetime
    due: tuple[PlannedSend, ...] = ()  # send_at <= now: send in this tick
    later: tuple[PlannedSend, ...] = ()  # now < send_at <= until: the projection
    skipped: tuple[PlannedSend, ...] = ()  # too late: record as skipped, never send
    # Sequences (or some of their enrolments) left out because their arithmetic failed.
    problems: tuple[SequenceProblem, ...] = ()

    @property
    def sends(self) -> tuple[PlannedSend, ...]:
        """``due`` then ``later``: everything that will go by ``until``."""
        return self.due + self.later
