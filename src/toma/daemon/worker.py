"""The daemon: every tick reads the files afresh, plans, sends and records.

Theory of operation
-------------------
A tick at ``now``:

1. reads the inbox (see :mod:`toma.inbox.sync`): replies, bounces and the like
   change what is sent next;
2. reads config.toml and every sequence file (an edit takes effect without a
   restart; a broken sequence file is reported and its sequence held, the
   others go on; a broken config.toml skips the tick: nothing can be trusted);
3. enrols every active contact carrying a sequence's ``enroll_tag``;
4. plans invoice reminders first (they wait for nobody), then asks the pure
   planner what sequence steps are due, with the coming reminders counted by
   the pace; records the steps judged too late as ``skipped``; adds the
   scheduled newsletter issues and the notices waiting to go;
5. hands all of it to :class:`~toma.daemon.sending.Sender`, which writes each
   message ``sending`` before its first byte goes to the server and records
   every outcome (a template error holds that message only, reported);
6. writes a summary of the tick for ``toma status``.

At most once follows from step 5: a crash leaves ``sending`` records behind,
which :meth:`Worker.recover` settles at the next start (the daemon lock
guarantees nobody else was sending): planned again when the transport had not
begun to hand the message over, ``unknown`` when it had; and the planner never
plans a key that was ever attempted.

Only this module and the CLI read the clock; a tick is given its ``now``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl
import threading
import time as monotonic
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType

import schedule

from toma import eventloop
from toma.config import Config, load_config
from toma.config.senders import each_sender, route, unknown_owners
from toma.core.agenda import PACED_AHEAD, decide
from toma.core.daylimit import counts_today, room_left
from toma.core.newsletters import Newsletter
from toma.core.outbox import (
    MessageState,
    OutboxRecord,
    recover_after_crash,
)
from toma.daemon import scoped
from toma.daemon.cache import PlanCache
from toma.daemon.mailboxes import copy_sent_all, sync_mailboxes
from toma.daemon.senders import day_limited, first, owners_of, split
from toma.daemon.sending import Outgoing, Sender
from toma.daemon.serving import serving_if_asked
from toma.daemon.tick import (
    TickReport,
    build_notices,
    enrol_by_tag,
    plan_invoice_jobs,
    plan_newsletter_jobs,
    plan_sequence_jobs,
    record_skipped,
)
from toma.errors import TomaError
from toma.logs import fields
from toma.project.sequences import read_sequences
from toma.sdnotify import pulsing
from toma.store import (
    MESSAGES,
    SYNC,
    Store,
    claims,
)
from toma.store.records import contacts as addressbook
from toma.store.records import due, logins, outbox
from toma.store.records import invoices as billing
from toma.store.records import newsletters as broadcast
from toma.timeutil import Clock, iso
from toma.transports import Result, Transport, transport_for

log = logging.getLogger(__name__)

STATUS_KEY = "daemon"
TransportFactory = Callable[[Config], Transport]


class Worker:
    """The daemon's work on one store: recovery, ticks, and the loop around them."""

    def __init__(
        self,
        config_path: Path,
        store: Store,
        *,
        transport_factory: TransportFactory | None = None,
        ssl_context: ssl.SSLContext | None = None,
        in_tick_retry: timedelta = timedelta(seconds=20),
        sync_inbox: bool = True,
    ) -> None:
        self.sync_inbox = sync_inbox
        self.progress: Callable[[Result], None] | None = None
        # Called while the daemon is alive: every turn of its loop, and every second
        # of a tick while the tick's event loop turns (systemd's watchdog, toma.sdnotify).
        self.alive: Callable[[], object] | None = None
        self.config_path = config_path
        self.store = store
        self._plan_cache = PlanCache()
        # A store that says who can be due is not read whole (toma.daemon.scoped).
        self._scoped = due.indexed(store)
        self._frozen = False  # decoded store, kept from tick to tick
        self._transport_factory = transport_factory
        self._ssl_context = ssl_context
        self.in_tick_retry = in_tick_retry
        self._sender: Sender | None = None  # while sending: what a stop must reach
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stopping = threading.Event()

    # --- recovery ------------------------------------------------------------

    def recover(self, now: datetime, *, starting: bool = True) -> int:
        """Settle every ``sending`` record a crash left: planned again, or ``unknown``.

        One never handed to the server goes at the next tick; one that was may
        have gone, and is ``unknown`` (see :func:`toma.core.outbox.recover_after_crash`).
        On a store several daemons share, only a dead daemon's records, at every
        tick (:func:`toma.store.claims.abandoned`). Returns how many are ``unknown``.
        """
        self.store.refresh()
        with self.store.transaction() as tx:
            recovered = recover_after_crash(claims.abandoned(tx, starting=starting), at=now)
            for record in recovered:
                if tx.get(MESSAGES, record.key) is not None:  # not forgotten meanwhile
                    tx.put(MESSAGES, record.key, record.to_doc())
        for record in recovered:
            if record.state is MessageState.UNKNOWN:
                log.warning(
                    "unknown after crash",
                    extra=fields(
                        contact=record.contact, ref=record.ref, message_id=record.message_id
                    ),
                )
            else:
                log.info(
                    "planned again after crash",
                    extra=fields(contact=record.contact, ref=record.ref),
                )
        return sum(1 for record in recovered if record.state is MessageState.UNKNOWN)

    # --- one tick ------------------------------------------------------------

    async def tick(self, now: datetime) -> TickReport:
        started = monotonic.monotonic()
        report = TickReport(now=iso(now))
        try:
            await self._tick(now, report)
        except TomaError as exc:
            report.problems.append(str(exc))
            log.error("tick failed", extra=fields(error=str(exc)))
        report.seconds = round(monotonic.monotonic() - started, 3)
        self._write_status(report)
        # A tick that left work undone or in doubt is worth a look: warning, not info.
        log.log(
            logging.WARNING if report.failed or report.unknown or report.problems else logging.INFO,
            "tick done",
            extra=fields(
                now=report.now,
                sent=report.sent,
                failed=report.failed,
                retrying=report.retrying,
                unknown=report.unknown,
                skipped=report.skipped,
                seconds=report.seconds,
                deciding=report.deciding,
            ),
        )
        return report

    async def _tick(self, now: datetime, report: TickReport) -> None:
        started = monotonic.monotonic()
        config = load_config(self.config_path)
        if self.sync_inbox:
            await self._sync_inbox(config, now, report)
        files = read_sequences(config)
        report.held = sorted(files.held)
        for problem in files.problems:
            report.problems.append(str(problem))
            log.error("sequence held", extra=fields(error=str(problem)))

        if claims.shared(self.store):
            self.recover(now, starting=False)  # what a daemon that died left in flight
        self.store.refresh()
        invoices = None
        if self._scoped:
            # A large store: only the contacts that can have something due are read.
            report.enrolled = scoped.enrol_by_tag(self.store, files.sequences, now)
            invoices = list(billing.all_invoices(self.store))
            state = scoped.plan_state(self.store, config, files, now, invoices)
        else:
            state = self._plan_cache.state(self.store, config, files)
            report.enrolled = enrol_by_tag(self.store, state, files.sequences, now)
            if report.enrolled:
                state = self._plan_cache.state(self.store, config, files)
            if not self._frozen:
                # The decoded store lives as long as the daemon: keep the collector
                # from walking it again at every collection.
                gc.freeze()
                self._frozen = True
        # Invoice reminders first: they wait for nobody, and a keep-in-touch message
        # must not land on the day of one (the pace counts them, even when planned).
        invoice_plan = billing.reminders(
            self.store,
            config,
            contacts=state.contacts,
            history=state.history,
            now=now,
            until=now + PACED_AHEAD,
            invoices=invoices,
        )
        decided = decide(state, invoice_plan, now)
        for problem in decided.problems:
            report.problems.append(str(problem))
            log.error("sequence not planned", extra=fields(error=str(problem)))
        record_skipped(self.store, decided.skipped, state.history, now)
        report.skipped = len(decided.skipped)
        report.due = len(decided.due)

        outgoing = Outgoing()
        plan_invoice_jobs(
            self.store, invoice_plan, state.contacts, state.history, now, report, outgoing
        )
        plan_sequence_jobs(
            decided.due, state.contacts, state.history, now, outgoing, files.sequences
        )
        plan_newsletter_jobs(
            self.store, config, state.contacts, state.history, now, report, outgoing
        )
        build_notices(self.store, config, state.contacts, state.history, now, outgoing)
        report.deciding = round(monotonic.monotonic() - started, 3)
        if outgoing.records:
            await self._send(
                config,
                outgoing,
                now,
                report,
                owners_of(state.contacts.values()),
                history=state.history.values(),
            )
        await self._copy_sent(config, now)

    async def _sync_inbox(self, config: Config, now: datetime, report: TickReport) -> None:
        await sync_mailboxes(self.store, config, now, report, self.stopping.is_set)

    async def _send(
        self,
        config: Config,
        outgoing: Outgoing,
        now: datetime,
        report: TickReport,
        owners: Mapping[str, str],
        history: Iterable[OutboxRecord] = (),
    ) -> None:
        """Each sender's share of ``outgoing`` through its own transport, one after another,
        each within its provider's daily limit (``[smtp] per_day``; ``history`` the records
        that count against it)."""
        parts, held = split(outgoing, owners, config)
        if held:
            problems = unknown_owners(
                config, ((r.contact, owners.get(r.contact, "")) for r in held)
            )
            for problem in problems:
                report.problems.append(str(problem))
                log.error("held: no such sender", extra=fields(error=str(problem)))
        # Read through the whole history only where a daily limit asks for it.
        limited = day_limited(config)
        recent: list[OutboxRecord] = []
        if limited and self._scoped:
            recent = outbox.handed_in_day(self.store, now)
            # Whose sender sent them: the tick read only the contacts it plans.
            whose = {record.contact for record in recent} - owners.keys()
            owners = {**owners_of(addressbook.of_addresses(self.store, whose)), **owners}
        elif limited:
            recent = [record for record in history if counts_today(record, now)]
        for seen_by, part in parts:
            if self.stopping.is_set():
                break
            part = self._within_day(seen_by, part, recent, owners, now)
            if part.records:
                await self._send_as(seen_by, part, now, report)

    def _within_day(
        self,
        config: Config,
        part: Outgoing,
        recent: list[OutboxRecord],
        owners: Mapping[str, str],
        now: datetime,
    ) -> Outgoing:
        """``part`` cut to what its sender's daily limit leaves room for; the rest stays
        planned for a later tick (see :mod:`toma.core.daylimit`)."""
        if config.transport.kind != "smtp" or config.smtp.per_day <= 0:
            return part
        routes = route({record.contact for record in recent}, owners, config)
        room = room_left(
            recent, now, config.smtp.per_day, lambda r: routes[r.contact] == config.sender
        )
        if room is None or len(part.records) <= room:
            return part
        kept, waiting = first(part, room)
        log.warning(
            "daily limit reached",
            extra=fields(sender=config.owner.email, per_day=config.smtp.per_day, waiting=waiting),
        )
        return kept

    async def _send_as(
        self, config: Config, outgoing: Outgoing, now: datetime, report: TickReport
    ) -> None:
        def observe(result: Result) -> None:
            report.observe(result)
            if self.progress is not None:
                self.progress(result)

        refused = logins.refusals(self.store)  # passwords refused lately: not tried again
        before = refused.to_doc()
        transport = (
            self._transport_factory(config)
            if self._transport_factory is not None
            else transport_for(config, ssl_context=self._ssl_context, refusals=refused, now=now)
        )
        try:
            async with transport:
                sender = Sender(
                    self.store,
                    config,
                    self.config_path,
                    transport,
                    retry_within=self.in_tick_retry,
                    progress=observe,
                )
                self._sender, self._loop = sender, asyncio.get_running_loop()
                if self.stopping.is_set():
                    sender.stop.set()
                try:
                    await sender.send(outgoing, now, report)
                finally:
                    self._sender = self._loop = None
        finally:
            if refused.to_doc() != before:
                try:
                    logins.keep(self.store, refused)
                except TomaError as exc:
                    log.warning("cannot keep the refused logins", extra=fields(error=str(exc)))

    async def send_newsletter(
        self, issue: Newsletter, now: datetime, *, on_start: Callable[[int], None] | None = None
    ) -> TickReport:
        """Send ``issue`` now to those whose window is open (``toma newsletter send``).

        The others are the daemon's, at the tick that finds their window open
        (the command gives the issue to them with :func:`~toma.store.records.newsletters.schedule`).
        """
        report = TickReport(now=iso(now))
        config = load_config(self.config_path)
        self.store.refresh()
        contacts = list(addressbook.all_contacts(self.store))
        history = outbox.of_issue(self.store, issue.name)
        recent = outbox.handed_in_day(self.store, now) if day_limited(config) else []
        outgoing = Outgoing()
        for item in broadcast.plan_issue(issue, config, contacts, history, now=now):
            outgoing.add_job(item.record, item.job)
        report.due = len(outgoing.jobs)
        if on_start is not None:
            on_start(report.due)
        if outgoing.jobs:
            await self._send(config, outgoing, now, report, owners_of(contacts), history=recent)
            await self._copy_sent(config, now)
        return report

    async def _copy_sent(self, config: Config, now: datetime) -> None:
        await copy_sent_all(self.store, config, now, self.stopping.is_set)

    def _write_status(self, report: TickReport) -> None:
        try:
            with self.store.transaction() as tx:
                tx.put(SYNC, STATUS_KEY, asdict(report))
        except TomaError as exc:
            log.error("cannot record the tick", extra=fields(error=str(exc)))

    # --- the loop ------------------------------------------------------------

    def run_once(self, now: datetime) -> TickReport:
        with self.signals():
            return eventloop.run(self.tick(now))

    def run_forever(
        self, clock: Clock, every: timedelta, *, started: Callable[[], object] | None = None
    ) -> None:
        """Tick now and then every ``every`` until SIGTERM or SIGINT; finish the tick in flight.

        Beside the ticks: an IMAP IDLE watcher (where the inbox is IMAP) wakes
        an extra tick when mail arrives, and the one-click unsubscribe endpoint
        (where ``[unsubscribe] base_url`` is set) records each unsubscribe in
        the store itself, through a store instance of its own, before it
        answers; the tick reads it from the store like any other change.
        """
        scheduler = schedule.Scheduler()

        def job() -> None:
            self._guarded_tick(clock)

        scheduler.every(max(1, int(every.total_seconds()))).seconds.do(job)
        wake = threading.Event()
        config = load_config(self.config_path)
        with self.signals(), _watching(config, wake), serving_if_asked(config, clock):
            log.info(
                "daemon started",
                extra=fields(config=str(self.config_path), every=f"{every.total_seconds():g}s"),
            )
            if started is not None:
                started()  # signals are handled from here on: systemd's READY=1
            job()
            while not self.stopping.is_set():
                scheduler.run_pending()
                if wake.is_set():
                    wake.clear()
                    job()
                if self.alive is not None:
                    self.alive()
                idle = scheduler.idle_seconds
                self.stopping.wait(timeout=min(0.5, max(0.05, idle if idle is not None else 0.5)))
        log.info("daemon stopped")

    def _guarded_tick(self, clock: Clock) -> None:
        if self.stopping.is_set():
            return
        try:
            eventloop.run(pulsing(self.tick(clock.now()), self.alive))
        except Exception:
            # The daemon keeps serving: the next tick starts afresh from the files.
            log.exception("tick crashed")

    def request_stop(self) -> None:
        self.stopping.set()
        loop, sender = self._loop, self._sender
        if loop is not None and sender is not None:
            loop.call_soon_threadsafe(sender.stop.set)

    @contextmanager
    def signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT stop new sends; the ones in flight finish and are recorded."""

        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("stopping", extra=fields(signal=signal.Signals(signum).name))
            self.request_stop()

        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


@contextmanager
def _watching(config: Config, wake: threading.Event) -> Iterator[None]:
    """An IMAP IDLE watcher per sender's mailbox, setting ``wake`` when mail arrives (IMAP
    inboxes only)."""
    if config.inbox.kind != "imap":
        yield
        return
    from toma.inbox.imapwatch import ImapWatcher

    watchers = [ImapWatcher(seen_by.imap, wake.set) for seen_by in each_sender(config)]
    for watcher in watchers:
        watcher.start()
    try:
        yield
    finally:
        for watcher in watchers:
            watcher.stop()
