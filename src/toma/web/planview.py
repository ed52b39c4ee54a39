"""The plan the dashboard shows (:func:`toma.reports.plan.upcoming`), kept up to date.

Theory of operation
-------------------

Planning every contact at 10k contacts with a year of history takes the
planner some 150 ms: too slow to do again for the first page after each tick.
But the planner decides for each contact from that contact's documents alone
(:func:`toma.reports.plan.plan_rows`), and a tick writes the documents of a
few contacts. So a :class:`PlanView` plans everyone once, at a moment ``at``,
and keeps the rows by contact; before each page it reads the keys the
snapshot says were written since (:meth:`toma.web.snapshot.Snapshot.written_since`),
finds whose documents they are (before and after the write), and plans those
contacts again, at the same ``at``. The rows kept are therefore always exactly
those a plan of the whole store as it is now would give at ``at``; the page
says when ``at`` was.

A plan grows old as time passes even when nothing is written (a step falls
due, the horizon moves on): one older than ``PLAN_KEPT`` is not shown but made
again for everyone, in the page that asks. So the dashboard's reading thread
makes it again well before then, between pages (when :meth:`PlanView.stale`
says so; see :meth:`toma.web.pages.Dashboard.refresh`), and a part at a time
(:meth:`PlanView.begin`, :meth:`PlanView.step`): a tenth of the contacts per
step, each step a task of its own, so that a page asked meanwhile waits for
one step at most. Until the last step the pages show the plan kept; a contact
written to meanwhile is planned (again) at the new moment before the new plan
is shown. Edited sequence files, a snapshot read afresh, or a record of writes
too long to follow also plan everyone again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from toma.config import Config
from toma.core.outbox import OutboxRecord
from toma.core.planner import PlanState
from toma.daemon.cache import PlanCache
from toma.inbox.handwritten import CONTACTED_PREFIX
from toma.project.sequences import Files, read_sequences
from toma.reports.dashboard import next_sends
from toma.reports.plan import Row, plan_rows, restricted, row_order
from toma.store import CONTACTS, ENROLMENTS, INVOICES, MESSAGES, SYNC, Store
from toma.web.snapshot import Snapshot

PLAN_DAYS = 28
PLAN_KEPT = timedelta(minutes=5)  # a plan a few minutes old still says what goes when
PLAN_FRESHENED = PLAN_KEPT / 2  # past this age the reading thread makes it again, unasked


@dataclass(frozen=True)
class Planned:
    """One plan as the pages show it; ``version`` changes whenever its rows do."""

    at: datetime
    rows: list[Row]
    first: dict[str, Row]  # each contact's next send
    by_contact: Mapping[str, list[Row]] = field(default_factory=dict)
    version: int = 0


@dataclass
class _Making:
    """A plan of everyone at ``at``, made a part at a time (:meth:`PlanView.step`)."""

    at: datetime
    pending: set[str]  # the contacts still to plan
    size: int  # how many a step plans
    rows: dict[str, list[Row]] = field(default_factory=dict)


def _by_contact(rows: Iterable[Row]) -> dict[str, list[Row]]:
    found: dict[str, list[Row]] = {}
    for row in rows:
        found.setdefault(row.contact, []).append(row)
    return found


class PlanView:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.cache = PlanCache()
        self._planned: Planned | None = None
        self._state: PlanState | None = None  # the planner's input the rows came from
        self._files: tuple[object, ...] | None = None
        self._read: Files | None = None  # the sequence files the rows kept were planned with
        self._position: tuple[int, int] | None = None
        self._invoice_contact: dict[str, str] = {}  # whose each invoice was, by number
        # The keys of the history, by contact; every invoice reminder's too (see
        # toma.reports.plan.restricted): a contact's records without a look at the rest.
        self._history_of: dict[str, set[str]] = {}
        self._reminders: set[str] = set()
        self._versions = 0
        self._making: _Making | None = None
        self.replanned = 0  # contacts planned again one by one (for the tests)

    def stale(self, now: datetime) -> bool:
        """Whether the plan should be made again for everyone before a page asks.

        Without a plan (none made yet, or making one failed), the next page makes
        it: the reading thread does not try again and again meanwhile. Nor while
        one is being made.
        """
        kept = self._planned
        if kept is None or self._making is not None:
            return False
        return not kept.at <= now < kept.at + PLAN_FRESHENED

    @property
    def making(self) -> bool:
        """Whether a plan of everyone is being made a part at a time."""
        return self._making is not None

    def begin(self, now: datetime, steps: int = 10) -> None:
        """Start making the plan of everyone at ``now``, in ``steps`` calls of :meth:`step`."""
        if self._state is None:
            return
        everyone = set(self._state.contacts)
        self._making = _Making(now, everyone, max(1, -(-len(everyone) // steps)))

    def step(self, reader: Snapshot, store: Store, now: datetime) -> bool:
        """Plan the next part of the contacts (``reader`` synced just before).

        The last step puts the new plan in place. False when no step remains. A
        failure drops the plan being made (the next :meth:`stale` says so again).
        """
        try:
            return self._step(reader, store, now)
        except BaseException:
            self._making = None
            raise

    def _step(self, reader: Snapshot, store: Store, now: datetime) -> bool:
        self.planned(reader, store, now)  # follow the writes: whom to plan again
        making, state, files = self._making, self._state, self._read
        if making is None or state is None or files is None:
            return False
        if not making.at <= now < making.at + PLAN_KEPT:
            self._making = None  # too old before it was done: begin again
            return False
        part = {making.pending.pop() for _ in range(min(making.size, len(making.pending)))}
        for email in part:
            making.rows.pop(email, None)
        making.rows.update(_by_contact(self._plan_some(reader, state, files, part, making.at)))
        if making.pending:
            return True
        self._making = None
        everyone = [row for contact_rows in making.rows.values() for row in contact_rows]
        everyone.sort(key=row_order)
        self._keep(making.at, everyone, making.rows)
        return False

    def _plan_some(
        self, reader: Snapshot, state: PlanState, files: Files, emails: set[str], at: datetime
    ) -> list[Row]:
        """The plan of ``emails`` alone at ``at`` (the invoices' reminders kept whole)."""
        keys = set(self._reminders)
        for email in emails:
            keys.update(self._history_of.get(email, ()))
        return plan_rows(
            reader,
            self.config,
            restricted(state, emails, keys),
            files,
            now=at,
            until=at + timedelta(days=PLAN_DAYS),
        )

    def planned(self, reader: Snapshot, store: Store, now: datetime) -> Planned:
        """The plan of the store as ``reader`` sees it now (``reader`` synced just before).

        A failure forgets the plan kept, so that the next call plans everyone rather
        than miss the contacts this one was to plan again.
        """
        try:
            return self._planned_now(reader, store, now)
        except BaseException:
            self._planned = self._state = self._making = None
            raise

    def _planned_now(self, reader: Snapshot, store: Store, now: datetime) -> Planned:
        files = self._read = read_sequences(self.config)
        state = self.cache.state(store, self.config, files)
        written = reader.written_since(self._position)
        self._position = reader.position
        kept, before = self._planned, self._state
        self._state = state
        if written is None or before is None:
            self._reindex(reader, state)
            touched = None
        else:
            touched = self._touched(written, reader, before, state)
        signature = (files.sequences, files.held)
        if (
            kept is None
            or touched is None
            or signature != self._files
            or not kept.at <= now < kept.at + PLAN_KEPT
        ):
            self._files = signature
            self._making = None  # superseded
            rows = plan_rows(
                reader, self.config, state, files, now=now, until=now + timedelta(days=PLAN_DAYS)
            )
            return self._keep(now, rows, _by_contact(rows))
        if self._making is not None:
            self._making.pending |= touched  # planned again at the new moment too
        if not touched:
            return kept
        self.replanned += len(touched)
        fresh = self._plan_some(reader, state, files, touched, kept.at)
        rows = [row for row in kept.rows if row.contact not in touched]
        rows.extend(fresh)
        rows.sort(key=row_order)
        by_contact = dict(kept.by_contact)
        for email in touched:
            by_contact.pop(email, None)
        by_contact.update(_by_contact(fresh))
        return self._keep(kept.at, rows, by_contact)

    def _reindex(self, reader: Snapshot, state: PlanState) -> None:
        """Whose each document is, read afresh (else kept up to date by :meth:`_touched`)."""
        self._invoice_contact = {
            number: str(doc.get("contact", "")) for number, doc in reader.all(INVOICES)
        }
        self._history_of, self._reminders = {}, set()
        for key, record in state.history.items():
            self._index(key, record)

    def _keep(self, at: datetime, rows: list[Row], by_contact: dict[str, list[Row]]) -> Planned:
        self._versions += 1
        self._planned = Planned(at, rows, next_sends(rows), by_contact, self._versions)
        return self._planned

    def _index(self, key: str, record: OutboxRecord) -> None:
        self._history_of.setdefault(record.contact, set()).add(key)
        if record.kind == "invoice":
            self._reminders.add(key)

    def _touched(
        self, written: list[tuple[str, str]], reader: Snapshot, before: PlanState, now: PlanState
    ) -> set[str]:
        """The contacts whose documents the planner reads were among ``written``.

        A write may move a document from one contact to another: both are named.
        """
        touched: set[str] = set()
        for table, key in written:
            if table == CONTACTS:
                touched.add(key)
                doc = reader.get(table, key)
                if doc is not None and doc.get("email"):
                    touched.add(str(doc["email"]))
            elif table == MESSAGES:
                old = before.history.get(key)
                if old is not None:
                    touched.add(old.contact)
                    self._history_of.get(old.contact, set()).discard(key)
                    self._reminders.discard(key)
                new = now.history.get(key)
                if new is not None:
                    touched.add(new.contact)
                    self._index(key, new)
            elif table == ENROLMENTS:
                touched.add(key.partition("/")[2])  # toma.core.enrolments.enrolment_key
                doc = reader.get(table, key)
                if doc is not None and doc.get("contact"):
                    touched.add(str(doc["contact"]))
            elif table == INVOICES:
                was = self._invoice_contact.pop(key, None)
                if was:
                    touched.add(was)
                doc = reader.get(table, key)
                if doc is not None and doc.get("contact"):
                    self._invoice_contact[key] = str(doc["contact"])
                    touched.add(str(doc["contact"]))
            elif table == SYNC and key.startswith(CONTACTED_PREFIX):
                touched.add(key[len(CONTACTED_PREFIX) :])
        touched.discard("")
        return touched
