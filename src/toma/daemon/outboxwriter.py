"""The store's one writer while a tick sends: each message handed, then its outcome.

Theory of operation: see :mod:`toma.daemon.sending` (at most once rests on a
message being durably ``sending`` and handed before the server could first
take it). :class:`OutboxWriter` does the writes, grouped, in a worker thread;
:class:`Marking` is the transport the sender sends through: it claims each
message (on a shared store, :mod:`toma.daemon.claiming`) before sending it,
and asks the writer for the hand-over's record before the hand-over.
"""

from __future__ import annotations

import asyncio
import logging
import time as monotonic
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from toma.core.invoices import Invoice, with_thread
from toma.core.lastcheck import Withheld, withheld
from toma.core.outbox import HANDED, MessageState, OutboxRecord, advance
from toma.core.reminders import number_of_ref
from toma.daemon.claiming import ClaimsAhead
from toma.errors import TomaError
from toma.inbox.sentcopy import Spool
from toma.logs import fields
from toma.store import CONTACTS, INVOICES, MESSAGES, Document, Store, Transaction, claims
from toma.store.records.query import by_keys
from toma.timeutil import iso
from toma.transports import Envelope, Handing, Outcome, Result, Transport

log = logging.getLogger(__name__)

RESULT_BATCH = 20
RESULT_EVERY = 0.1
HAND_GATHER = 0.001  # seconds a hand-over waits for others to share its write


@dataclass
class Tally:
    """What became of the messages handed over."""

    sent: int = 0
    failed: int = 0
    retrying: int = 0
    unknown: int = 0
    withheld: int = 0  # stopped by the last check before the hand-over
    problems: list[str] = field(default_factory=list)


