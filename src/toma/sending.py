"""Handing one tick's messages to the transport, recording each before and after.

Theory of operation
-------------------
The daemon gathers a tick's messages as :class:`Outgoing`: jobs still to
render and build, a few already built (notices), and for each its ``sending``
record. :meth:`Sender.send` builds the jobs a chunk at a time (in a worker
process when there are many, see :mod:`toma.building`) and sends each chunk
while the next is built.

At most once rests on one rule: a message is durably ``sending`` before its
first byte goes to the server. :class:`_Journal`, the store's one writer
during a send, marks the records ahead of the transport, ``MARK_BATCH`` at a
time (one fsync), the next batch started while the last ones are still being
sent, so that no send waits for a disk. Outcomes go with the next marks, or
on their own once ``RESULT_BATCH`` have gathered or ``RESULT_EVERY`` seconds
have passed; the sends wait only when the disk falls a whole batch behind.
What a crash leaves ``unknown`` is bounded (:func:`in_doubt_at_most`): the
messages marked ahead, those in flight, and the outcomes not yet written.
Everything else is still ``planned`` and goes at the next tick.

A temporary failure is retried within the tick (``retry_within``), then
planned again with a back-off (:func:`retry_delay`) until ``[smtp] retry_for``
has passed; a 5xx fails that message only.
"""

from __future__ import annotations

import asyncio
import logging
import time as monotonic
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from toma.building import BuildOutcome, Failure, Job, build_chunks
from toma.compose import Composer
from toma.config import Config
from toma.invoices import Invoice, number_of_ref, with_thread
from toma.logs import fields
from toma.message import Built
from toma.outbox import MessageState, OutboxRecord, advance
from toma.store import INVOICES, MESSAGES, Store, Transaction
from toma.timeutil import iso
from toma.transports import Envelope, Outcome, Result, Transport, send_all
from toma.unsubscribing import unsubscriber

log = logging.getLogger(__name__)

RESULT_BATCH = 20
RESULT_EVERY = 0.1
MARK_BATCH = 8  # marked `sending` in one write
MARK_AHEAD = 2 * MARK_BATCH  # at most this many marked and not yet sent, per chunk in flight
CHUNKS_IN_FLIGHT = 2  # keeps every connection busy; more would only hold messages in memory
FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(minutes=30)


def in_doubt_at_most(concurrency: int) -> int:
    """The most messages a crash in the middle of a send can leave ``unknown``.

    Those marked ahead of the transport (``MARK_AHEAD`` for each chunk in
    flight), those in flight (``concurrency``), and those sent whose outcome
    is not yet on disk: a batch being written and the next one filling, each
    at most ``RESULT_BATCH`` plus one result from every other send that
    finished while the sends waited for the disk.
    """
    waiting = CHUNKS_IN_FLIGHT * concurrency
    return CHUNKS_IN_FLIGHT * MARK_AHEAD + concurrency + 2 * (RESULT_BATCH + waiting)


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
        return Envelope(key=key, sender=built.envelope_sender,
                        recipients=(built.envelope_recipient,), data=built.data)


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

    async def send(self, outgoing: Outgoing, now: datetime, tally: Tally) -> None:
        journal = _Journal(self.store, outgoing.records,
                           lambda record, result: self._settle(record, result, now, tally))
        marking = _Marking(self.transport, journal)

        async def collect(result: Result) -> None:
            if self.progress is not None:
                self.progress(result)
            await journal.collect(result)

        sending: set[asyncio.Task[list[Result]]] = set()

        async def start(envelopes: list[Envelope]) -> None:
            journal.extend(e.key for e in envelopes)
            sending.add(asyncio.create_task(send_all(
                marking, envelopes, on_result=collect, retry_until=self.retry_within,
                stop=self.stop)))
            while len(sending) >= CHUNKS_IN_FLIGHT:
                done, _ = await asyncio.wait(sending, return_when=asyncio.FIRST_COMPLETED)
                sending.difference_update(done)

        try:
            if outgoing.prebuilt:
                await start(outgoing.prebuilt)
            composer = Composer(self.config, unsubscribe=unsubscriber(self.config))
            async for chunk in build_chunks(composer, self.config_path, outgoing.jobs):
                if self.stop.is_set():
                    break
                await start(self._envelopes(chunk, outgoing, tally))
            if sending:
                await asyncio.gather(*sending)
        finally:
            await journal.close()

    def _envelopes(self, chunk: list[BuildOutcome], outgoing: Outgoing,
                   tally: Tally) -> list[Envelope]:
        envelopes = []
        for job, result in chunk:
            if isinstance(result, Failure):
                # Held, not recorded: once the template is fixed it goes.
                record = outgoing.records.pop(job.key)
                error = str(result.error(record.contact))
                if error not in tally.problems:
                    tally.problems.append(error)
                log.error("template error", extra=fields(contact=record.contact, ref=record.ref,
                                                         error=error))
                continue
            envelopes.append(outgoing.built(job.key, result))
        return envelopes

    def _settle(self, record: OutboxRecord, result: Result, now: datetime,
                tally: Tally) -> OutboxRecord:
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
            return advance(record, MessageState.FAILED, at=at, code=code,
                           detail=f"gave up after {record.attempts} attempts: {detail}")
        tally.retrying += 1
        return advance(record, MessageState.PLANNED, at=at, code=code, detail=detail,
                       next_attempt_at=now + retry_delay(record.attempts))


