"""``toma plan``: the coming sends as rows of a calendar, in both zones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from toma.config import Config
from toma.core.agenda import decide
from toma.core.enrolments import tag_enrolments
from toma.core.planner import PlannedSend, PlanState
from toma.core.reminders import PlannedReminder
from toma.daemon.cache import plan_state
from toma.project.sequences import Files, read_sequences
from toma.store import Reader
from toma.store.records import invoices as billing
from toma.timeutil import iso


@dataclass(frozen=True)
class Row:
    contact: str
    kind: str
    ref: str
    at: datetime  # in the contact's zone
    at_owner: datetime
    note: str = ""
    waits: str = ""  # why it goes then and not at once (the dashboard shows it)

    @property
    def at_theirs(self) -> str:
        return self.at.strftime("%a %Y-%m-%d %H:%M %Z")

    @property
    def at_yours(self) -> str:
        return self.at_owner.strftime("%a %Y-%m-%d %H:%M %Z")

    def to_json(self) -> dict[str, Any]:
        return {
            "contact": self.contact,
            "kind": self.kind,
            "ref": self.ref,
            "at": iso(self.at),
            "at_owner": iso(self.at_owner),
            "note": self.note,
        }


def upcoming(
    reader: Reader,
    config: Config,
    *,
    now: datetime,
    until: datetime,
    cached: Callable[[Files], PlanState] | None = None,
) -> list[Row]:
    """Every send from ``now`` to ``until``, as the daemon would make them.

    Contacts whose tag the next tick would enrol are counted as enrolled now.
    ``cached`` gives the planner's input kept decoded (a
    :class:`toma.daemon.cache.PlanCache`), where ``reader`` would be read afresh.
    """
    files = read_sequences(config)
    state = cached(files) if cached is not None else plan_state(reader, config, files)
    enrolled = {(e.contact, e.sequence) for e in state.enrolments}
    coming = tag_enrolments(state.contacts.values(), files.sequences, enrolled, now=now)
    if coming:
        state = replace(state, enrolments=[*state.enrolments, *coming])
    reminders = [
        r
        for r in billing.reminders(
            reader, config, contacts=state.contacts, history=state.history, now=now, until=until
        )
        if not r.skipped
    ]
    decided = decide(state, reminders, now, until=until)
    owner_zone = ZoneInfo(config.owner.timezone)
    sends: list[PlannedSend | PlannedReminder] = [*decided.sends, *reminders]
    rows = [_row(send, now, owner_zone) for send in sends]
    return sorted(rows, key=lambda row: (row.at_owner, row.contact, row.ref))


def _row(send: PlannedSend | PlannedReminder, now: datetime, owner_zone: ZoneInfo) -> Row:
    notes = []
    if send.send_at <= now:
        notes.append("due now")
    if send.late_by.total_seconds() >= 86400:
        notes.append(f"waited {send.late_by.days}d")
    return Row(
        contact=send.contact,
        kind=send.kind,
        ref=send.ref,
        at=send.local_send_at(),
        at_owner=send.send_at.astimezone(owner_zone),
        note=", ".join(notes),
        waits=_waits(send, now),
    )


def _waits(send: PlannedSend | PlannedReminder, now: datetime) -> str:
    """Why a send goes at its moment: its step is not due yet, or the window or pace hold it."""
    if send.send_at <= now:
        return "due now"
    if send.due_at > now and send.send_at - send.due_at < timedelta(minutes=1):
        return f"{'stage' if send.kind == 'invoice' else 'step'} due then"
    zone = ZoneInfo(send.timezone)
    due = max(send.due_at, now).astimezone(zone).strftime("%a %d %b %H:%M")
    return f"due {due} their time; waits for their sending window or the pace between messages"
