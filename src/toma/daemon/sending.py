"""Handing one tick's messages to the transport, recording each before and after.

Theory of operation
-------------------
The daemon gathers a tick's messages as :class:`Outgoing`: jobs still to
render and build, a few already built (notices), and for each its ``sending``
record. :meth:`Sender.send` builds the jobs a chunk at a time (in a worker
process when there are many, see :mod:`toma.daemon.builder`) and sends each chunk
while the next is built.

At most once rests on one rule: a message is durably ``sending``, and
*handed*, before the server could first take it. The store's one writer
during a send (:class:`~toma.daemon.outboxwriter.OutboxWriter`) writes that
record as the transport asks for it: as each attempt starts (SMTP: before
MAIL), and the transport waits for it right before the hand-over (SMTP:
before DATA), so that the write runs while MAIL and RCPT go back and forth.
Those requests are grouped: every write takes all that have gathered (a group
commit; the first waits ``HAND_GATHER`` for others to join it), together with
the outcomes due, so a send waits for at most one write under way and the
next one. Outcomes go with the next write, or on their own once
``RESULT_BATCH`` have gathered or ``RESULT_EVERY`` seconds have passed; the
sends wait only when the disk falls a whole batch behind. Two writes a
message, then, each shared with others: the hand-over and the outcome. (An
outcome reached before any hand-over, a refused recipient or no connection,
is that message's only write.)

A crash therefore leaves in doubt only what was handed and not yet recorded
(:func:`in_doubt_at_most`); a message never handed was never written, and the
next tick plans it again. (A record ``sending`` with its hand-over still
pending, written by earlier versions ahead of the transport, is planned again
at the next start: :func:`toma.core.outbox.recover_after_crash`.)

On a store several daemons share, each leaves out of a chunk, before building
it, what the others have handed over already, then claims the messages it is
about to send (:mod:`toma.daemon.claiming`, a batch at a time, ahead of the
sends), so that two daemons do not both talk to the server about one message;
the hand-over's write still checks that no other daemon sent it meanwhile.

**The last check.** The store is shared with other processes (``toma
contacts unsubscribe``, ``forget``, ``pause``, the one-click endpoint), and a
write catches up with what they committed. So the write that records a
message handed reads its contact and withdraws it
(:func:`toma.core.lastcheck.withheld`) when the contact is gone, unsubscribed,
bounced, paused or held. That check is the last: another process's change
committed before it is seen (it holds the store's lock), one committed after
it comes too late for that message. The window from the last
check to DATA is bounded: that write's fsync, or the MAIL and RCPT round trips
under way when the check ran, whichever ends later (each within ``[smtp]
timeout``; on a loopback server, about a millisecond). A withdrawn message is ``skipped`` with
the reason (unsubscribed, bounced), left as it was before the tick (paused,
held: it goes when the pause or the hold ends), or not recorded at all (a
forgotten contact: nothing about them is written again, outcomes included).

A temporary failure is retried within the tick (``retry_within``), then
planned again with a back-off (:func:`toma.core.outbox.retry_delay`) until ``[smtp] retry_for``
has passed; a 5xx fails that message only. An error of the store (a full
disk) ends the send: no new message starts, those in flight finish, and the
error is raised once, as itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

from toma.config import Config
from toma.core.outbox import (
    MessageState,
    OutboxRecord,
    advance,
    retried_for,
    retry_delay,
)
from toma.daemon.builder import BuildOutcome, Failure, build_chunks
from toma.daemon.claiming import left_to_send
from toma.daemon.outboxwriter import RESULT_BATCH, Marking, OutboxWriter, Tally
from toma.inbox.sentcopy import sent_spool
from toma.logs import fields
from toma.mail.compose import Composer, Job
from toma.mail.mime import Built
from toma.mail.unsubscribe import unsubscriber
from toma.store import Store, claims
from toma.transports import Envelope, Outcome, Result, Transport, send_all

log = logging.getLogger(__name__)

CHUNKS_IN_FLIGHT = 2  # keeps every connection busy; more would only hold messages in memory


def in_doubt_at_most(concurrency: int) -> int:
    """The most messages a crash in the middle of a send can leave ``unknown``.

    Only messages durably handed can be: those in flight (``concurrency``),
    and those sent whose outcome is not yet on disk: a batch being written and
    the next one filling, each at most ``RESULT_BATCH`` plus one result from
    every other send that finished while the sends waited for the disk. A
    message never handed was never written: the next tick plans it again.
    """
    waiting = CHUNKS_IN_FLIGHT * concurrency
    return concurrency + 2 * (RESULT_BATCH + waiting)


@dataclass
class Outgoing:
    """The messages of one tick: jobs still to build, and a few already built.

    ``records`` holds each message's ``sending`` record, written (see
    :class:`OutboxWriter`) just before the message is handed to the transport.
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
        journal = OutboxWriter(
            self.store,
            outgoing.records,
            now,
            tally,
            lambda record, result: self._settle(record, result, now, tally),
        )
        marking = Marking(self.transport, journal, self.copies)

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
            keep = None
            if claims.claimer(self.store) is not None:
                keep = functools.partial(self._left_to_send, outgoing, now, tally)
            walk = build_chunks(composer, self._walk(outgoing), keep)
            async with contextlib.aclosing(walk) as chunks:
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

    def _walk(self, outgoing: Outgoing) -> list[Job]:
        """The jobs in the order this daemon sends them: the planner's, or on a store
        several daemons share, from this daemon's starting point round (see
        :func:`toma.store.claims.starting_point`)."""
        jobs = outgoing.jobs
        number = getattr(self.store, "daemon_number", None)
        if claims.claimer(self.store) is None or not isinstance(number, int):
            return jobs
        start = claims.starting_point(len(jobs), number)
        return jobs[start:] + jobs[:start]

    async def _left_to_send(
        self, outgoing: Outgoing, now: datetime, tally: Tally, jobs: list[Job]
    ) -> list[Job]:
        """Of a chunk about to be built, the jobs no other daemon has handed over yet
        (:mod:`toma.daemon.claiming`); the others count as withheld, as a lost claim does."""
        left = await asyncio.to_thread(left_to_send, self.store, [job.key for job in jobs], now)
        if len(left) == len(jobs):
            return jobs
        for job in jobs:
            if job.key not in left:
                outgoing.records.pop(job.key, None)
        tally.withheld += len(jobs) - len(left)
        log.info("sent by other daemons", extra=fields(messages=len(jobs) - len(left)))
        return [job for job in jobs if job.key in left]

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
