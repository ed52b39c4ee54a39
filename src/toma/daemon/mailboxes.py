"""The daemon's reading of the mailboxes: each sender's inbox, then each sender's Sent copy.

Each runs in a thread (the IMAP libraries block) within the inbox budget, and stops
between two messages on SIGTERM (``should_stop``). One mailbox out of reach is
reported and skipped: the sending and the other senders' mailboxes go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from toma.config import Config
from toma.config.senders import each_sender
from toma.daemon.tick import TickReport
from toma.errors import TomaError
from toma.logs import fields
from toma.store import Store

log = logging.getLogger(__name__)


async def sync_mailboxes(
    store: Store, config: Config, now: datetime, report: TickReport, should_stop: Callable[[], bool]
) -> None:
    """Read what is new in each sender's mailbox (see :mod:`toma.inbox.sync`)."""
    # A Maildir inbox is one folder for everyone; over IMAP each sender has a mailbox.
    views = each_sender(config) if config.inbox.kind == "imap" else (config,)
    for seen_by in views:
        if should_stop():
            break
        await _sync_one(store, seen_by, now, report, should_stop)


async def _sync_one(
    store: Store, config: Config, now: datetime, report: TickReport, should_stop: Callable[[], bool]
) -> None:
    from toma.inbox.base import InboxUnavailable
    from toma.inbox.sync import budget_for, source_for, sync

    where = f"inbox of {config.sender}" if config.sender else "inbox"
    try:
        source = source_for(config)
        try:
            # Within a budget and stopping on SIGTERM: due mail goes out this tick
            # however much is waiting in the inbox; the rest is read next tick.
            inbox = await asyncio.to_thread(
                sync,
                store,
                config,
                source,
                now=now,
                should_stop=should_stop,
                budget=budget_for(config),
            )
        finally:
            source.close()
    except TomaError as exc:
        # The inbox being out of reach must not stop the sending, nor another's inbox.
        report.problems.append(f"{where}: {exc}")
        if isinstance(exc, InboxUnavailable):
            report.temporary.append(f"{where}: {exc}")
        log.error("inbox sync failed", extra=fields(error=str(exc), sender=config.sender))
        return
    report.inbound += inbox.recorded


async def copy_sent_all(
    store: Store, config: Config, now: datetime, should_stop: Callable[[], bool]
) -> None:
    """The Sent copy of what went (toma.inbox.sentcopy), each sender's into its own Sent
    folder: its own step, after the send; what it cannot do now is done at a later tick,
    and it never touches a send."""
    from toma.inbox.sentcopy import copy_sent
    from toma.inbox.sync import budget_for

    for seen_by in each_sender(config):
        try:
            await asyncio.to_thread(
                copy_sent,
                store,
                seen_by,
                now,
                budget=budget_for(seen_by),
                should_stop=should_stop,
            )
        except TomaError as exc:
            log.warning("sent copy postponed", extra=fields(error=str(exc), sender=seen_by.sender))
