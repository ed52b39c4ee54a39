"""``toma plan``: the coming sends as rows of a calendar, in both zones."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from toma.config import Config
from toma.core.agenda import decide
from toma.core.enrolments import tag_enrolments
from toma.core.planner import PlannedSend, PlanState
from toma.core.reminders import PlannedReminder
from toma.daemon import scoped
from toma.daemon.cache import plan_state
from toma.project.sequences import Files, read_sequences
from toma.store import Reader
from toma.store.records import invoices as billing
from toma.store.records.due import indexed
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
    if cached is None and indexed(reader):
        state, enrolling = read_ahead(reader, config, files, until)
        return plan_rows(reader, config, state, files, now=now, until=until, enrolling=enrolling)
    state = cached(files) if cached is not None else plan_state(reader, config, files)
    return plan_rows(reader, config, state, files, now=now, until=until)


def read_ahead(
    reader: Reader, config: Config, files: Files, until: datetime
) -> tuple[PlanState, set[str]]:
    """The planner's input up to ``until`` from a store that says who can be due
    (PostgreSQL), and the contacts a tag rule would enrol.

    Only the contacts that can have something due by ``until`` are read, as a
    tick reads them (:mod:`toma.daemon.scoped`), with those a tag rule would
    enrol: a plan of a week reads a week's worth of the address book.
    """
    enrolling = scoped.enrollable(reader, scoped.tag_rules(files.sequences))
    invoices = billing.all_invoices(reader)
    state = scoped.plan_state(reader, config, files, until, invoices, also=enrolling)
    return state, enrolling


def plan_rows(
    reader: Reader,
    config: Config,
    state: PlanState,
    files: Files,
    *,
    now: datetime,
    until: datetime,
    enrolling: Collection[str] | None = None,
) -> list[Row]:
    """:func:`upcoming`'s rows from the planner's input (see :func:`restricted`).

    Contacts whose tag the next tick would enrol count as enrolled now: found
    among ``state``'s contacts, or those of ``enrolling`` when the state holds
    the enrolments of only some of its contacts (:func:`read_ahead`: a scheduled
    newsletter brings in those of its audience it still waits for).
    """
    enrolled = {(e.contact, e.sequence) for e in state.enrolments}
    candidates = (
        state.contacts.values()
        if enrolling is None
        else [state.contacts[email] for email in sorted(enrolling) if email in state.contacts]
    )
    coming = tag_enrolments(candidates, files.sequences, enrolled, now=now)
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
    return sorted(rows, key=row_order)


def row_order(row: Row) -> tuple[datetime, str, str]:
    """The order of a plan's rows: by the moment, then the contact and what goes."""
    return (row.at_owner, row.contact, row.ref)


def restricted(
    state: PlanState, contacts: Collection[str], history: Iterable[str] | None = None
) -> PlanState:
    """``state`` with only the documents of ``contacts``: the planner's input for them.

    The planner decides for each contact from that contact's documents alone
    (its enrolments, its history, its invoices) and the files and config shared
    by all; so :func:`plan_rows` of this state gives exactly the rows a plan of
    everyone gives ``contacts``, and a caller that keeps a plan can make again
    just the contacts whose documents changed (:class:`toma.web.planview.PlanView`).
    Every invoice reminder's record stays: the reminders already sent are known
    by the invoice's number, whoever the invoice's contact was at the time.

    ``history``, when the caller keeps them, are the keys of those records (the
    contacts' and every invoice reminder's), to be taken without a look at the rest.
    """
    wanted = contacts if isinstance(contacts, (set, frozenset)) else set(contacts)
    everything = state.history
    if history is None:
        kept = {
            key: r for key, r in everything.items() if r.contact in wanted or r.kind == "invoice"
        }
    else:
        kept = {key: everything[key] for key in history if key in everything}
    return replace(
        state,
        contacts=MappingProxyType(
            {email: state.contacts[email] for email in wanted if email in state.contacts}
        ),
        enrolments=tuple(e for e in state.enrolments if e.contact in wanted),
        history=MappingProxyType(kept),
    )


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