class _Journal:
    """The store's one writer during a send: ``sending`` before each message, outcomes after.

    Marks: a send whose record is not yet written marks the next
    ``MARK_BATCH`` and waits; once fewer than ``MARK_BATCH`` marked messages
    are left ahead of a send, the next batch is written in the background. So
    at most ``MARK_AHEAD`` messages of a chunk are marked and not yet sent.

    Outcomes ride with the next marks, which in a steady stream come every
    ``MARK_BATCH`` messages: one transaction, one fsync, for both. Without
    marks to come (the last messages, a trickle) they are written on their
    own once ``RESULT_BATCH`` have gathered or ``RESULT_EVERY`` seconds have
    passed.

    One write at a time, in a worker thread, so that an fsync holds up no send.
    """

    def __init__(self, store: Store, records: dict[str, OutboxRecord],
                 settle: Callable[[OutboxRecord, Result], OutboxRecord]) -> None:
        self.store = store
        self.records = records
        self.settle = settle
        self.order: list[str] = []
        self.position: dict[str, int] = {}
        self.marked: set[str] = set()
        self.pending: list[Result] = []  # outcomes not yet written
        self.writing = asyncio.Lock()
        self.ahead: asyncio.Task[None] | None = None  # marks written in the background
        self._ahead_keys: frozenset[str] = frozenset()
        self.recording: asyncio.Task[None] | None = None  # outcomes written on their own
        self._flushed = monotonic.monotonic()

    def extend(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.position[key] = len(self.order)
            self.order.append(key)

    # ------------------------------------------------------------------ marks

    async def ensure(self, key: str) -> None:
        """Return once ``key`` is durably ``sending``."""
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
        start = next((at for at in range(position + 1, probe)
                      if self.order[at] not in self.marked), probe)
        batch = self._batch(start)
        if batch:
            self._ahead_keys = frozenset(batch)
            self.ahead = asyncio.create_task(self._write_when_free(batch))

    @property
    def _marking_ahead(self) -> bool:
        return self.ahead is not None and not self.ahead.done()

    def _batch(self, start: int) -> list[str]:
        return [key for key in self.order[start : start + MARK_BATCH]
                if key not in self.marked and key not in self._ahead_keys]

    # ------------------------------------------------------------------ outcomes

    async def collect(self, result: Result) -> None:
        self.pending.append(result)
        while self.recording is not None and not self.recording.done():
            if len(self.pending) < RESULT_BATCH:
                return  # the next write takes these
            await self.recording  # a whole batch waiting: the disk sets the pace
        if len(self.pending) < RESULT_BATCH and (
                monotonic.monotonic() - self._flushed <= RESULT_EVERY or self._marking_ahead):
            return  # the next write takes these (the marks under way, most likely)
        if self.recording is not None:
            self.recording.result()  # a write that failed ends the send
        self.recording = asyncio.create_task(self._write_when_free([]))

    async def close(self) -> None:
        """Wait for the writes under way, then write the last outcomes; raise a write's error."""
        errors = await asyncio.gather(
            *(task for task in (self.recording, self.ahead) if task is not None),
            return_exceptions=True)
        # Here, not in a thread: this may run while the tick is being cancelled.
        async with self.writing:
            self._put([], self._take([]))
        for error in errors:
            if isinstance(error, BaseException):
                raise error

    # ------------------------------------------------------------------ writing

    async def _write_when_free(self, marks: list[str]) -> None:
        async with self.writing:
            await self._write(marks)

    async def _write(self, marks: list[str]) -> None:
        """Mark ``marks`` and write the outcomes gathered so far: one transaction."""
        docs = [(key, self.records[key].to_doc()) for key in marks]
        outcomes = self._take(marks)
        if docs or outcomes:
            await asyncio.to_thread(self._put, docs, outcomes)
        self.marked.update(marks)

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

    def _put(self, docs: list[tuple[str, dict[str, Any]]], outcomes: list[Result]) -> None:
        updated = [self.settle(self.records[result.key], result) for result in outcomes]
        if not docs and not updated:
            return
        with self.store.transaction() as tx:
            for key, doc in docs:
                tx.put(MESSAGES, key, doc)
            for record in updated:  # after the marks: a message marked and settled at once
                tx.put(MESSAGES, record.key, record.to_doc())
                if record.kind == "invoice" and record.state is MessageState.SENT:
                    _remember_thread(tx, record)
        for record in updated:
            self.records[record.key] = record
            level = logging.INFO if record.state is MessageState.SENT else logging.WARNING
            if log.isEnabledFor(level):
                log.log(level, record.state.value, extra=fields(
                    contact=record.contact, ref=record.ref, message_id=record.message_id,
                    code=record.code, detail=record.detail or None,
                    retry_at=iso(record.next_attempt_at) if record.next_attempt_at else None))


class _Marking:
    """A transport that marks each message ``sending`` (see :class:`_Journal`) before sending it."""

    def __init__(self, inner: Transport, journal: _Journal) -> None:
        self.inner = inner
        self.journal = journal

    @property
    def concurrency(self) -> int:
        return self.inner.concurrency

    async def __aenter__(self) -> _Marking:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, envelope: Envelope) -> Result:
        await self.journal.ensure(envelope.key)
        return await self.inner.send(envelope)


def _remember_thread(tx: Transaction, record: OutboxRecord) -> None:
    """The first message about an invoice starts its thread; later ones answer it."""
    number = number_of_ref(record.ref)
    doc = tx.get(INVOICES, number)
    if doc is None or not record.message_id:
        return
    invoice = Invoice.from_doc(doc)
    if invoice.thread_id is None:
        tx.put(INVOICES, number, with_thread(invoice, record.message_id).to_doc())