class OutboxWriter:
    """The store's one writer during a send: hand-overs, then outcomes.

    Claims (only on a store several daemons share): see
    :class:`~toma.daemon.claiming.ClaimsAhead`.

    Hand-overs: :meth:`hand` queues its message and waits for the next write,
    which takes every hand-over queued by then (started at once when no write
    is under way). A message's first hand-over is its first write: a message
    that never reaches one leaves the store as it was, and the next tick plans
    it again.

    Outcomes ride with the next write, which in a steady stream comes with the
    next hand-over. Without one to come (the last messages, a trickle) they
    are written on their own once ``RESULT_BATCH`` have gathered or
    ``RESULT_EVERY`` seconds have passed.

    One write at a time, in a worker thread, so that an fsync holds up no send.
    Every hand-over's write checks the message's contact (the last check, see
    :mod:`toma.daemon.sending`); what it decides is applied here, in the event
    loop, once the write is done.
    """

    def __init__(
        self,
        store: Store,
        records: dict[str, OutboxRecord],
        now: datetime,
        tally: Tally,
        settle: Callable[[OutboxRecord, Result], OutboxRecord],
    ) -> None:
        self.store = store
        self.records = records
        self.now = now
        self.tally = tally
        self.settle = settle
        self.attempted: set[str] = set()  # a send began: its outcome is written
        self.written: set[str] = set()  # recorded `sending` by a hand-over's write
        self.withdrawn: dict[str, str] = {}  # key -> why the last check (or a claim) stopped it
        self.before: dict[str, dict[str, Any] | None] = {}  # the record before its first write
        self.pending: list[Result] = []  # outcomes not yet written
        self.writing = asyncio.Lock()
        self.recording: asyncio.Task[None] | None = None  # outcomes written on their own
        self.handing: list[str] = []  # hand-overs waiting for the next write
        self._handed = self._new_group()
        self._hand_write_due = False
        self.tasks: set[asyncio.Task[None]] = set()  # every background write under way
        self.failures: list[BaseException] = []  # what the background writes raised
        self._flushed = monotonic.monotonic()
        self.claims = ClaimsAhead(store, self.withdrawn, self._spawn)

    def extend(self, keys: Iterable[str]) -> None:
        self.claims.extend(keys)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[None]) -> None:
        # Every write's error is retrieved here, whoever else waits for it: close() raises it.
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.failures.append(task.exception())  # type: ignore[arg-type]

    @staticmethod
    def _new_group() -> asyncio.Future[None]:
        group: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Retrieved even when nobody waits for it: its error is raised by close().
        group.add_done_callback(_retrieve)
        return group

    async def ensure(self, key: str) -> None:
        """Return once ``key`` is this daemon's to send, or withdrawn (see :attr:`withdrawn`)."""
        self.attempted.add(key)
        await self.claims.ensure(key)

    # ------------------------------------------------------------------ hand-overs

    def hand(self, key: str) -> asyncio.Future[bool]:
        """Queue ``key``'s hand-over for the next write: True once it is durable, False if
        the last check withdrew it (the transport's ``handing``)."""
        self.withdrawn.pop(key, None)
        self.handing.append(key)
        group = self._handed
        if not self._hand_write_due:
            self._hand_write_due = True
            self._spawn(self._hand_soon())
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def settle(written: asyncio.Future[None]) -> None:
            if answer.done():
                return
            if written.cancelled():
                answer.cancel()
            elif written.exception() is not None:
                answer.set_exception(written.exception())  # type: ignore[arg-type]
            else:
                answer.set_result(key not in self.withdrawn)

        group.add_done_callback(settle)
        # A send that ends before its hand-over (a refused RCPT) never awaits it.
        answer.add_done_callback(_retrieve)
        return answer

    # ------------------------------------------------------------------ outcomes

    async def collect(self, result: Result) -> None:
        if result.outcome is Outcome.WITHDRAWN:
            self.tally.withheld += 1  # its record was written by the check that stopped it
            log.info(
                "withheld",
                extra=fields(
                    ref=self.records[result.key].ref,
                    why=self.withdrawn.get(result.key, result.detail),
                ),
            )
            self.claims.let_go_soon([result.key])
            return
        self.pending.append(result)
        while self.recording is not None and not self.recording.done():
            if len(self.pending) < RESULT_BATCH:
                return  # the next write takes these
            await self.recording  # a whole batch waiting: the disk sets the pace
        if len(self.pending) < RESULT_BATCH and (
            monotonic.monotonic() - self._flushed <= RESULT_EVERY or self._hand_write_due
        ):
            return  # the next write takes these (the hand-overs under way, most likely)
        if self.recording is not None:
            self.recording.result()  # a write that failed ends the send
        self.recording = self._spawn(self._write_when_free())

    async def close(self) -> None:
        """Wait for the writes under way, then write the last outcomes and let go of every
        claim; raise a write's error."""
        await asyncio.gather(*self.tasks, return_exceptions=True)  # their errors: _reap
        # Here, not in a thread: this may run while the tick is being cancelled.
        async with self.writing:
            try:
                self._apply(self._put([], self._take()))
            except TomaError:
                if not self.failures:
                    raise
        # Here too: claimed and never sent (a stop came first), or the last ones.
        try:
            self.claims.let_go_all()
        except TomaError:
            if not self.failures:
                raise
        if self.failures:
            raise self.failures[0]

    # ------------------------------------------------------------------ writing

    async def _hand_soon(self) -> None:
        # The hand-overs asked meanwhile (other connections starting a transaction) share
        # this write: fewer fsyncs, while MAIL and RCPT still hide the wait.
        await asyncio.sleep(HAND_GATHER)
        await self._write_when_free()

    async def _write_when_free(self) -> None:
        async with self.writing:
            await self._write()

    async def _write(self) -> None:
        """The hand-overs queued and the outcomes gathered: one transaction."""
        outcomes = self._take()
        # Taken only when there are some: hand-overs queued while this write is
        # under way belong to the next one, and wait for it.
        handing: list[str] = []
        group = self._handed
        if self.handing:
            handing, self.handing = self.handing, []
            self._handed, self._hand_write_due = self._new_group(), False
        try:
            if outcomes or handing:
                self._apply(await asyncio.to_thread(self._put, handing, outcomes))
        except BaseException as exc:
            if handing:
                if isinstance(exc, asyncio.CancelledError):
                    group.cancel()
                else:
                    group.set_exception(exc)
            raise
        if handing:
            group.set_result(None)
        if outcomes:
            self.claims.let_go_soon([result.key for result in outcomes])

    def _take(self) -> list[Result]:
        """The outcomes to write.

        Only a message whose send began has one: one that never began (a stop
        came first) leaves its record as it was, and the next tick plans it.
        """
        self._flushed = monotonic.monotonic()
        taken = [result for result in self.pending if result.key in self.attempted]
        self.pending = []
        return taken

    def _put(self, handing: list[str], outcomes: list[Result]) -> Written:
        """One transaction (in a worker thread: it changes nothing of this object)."""
        written = Written()
        if not handing and not outcomes:
            return written
        now = self.now
        with self.store.transaction() as tx:
            # Everything this write looks at, read at once: on PostgreSQL a round trip
            # per message and per contact cost more than all the rest of the write.
            # ``current`` then follows this transaction's own writes.
            current = by_keys(tx, MESSAGES, handing + [r.key for r in outcomes])

            def recorded(key: str) -> bool:
                """Whether this send has recorded ``key`` ``sending`` (earlier, or here)."""
                return key in self.written or key in written.handed

            unwritten = [r.key for r in outcomes if not recorded(r.key) and r.key not in handing]
            people = by_keys(
                tx, CONTACTS, {self.records[key].contact for key in [*handing, *unwritten]}
            )

            def put(key: str, record: OutboxRecord) -> None:
                doc = record.to_doc()
                tx.put(MESSAGES, key, doc)
                current[key] = doc

            for key in handing:
                record = written.records.get(key, self.records[key])
                first = not recorded(key)
                before = current.get(key) if first else self.before.get(key)
                stop = self._stop(record, current.get(key), people, first=first)
                if stop is None:
                    record = replace(record, handover=HANDED)
                    put(key, record)
                    written.records[key] = record
                    written.handed.add(key)
                    if first:
                        written.before[key] = before
                else:
                    self._withdraw(tx, current, key, record, stop, before, written, first=first)
            for result in outcomes:
                key = result.key
                stored = current.get(key)
                ours = recorded(key)
                if not ours and claims.taken(stored, now):
                    continue  # never handed over, and another daemon's since
                record = self.settle(written.records.get(key, self.records[key]), result)
                written.records[key] = record
                written.settled.append(record)
                if (
                    stored is None
                    if ours or record.kind == "notice"
                    else record.contact not in people
                ):
                    # Forgotten meanwhile: nothing about them is written again.
                    written.erased.append(record)
                    continue
                put(key, record)
                if record.kind == "invoice" and record.state is MessageState.SENT:
                    _remember_thread(tx, record)
        return written

    def _stop(
        self,
        record: OutboxRecord,
        stored: Document | None,
        people: dict[str, Document],
        *,
        first: bool,
    ) -> Withheld | None:
        """Whether the hand-over's write must call ``record`` back (the last check)."""
        if first and claims.taken(stored, self.now):
            return Withheld("taken", claims.TAKEN)  # see toma.store.claims
        if stored is None and not first:
            return Withheld("forget", "the record was erased")
        if stored is None and record.kind == "notice":
            return Withheld("forget", "the notice was withdrawn")
        return withheld(record, people.get(record.contact), self.now)

    def _withdraw(
        self,
        tx: Transaction,
        current: dict[str, Document],
        key: str,
        record: OutboxRecord,
        stop: Withheld,
        before: Document | None,
        written: Written,
        *,
        first: bool,
    ) -> None:
        written.withdrawn[key] = stop.reason
        if stop.action == "skip":
            skipped = advance(
                replace(record, state=MessageState.SENDING),
                MessageState.SKIPPED,
                at=self.now,
                detail=stop.reason,
            )
            current[key] = skipped.to_doc()
            tx.put(MESSAGES, key, current[key])
            written.records[key] = skipped
        elif stop.action == "taken" or (first and stop.action == "wait"):
            pass  # another daemon's now, or left as it was: planned again later
        elif stop.action == "wait" and before is not None:
            tx.put(MESSAGES, key, before)  # as it was before the tick: planned again later
            current[key] = before
        elif current.pop(key, None) is not None:
            tx.delete(MESSAGES, key)

    def _apply(self, written: Written) -> None:
        """What a write did, applied in the event loop once it is durable."""
        self.records.update(written.records)
        self.written.update(written.handed)
        for key, before in written.before.items():
            self.before.setdefault(key, before)
        self.withdrawn.update(written.withdrawn)
        for record in written.erased:
            log.warning(
                "forgotten while sending", extra=fields(ref=record.ref, outcome=record.state.value)
            )
        for record in written.settled:
            if record in written.erased:
                continue
            level = logging.INFO if record.state is MessageState.SENT else logging.WARNING
            if log.isEnabledFor(level):
                log.log(
                    level,
                    record.state.value,
                    extra=fields(
                        contact=record.contact,
                        ref=record.ref,
                        message_id=record.message_id,
                        code=record.code,
                        detail=record.detail or None,
                        retry_at=iso(record.next_attempt_at) if record.next_attempt_at else None,
                    ),
                )


