"""The last check before the hand-over: a contact changed by someone else mid-tick.

The server holds every message at DATA until the test lets it go, so a tick
has messages in flight (recorded handed) and messages not yet begun (not yet
written at all) while another TinyStore (another process, or the one-click
endpoint) unsubscribes, forgets or pauses people.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP as SMTPD
from aiosmtpd.smtp import Envelope, Session

from toma.config import Smtp
from toma.core.contacts import Status
from toma.core.outbox import HANDED, sequence_key
from toma.daemon.sending import CHUNKS_IN_FLIGHT
from toma.daemon.tick import TickReport
from toma.daemon.worker import Worker
from toma.reports.status import gather
from toma.store import CONTACTS, ENROLMENTS, MESSAGES, open_store
from toma.store.records import contacts as addressbook

from .conftest import RecordingHandler, SmtpdOptions
from .projects import make_project, recipient

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
# More than the sends in flight: some are still to begin when DATA is reached.
CONTACTS_IN_TICK = 64


class GatedHandler(RecordingHandler):
    """Takes in each body, then answers only once the test opens the gate."""

    def __init__(self, options: SmtpdOptions) -> None:
        super().__init__(options)
        self.arrived = threading.Event()
        self._gate: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.held: list[str] = []

    async def handle_DATA(self, server: SMTPD, session: Session, envelope: Envelope) -> str:
        if self._gate is None:
            self._gate, self._loop = asyncio.Event(), asyncio.get_running_loop()
        self.held.extend(envelope.rcpt_tos)
        self.arrived.set()
        await self._gate.wait()
        return await super().handle_DATA(server, session, envelope)

    def open(self) -> None:
        assert self._loop is not None and self._gate is not None
        self._loop.call_soon_threadsafe(self._gate.set)


@pytest.fixture
def smtpd_handler(smtpd_options: SmtpdOptions) -> GatedHandler:
    return GatedHandler(smtpd_options)


def key(number: int) -> str:
    return sequence_key(recipient(number), "keep", "hello")


def start_tick(config: Path, now: datetime) -> tuple[threading.Thread, list[TickReport]]:
    reports: list[TickReport] = []

    def run() -> None:
        store = open_store(config.parent / "var" / "data")
        try:
            reports.append(Worker(config, store).run_once(now))
        finally:
            store.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, reports


def test_unsubscribe_forget_and_pause_mid_tick_stop_what_is_not_yet_handed(
    tmp_path: Path, smtp_config: Smtp, smtpd_handler: GatedHandler
) -> None:
    config = make_project(tmp_path, smtp=smtp_config, contacts=CONTACTS_IN_TICK, now=NOW)
    thread, reports = start_tick(config, NOW)
    other = open_store(tmp_path / "var" / "data")  # another writer, as another process is
    try:
        assert smtpd_handler.arrived.wait(30), "no message reached DATA"
        other.refresh()
        handover = {
            doc["contact"]: doc.get("handover")
            for _k, doc in other.all(MESSAGES)
            if doc["state"] == "sending"
        }
        in_data = [address for address, stage in handover.items() if stage == HANDED]
        unwritten = sorted(
            recipient(n) for n in range(CONTACTS_IN_TICK) if other.get(MESSAGES, key(n)) is None
        )
        # A tick in full flight: messages at DATA, and others still to begin; nothing is
        # written ahead of its hand-over.
        assert set(handover.values()) == {HANDED}, handover
        assert 0 < len(in_data) <= CHUNKS_IN_FLIGHT * smtp_config.concurrency, in_data
        assert len(unwritten) >= 6, unwritten
        unsubscribed = [unwritten[0], unwritten[3]]
        forgotten = [unwritten[1], unwritten[4], in_data[0]]
        paused = [unwritten[2], unwritten[5]]
        for address in unsubscribed:
            addressbook.set_status(
                other, address, Status.UNSUBSCRIBED, now=NOW, reason="one-click unsubscribe"
            )
        for address in forgotten:
            addressbook.forget(other, address, now=NOW)
        for address in paused:
            addressbook.set_status(other, address, Status.PAUSED, now=NOW)
    finally:
        smtpd_handler.open()
        thread.join(60)
    assert not thread.is_alive()
    (report,) = reports
    assert not report.problems, report.problems

    received = Counter(rcpt for message in smtpd_handler.messages for rcpt in message.rcpt_tos)
    assert set(received.values()) == {1}
    stopped = {*unsubscribed, *forgotten[:2], *paused}
    # Already at DATA when forgotten: it went (nobody can call it back), and nothing
    # about them was written again.
    assert in_data[0] in received
    assert not stopped & set(received), stopped & set(received)
    assert set(received) == {recipient(n) for n in range(CONTACTS_IN_TICK)} - stopped
    assert report.withheld == len(stopped)
    assert report.sent == CONTACTS_IN_TICK - len(stopped)  # the forgotten one at DATA too

    other.refresh()
    assert f"{len(stopped)} withheld by the last check" in "\n".join(gather(other).lines())
    by_contact = {doc["contact"]: doc for _k, doc in other.all(MESSAGES)}
    for address in unsubscribed:
        assert by_contact[address]["state"] == "skipped"
        assert "unsubscribed" in by_contact[address]["detail"]
    for address in forgotten:
        assert address not in by_contact, f"{address}'s record was re-created"
        assert other.get(CONTACTS, address) is None
        assert not [k for k, d in other.all(ENROLMENTS) if d.get("contact") == address]
    for address in paused:
        assert address not in by_contact  # as before the tick: it goes when resumed

    # Resumed: the paused people get their step; nobody else gets anything again.
    for address in paused:
        addressbook.set_status(other, address, Status.ACTIVE, now=NOW)
    other.close()
    thread, reports = start_tick(config, NOW + timedelta(minutes=5))
    smtpd_handler.open()
    thread.join(60)
    received = Counter(rcpt for message in smtpd_handler.messages for rcpt in message.rcpt_tos)
    assert set(received.values()) == {1}
    assert set(paused) <= set(received)
    assert not {*unsubscribed, *forgotten[:2]} & set(received)
    store = open_store(tmp_path / "var" / "data")
    try:
        assert not {doc["contact"] for _k, doc in store.all(MESSAGES)} & set(forgotten)
        assert not {doc["email"] for _k, doc in store.all(CONTACTS)} & set(forgotten)
    finally:
        store.close()
