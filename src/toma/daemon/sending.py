"""Handing one tick's messages to the transport, recording each before and after.

Theory of operation
-------------------
The daemon gathers a tick's messages as :class:`Outgoing`: jobs still to
render and build, a few already built (notices), and for each its ``sending``
record. :meth:`Sender.send` builds the jobs a chunk at a time (in a worker
process when there are many, see :mod:`toma.daemon.builder`) and sends each chunk
while the next is built.

At most once rests on one rule: a message is durably ``sending`` before its
first byte goes to the server, and durably *handed* before the server could
first take it. :class:`_Journal`, the store's one writer during a send, marks
the records ``sending`` (``handover`` pending) ahead of the transport,
``MARK_BATCH`` at a time (one fsync), the next batch started while the last
ones are still being sent, so that no send waits for a disk. The transport
then asks, as each attempt starts (SMTP: before MAIL), for the message to be
marked handed, and waits for that mark right before the hand-over (SMTP:
before DATA), so that the write runs while MAIL and RCPT go back and forth.
Those requests are grouped: every write takes all that have gathered (a group
commit; the first waits ``HAND_GATHER`` for others to join it), together with
the marks and outcomes due, so a send waits for at most one write under way
and the next one. Outcomes go with the next write,
or on their own once ``RESULT_BATCH`` have gathered or ``RESULT_EVERY``
seconds have passed; the sends wait only when the disk falls a whole batch
behind.

A crash therefore leaves in doubt only what was handed and not yet recorded
(:func:`in_doubt_at_most`); a message marked ``sending`` and never handed is
planned again at the next start (:func:`toma.core.outbox.recover_after_crash`).

**The last check.** The store is shared with other processes (``toma
contacts unsubscribe``, ``forget``, ``pause``, the one-click endpoint), and a
write catches up with what they committed. So the write that marks a message
``sending`` reads its contact and withdraws it (:func:`withheld`) when the
contact is gone, unsubscribed, bounced, paused or held, and the write that
marks it handed checks again. That second check is the last: another
process's change committed before it is seen (it holds the store's lock), one
committed after it comes too late for that message. The window from the last
check to DATA is bounded: that write's fsync, or the MAIL and RCPT round trips
under way when the check ran, whichever ends later (each within ``[smtp]
timeout``; on a loopback server, about a millisecond). A withdrawn message is ``skipped`` with
the reason (unsubscribed, bounced), left as it was before the tick (paused,
held: it goes when the pause or the hold ends), or not recorded at all (a
forgotten contact: nothing about them is written again, outcomes included).

A temporary failure is retried within the tick (``retry_within``), then
planned again with a back-off (:func:`retry_delay`) until ``[smtp] retry_for``
has passed; a 5xx fails that message only. An error of the store (a full
disk) ends the send: no new message starts, those in flight finish, and the
error is raised once, as itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time as monotonic
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from toma.config import Config
from toma.core.contacts import Status
from toma.core.invoices import Invoice, with_thread
from toma.core.outbox import HANDED, HANDOVER_PENDING, MessageState, OutboxRecord, advance
from toma.core.reminders import number_of_ref
from toma.daemon.builder import BuildOutcome, Failure, build_chunks
from toma.errors import TomaError
from toma.inbox.sentcopy import Spool, sent_spool
from toma.logs import fields
from toma.mail.compose import Composer, Job
from toma.mail.mime import Built
from toma.mail.unsubscribe import unsubscriber
from toma.store import CONTACTS, INVOICES, MESSAGES, Store, Transaction, claims
from toma.timeutil import iso, parse_moment
from toma.transports import Envelope, Handing, Outcome, Result, Transport, send_all

log = logging.getLogger(__name__)

RESULT_BATCH = 20
RESULT_EVERY = 0.1
HAND_GATHER = 0.001  # seconds a hand-over waits for others to share its write
MARK_BATCH = 8  # marked `sending` in one write
MARK_AHEAD = 2 * MARK_BATCH  # at most this many marked and not yet sent, per chunk in flight
CHUNKS_IN_FLIGHT = 2  # keeps every connection busy; more would only hold messages in memory
FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(minutes=30)


def in_doubt_at_most(concurrency: int) -> int:
    """The most messages a crash in the middle of a send can leave ``unknown``.

    Only messages durably handed can be: those in flight (``concurrency``),
    and those sent whose outcome is not yet on disk: a batch being written and
    the next one filling, each at most ``RESULT_BATCH`` plus one result from
    every other send that finished while the sends waited for the disk. The
    messages marked ahead and never handed are planned again.
    """
    waiting = CHUNKS_IN_FLIGHT * concurrency
    return concurrency + 2 * (RESULT_BATCH + waiting)


@dataclass(frozen=True)
class Withheld:
    """Why the last check stopped a message, and what becomes of its record.

    ``action``: ``"skip"`` (final: ``skipped`` with ``reason``), ``"wait"``
    (the record stays as it was before the tick), ``"forget"`` (nothing is
    written: the contact was forgotten) or ``"taken"`` (another daemon claimed
    it: nothing is written, see :mod:`toma.store.claims`).
    """

    action: str
    reason: str


def withheld(
    record: OutboxRecord, contact: Mapping[str, Any] | None, now: datetime
) -> Withheld | None:
    """Whether ``record`` may still go to ``contact`` (its stored document) at ``now``.

    The same rules as the planning, read again just before the hand-over: an
    invoice reminder still goes to an unsubscribed client (it is not
    marketing), a hold (an out-of-office return) stops sequences only, and a
    notice (to the owner, or confirming a departure) is not checked here.
    """
    if record.kind == "notice":
        return None
    if contact is None:
        return Withheld("forget", "the contact was forgotten")
    # Read from the document as it is: this runs inside the send's writes, where a
    # value that does not decode must not stop everybody's mail.
    status = contact.get("status") or Status.ACTIVE
    if status == Status.BOUNCED:
        return Withheld("skip", "skipped: the address bounced before the message went")
    if status == Status.UNSUBSCRIBED and record.kind != "invoice":
        return Withheld("skip", "skipped: the contact unsubscribed before the message went")
    if status == Status.PAUSED:
        return Withheld("wait", "the contact was paused before the message went")
    if status != Status.ACTIVE and record.kind != "invoice":
        return Withheld("wait", f"the contact's status is {status!r}")
    hold = contact.get("hold_until")
    if record.kind == "sequence" and isinstance(hold, str) and hold:
        try:
            until = parse_moment(hold)
        except TomaError:
            return Withheld("wait", f"the contact is held (until {hold!r}, unreadable)")
        if until > now:
            return Withheld("wait", f"the contact is held until {hold}")
    return None


def retry_delay(attempts: int) -> timedelta:
    """The wait before attempt ``attempts + 1``: doubling from a minute, at most half an hour."""
    doubled: timedelta = FIRST_RETRY * 2 ** max(0, attempts - 1)
    return min(LONGEST_RETRY, doubled)


def retried_for(attempts: int) -> timedelta:
    """How long retrying has taken after ``attempts`` failed attempts (by the schedule above)."""
    return sum((retry_delay(n) for n in range(1, attempts + 1)), timedelta())


@dataclass
class Tally:
    """What became of the messages handed over."""

    sent: int = 0
    failed: int = 0
    retrying: int = 0
    unknown: int = 0
    withheld: int = 0  # stopped by the last check before the hand-over
    problems: list[str] = field(default_factory=list)


@dataclass
class Outgoing:
    """The messages of one tick: jobs still to build, and a few already built.

    ``records`` holds each message's ``sending`` record, written (see
    :class:`_Journal`) just before the message is handed to the transport.
    """

    jobs: list[Job] = field(default_factory=list)
    prebuilt: list[Envelope] = field(default_factory=list)
    records: dict[str, OutboxRecord] = field(default_factory=dict)

    def add_job(self, record: OutboxRecord, job: Job) -> None:
        self.records[record.key] = record
        self.jobs.append(job)

    def add_built(self, record: OutboxRecord, built: Built) -> None:
        self.records[record.key] = record
        self.prebuilt.append(self.built(record.key, built))

    def built(self, key: str, built: Built) -> Envelope:
        self.records[key] = replace(
            self.records[key], message_id=built.message_id, subject=built.subject
        )
        return Envelope(
            key=key,
            sender=built.envelope_sender,
            recipients=(built.envelope_recipient,),
            data=built.data,
        )


class Sender:
    """Sends an :class:`Outgoing` through a transport (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        config: Config,
        config_path: Path,
        transport: Transport,
        *,
        retry_within: timedelta,
        progress: Callable[[Result], None] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.config_path = config_path
        self.transport = transport
        self.retry_within = retry_within
        self.progress = progress
        self.stop = asyncio.Event()
        self.copies = sent_spool(config)  # what went, kept for the Sent copy (inbox.sentcopy)

    async def send(self, outgoing: Outgoing, now: datetime, tally: Tally) -> None:
        journal = _Journal(
            self.store,
            outgoing.records,
            now,
            tally,
            lambda record, result: self._settle(record, result, now, tally),
        )
        marking = _Marking(self.transport, journal, self.copies)

        async def collect(result: Result) -> None:
            if self.progress is not None:
                self.progress(result)
            await journal.collect(result)

        sending: set[asyncio.Task[list[Result]]] = set()
        errors: list[BaseException] = []

        def reap(done: Iterable[asyncio.Task[list[Result]]]) -> None:
            # Every send's error is retrieved here: the first ends the send.
            for task in done:
                sending.discard(task)
                if not task.cancelled() and task.exception() is not None:
                    errors.append(task.exception())  # type: ignore[arg-type]
                    self.stop.set()

        async def start(envelopes: list[Envelope]) -> None:
            journal.extend(e.key for e in envelopes)
            sending.add(
                asyncio.create_task(
                    send_all(
                        marking,
                        envelopes,
                        on_result=collect,
                        retry_until=self.retry_within,
                        stop=self.stop,
                    )
                )
            )
            while len(sending) >= CHUNKS_IN_FLIGHT:
                done, _ = await asyncio.wait(sending, return_when=asyncio.FIRST_COMPLETED)
                reap(done)

        try:
            if outgoing.prebuilt:
                await start(outgoing.prebuilt)
            composer = Composer(self.config, unsubscribe=unsubscriber(self.config))
            async with contextlib.aclosing(build_chunks(composer, outgoing.jobs)) as chunks:
                async for chunk in chunks:
                    if self.stop.is_set():
                        break
                    await start(self._envelopes(chunk, outgoing, tally))
            while sending:
                done, _ = await asyncio.wait(sending, return_when=asyncio.FIRST_COMPLETED)
                reap(done)
        finally:
            if sending:  # interrupted: let the sends in flight end, and hear from each
                self.stop.set()
                await asyncio.wait(sending)
                reap(list(sending))
            try:
                await journal.close()
            except Exception as exc:  # noqa: BLE001 - raised below, after the sends' own
                errors.append(exc)
        if errors:
            raise errors[0]

    def _envelopes(
        self, chunk: list[BuildOutcome], outgoing: Outgoing, tally: Tally
    ) -> list[Envelope]:
        envelopes = []
        for job, result in chunk:
            if isinstance(result, Failure):
                # Held, not recorded: once the template is fixed it goes.
                record = outgoing.records.pop(job.key)
                error = str(result.error(record.contact))
                if error not in tally.problems:
                    tally.problems.append(error)
                log.error(
                    "template error",
                    extra=fields(contact=record.contact, ref=record.ref, error=error),
                )
                continue
            envelopes.append(outgoing.built(job.key, result))
        return envelopes

    def _settle(
        self, record: OutboxRecord, result: Result, now: datetime, tally: Tally
    ) -> OutboxRecord:
        at, code, detail = now, result.code, result.detail
        if result.outcome is Outcome.SENT:
            tally.sent += 1
            return advance(record, MessageState.SENT, at=at, code=code, detail=detail)
        if result.outcome is Outcome.PERMANENT:
            tally.failed += 1
            return advance(record, MessageState.FAILED, at=at, code=code, detail=detail)
        if result.outcome is Outcome.UNKNOWN:
            tally.unknown += 1
            return advance(record, MessageState.UNKNOWN, at=at, code=code, detail=detail)
        if retried_for(record.attempts) >= self.config.smtp.retry_for.approx():
            tally.failed += 1
            return advance(
                record,
                MessageState.FAILED,
                at=at,
                code=code,
                detail=f"gave up after {record.attempts} attempts: {detail}",
            )
        tally.retrying += 1
        return advance(
            record,
            MessageState.PLANNED,
            at=at,
            code=code,
            detail=detail,
            next_attempt_at=now + retry_delay(record.attempts),
        )


class _Journal:
    """The store's one writer during a send: ``sending`` ahead, handed, outcomes after.

    Marks: a send whose record is not yet written marks the next
    ``MARK_BATCH`` and waits; once fewer than ``MARK_BATCH`` marked messages
    are left ahead of a send, the next batch is written in the background. So
    at most ``MARK_AHEAD`` messages of a chunk are marked and not yet sent.

    Hand-overs: :meth:`hand` queues its message and waits for the next write,
    which takes every hand-over queued by then (started at once when no write
    is under way).

    Outcomes ride with the next write, which in a steady stream comes with the
    next hand-over. Without one to come (the last messages, a trickle) they
    are written on their own once ``RESULT_BATCH`` have gathered or
    ``RESULT_EVERY`` seconds have passed.

    One write at a time, in a worker thread, so that an fsync holds up no send.
    Every write checks the contacts of the messages it marks (see the module
    docstring); what it decides is applied here, in the event loop, once the
    write is done.
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
        self.order: list[str] = []
        self.position: dict[str, int] = {}
        self.marked: set[str] = set()  # marked sending, or withdrawn at the mark
        self.withdrawn: dict[str, str] = {}  # key -> why the last check stopped it
        self.before: dict[str, dict[str, Any] | None] = {}  # the record before its mark
        self.pending: list[Result] = []  # outcomes not yet written
        self.writing = asyncio.Lock()
        self.ahead: asyncio.Task[None] | None = None  # marks written in the background
        self._ahead_keys: frozenset[str] = frozenset()
        self.recording: asyncio.Task[None] | None = None  # outcomes written on their own
        self.handing: list[str] = []  # hand-overs waiting for the next write
        self._handed = self._new_group()
        self._hand_write_due = False
        self.tasks: set[asyncio.Task[None]] = set()  # every background write under way
        self.failures: list[BaseException] = []  # what the background writes raised
        self._flushed = monotonic.monotonic()

    def extend(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.position[key] = len(self.order)
            self.order.append(key)

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

    # ------------------------------------------------------------------ marks

    async def ensure(self, key: str) -> None:
        """Return once ``key`` is durably ``sending``, or withdrawn (see :attr:`withdrawn`)."""
        while key not in self.marked:
            if self.ahead is not None and key in self._ahead_keys:
                await asyncio.shield(self.ahead)  # a cancelled send leaves the write alone
                continue
            async with self.writing:
                if key not in self.marked:  # else marked by another send while this one waited
                    await self._write(self._batch(self.position[key]))
        self._look_ahead(self.position[key])

    def _look_ahead(self, position: int) -> None:
        if self._marking_ahead:
            return
        if self.ahead is not None:
            self.ahead.result()  # a write that failed ends the send
        probe = position + MARK_BATCH
        if probe >= len(self.order) or self.order[probe] in self.marked:
            return
        start = next(
            (at for at in range(position + 1, probe) if self.order[at] not in self.marked), probe
        )
        batch = self._batch(start)
        if batch:
            self._ahead_keys = frozenset(batch)
            self.ahead = self._spawn(self._write_when_free(batch))

    @property
    def _marking_ahead(self) -> bool:
        return self.ahead is not None and not self.ahead.done()

    def _batch(self, start: int) -> list[str]:
        return [
            key
            for key in self.order[start : start + MARK_BATCH]
            if key not in self.marked and key not in self._ahead_keys
        ]

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
            return
        self.pending.append(result)
        while self.recording is not None and not self.recording.done():
            if len(self.pending) < RESULT_BATCH:
                return  # the next write takes these
            await self.recording  # a whole batch waiting: the disk sets the pace
        if len(self.pending) < RESULT_BATCH and (
            monotonic.monotonic() - self._flushed <= RESULT_EVERY
            or self._marking_ahead
            or self._hand_write_due
        ):
            return  # the next write takes these (the marks or hand-overs under way, most likely)
        if self.recording is not None:
            self.recording.result()  # a write that failed ends the send
        self.recording = self._spawn(self._write_when_free([]))

    async def close(self) -> None:
        """Wait for the writes under way, then write the last outcomes; raise a write's error."""
        await asyncio.gather(*self.tasks, return_exceptions=True)  # their errors: _reap
        # Here, not in a thread: this may run while the tick is being cancelled.
        async with self.writing:
            try:
                self._apply(self._put([], [], self._take([])))
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
        await self._write_when_free([])

    async def _write_when_free(self, marks: list[str]) -> None:
        async with self.writing:
            await self._write(marks)

    async def _write(self, marks: list[str]) -> None:
        """Mark ``marks``, the hand-overs queued and the outcomes gathered: one transaction."""
        docs = [(key, replace(self.records[key], handover=HANDOVER_PENDING)) for key in marks]
        outcomes = self._take(marks)
        # Taken only when there are some: hand-overs queued while this write is
        # under way belong to the next one, and wait for it.
        handing: list[str] = []
        group = self._handed
        if self.handing:
            handing, self.handing = self.handing, []
            self._handed, self._hand_write_due = self._new_group(), False
        try:
            if docs or outcomes or handing:
                self._apply(await asyncio.to_thread(self._put, docs, handing, outcomes))
        except BaseException as exc:
            if handing:
                if isinstance(exc, asyncio.CancelledError):
                    group.cancel()
                else:
                    group.set_exception(exc)
            raise
        self.marked.update(marks)
        if handing:
            group.set_result(None)

    def _take(self, marks: list[str]) -> list[Result]:
        """The outcomes to write with ``marks``.

        Only messages marked ``sending`` have an outcome to write. One that was
        never marked was never handed over (a stop came first): its record is as
        it was, and the next tick plans it. One whose marks are still to be
        written waits for them.
        """
        self._flushed = monotonic.monotonic()
        marking = set(marks)
        taken, waiting = [], []
        for result in self.pending:
            if result.key in self.marked or result.key in marking:
                taken.append(result)
            elif result.key in self._ahead_keys and self._marking_ahead:
                waiting.append(result)
        self.pending = waiting
        return taken

    def _put(
        self, marks: list[tuple[str, OutboxRecord]], handing: list[str], outcomes: list[Result]
    ) -> _Written:
        """One transaction (in a worker thread: it changes nothing of this object)."""
        written = _Written()
        if not marks and not handing and not outcomes:
            return written
        now = self.now
        with self.store.transaction() as tx:
            for key, record in marks:
                if key in self.marked:
                    # Marked (or withdrawn) by an earlier write already, a batch raced it:
                    # marking again would be refused as another daemon's claim.
                    continue
                before = tx.get(MESSAGES, key)
                stop = (
                    Withheld("taken", claims.TAKEN)  # the claim: see toma.store.claims
                    if claims.taken(before, now)
                    else Withheld("forget", "the notice was withdrawn")
                    if before is None and record.kind == "notice"
                    else withheld(record, tx.get(CONTACTS, record.contact), now)
                )
                if stop is None:
                    tx.put(MESSAGES, key, record.to_doc())
                    written.records[key] = record
                    written.before[key] = before
                else:
                    self._withdraw(tx, key, record, stop, before, written)
            for key in handing:
                record = written.records.get(key, self.records[key])
                current = tx.get(MESSAGES, key)
                stop = (
                    Withheld("forget", "the record was erased")
                    if current is None
                    else withheld(record, tx.get(CONTACTS, record.contact), now)
                )
                if stop is None:
                    record = replace(record, handover=HANDED)
                    tx.put(MESSAGES, key, record.to_doc())
                    written.records[key] = record
                else:
                    self._withdraw(tx, key, record, stop, self.before.get(key), written)
            for result in outcomes:
                record = self.settle(
                    written.records.get(result.key, self.records[result.key]), result
                )
                written.records[result.key] = record
                written.settled.append(record)
                if tx.get(MESSAGES, record.key) is None:
                    # Forgotten since it was marked: nothing about them is written again.
                    written.erased.append(record)
                    continue
                tx.put(MESSAGES, record.key, record.to_doc())
                if record.kind == "invoice" and record.state is MessageState.SENT:
                    _remember_thread(tx, record)
        return written

    def _withdraw(
        self,
        tx: Transaction,
        key: str,
        record: OutboxRecord,
        stop: Withheld,
        before: dict[str, Any] | None,
        written: _Written,
    ) -> None:
        written.withdrawn[key] = stop.reason
        if stop.action == "skip":
            skipped = advance(
                replace(record, state=MessageState.SENDING),
                MessageState.SKIPPED,
                at=self.now,
                detail=stop.reason,
            )
            tx.put(MESSAGES, key, skipped.to_doc())
            written.records[key] = skipped
        elif stop.action == "taken":
            pass  # another daemon's now: its record is left as that daemon wrote it
        elif stop.action == "wait" and before is not None:
            tx.put(MESSAGES, key, before)  # as it was before the tick: planned again later
        elif tx.get(MESSAGES, key) is not None:
            tx.delete(MESSAGES, key)

    def _apply(self, written: _Written) -> None:
        """What a write did, applied in the event loop once it is durable."""
        self.records.update(written.records)
        self.before.update(written.before)
        self.withdrawn.update(written.withdrawn)
        self.marked.update(written.withdrawn)
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
class _Written:
    """What one write of the journal did (see :meth:`_Journal._put`)."""

    records: dict[str, OutboxRecord] = field(default_factory=dict)
    before: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    withdrawn: dict[str, str] = field(default_factory=dict)
    settled: list[OutboxRecord] = field(default_factory=list)
    erased: list[OutboxRecord] = field(default_factory=list)


class _Marking:
    """A transport that marks each message ``sending`` (see :class:`_Journal`) before sending it,
    and handed right before the hand-over."""

    def __init__(self, inner: Transport, journal: _Journal, copies: Spool | None = None) -> None:
        self.inner = inner
        self.journal = journal
        self.copies = copies

    @property
    def concurrency(self) -> int:
        return self.inner.concurrency

    async def __aenter__(self) -> _Marking:
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
    """Mark a future's error as heard: the write's task reports it (see _Journal._reap)."""
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


def release_unknown(
    store: Store, keys: Iterable[str], contacts: Iterable[str], *, now: datetime, by: str
) -> list[OutboxRecord]:
    """Release ``unknown`` messages for sending again: those named by key, and all of
    ``contacts``' (``toma outbox release``). The next tick sends them.

    A key that names no message, or one that is not ``unknown``, is an error and
    nothing is released.
    """
    from toma.core.contacts import normalize_address
    from toma.core.outbox import release

    wanted = list(dict.fromkeys(keys))
    people = {normalize_address(address) for address in contacts}
    with store.transaction() as tx:
        chosen: dict[str, OutboxRecord] = {}
        for key in wanted:
            doc = tx.get(MESSAGES, key)
            if doc is None:
                raise TomaError(f"no message with the key {key!r} (see `toma outbox list`)")
            record = OutboxRecord.from_doc(doc)
            if record.state is not MessageState.UNKNOWN:
                raise TomaError(
                    f"{key} is {record.state.value}, not unknown: nothing released",
                    contact=record.contact,
                )
            chosen[key] = record
        if people:
            for key, doc in tx.all(MESSAGES):
                if doc.get("contact") in people and doc.get("state") == MessageState.UNKNOWN:
                    chosen.setdefault(key, OutboxRecord.from_doc(doc))
        released = [release(record, at=now, by=by) for record in chosen.values()]
        for record in released:
            tx.put(MESSAGES, record.key, record.to_doc())
    for record in released:
        log.warning(
            "released", extra=fields(contact=record.contact, ref=record.ref, key=record.key, by=by)
        )
    return released