@dataclass
class Written:
    """What one write of the journal did (see :meth:`OutboxWriter._put`)."""

    records: dict[str, OutboxRecord] = field(default_factory=dict)
    handed: set[str] = field(default_factory=set)
    before: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    withdrawn: dict[str, str] = field(default_factory=dict)
    settled: list[OutboxRecord] = field(default_factory=list)
    erased: list[OutboxRecord] = field(default_factory=list)


class Marking:
    """A transport that claims each message (see :class:`OutboxWriter`) before sending it,
    and records it ``sending`` and handed right before the hand-over."""

    def __init__(
        self, inner: Transport, journal: OutboxWriter, copies: Spool | None = None
    ) -> None:
        self.inner = inner
        self.journal = journal
        self.copies = copies

    @property
    def concurrency(self) -> int:
        return self.inner.concurrency

    async def __aenter__(self) -> Marking:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, envelope: Envelope, handing: Handing | None = None) -> Result:
        await self.journal.ensure(envelope.key)
        why = self.journal.withdrawn.get(envelope.key)
        if why is not None:
            return Result(envelope.key, Outcome.WITHDRAWN, None, why)
        result = await self.inner.send(envelope, self.journal.hand)
        if self.copies is not None and result.outcome is Outcome.SENT:
            # Before its outcome is recorded: a record that says sent has its bytes kept.
            # In a thread: a file's creation takes milliseconds on a busy disk.
            await asyncio.to_thread(self.copies.keep, envelope.key, envelope.data)
        return result


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's error as heard: the write's task reports it (see OutboxWriter._reap)."""
    if not future.cancelled():
        future.exception()


def _remember_thread(tx: Transaction, record: OutboxRecord) -> None:
    """The first message about an invoice starts its thread; later ones answer it."""
    number = number_of_ref(record.ref)
    doc = tx.get(INVOICES, number)
    if doc is None or not record.message_id:
        return
    invoice = Invoice.from_doc(doc)
    if invoice.thread_id is None:
        tx.put(INVOICES, number, with_thread(invoice, record.message_id).to_doc())
