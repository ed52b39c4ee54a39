"""The dashboard's plan, kept up to date contact by contact, is the plan of the store now.

Each write below comes from another store instance (as from the daemon or a
command in another process); after each, the plan the dashboard shows must be
exactly what planning the whole store afresh gives at the plan's moment, while
only the contacts written to were planned again.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.projects import make_project, tick
from toma.config import Config, load_config
from toma.core.contacts import Status, make_contact
from toma.core.invoices import make_invoice
from toma.core.outbox import MessageState, advance, new_record, sequence_key
from toma.inbox.handwritten import contacted_key
from toma.reports.plan import Row, upcoming
from toma.store import CONTACTS, INVOICES, MESSAGES, SYNC, Store, open_store
from toma.store.records import contacts as addressbook
from toma.store.records import enrolments as enrolled
from toma.store.records import invoices as billing
from toma.timeutil import FixedClock, iso
from toma.web.planview import PLAN_DAYS, PLAN_FRESHENED, PLAN_KEPT, PlanView
from toma.web.snapshot import Snapshot

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo")
PEOPLE = [f"p{n}@example.org" for n in range(12)]
INVOICES_SECTION = """
[invoices]
stages = [{ at = "-3d", template = "hello.md" }, { at = "7d", template = "hello.md" }]
thank_you = "hello.md"
"""


def make(folder: Path) -> Path:
    """Twelve contacts in three zones, three steps a week apart, the first sent; invoices."""
    config = make_project(
        folder, steps=(("first", "0h"), ("second", "1w"), ("third", "2w")), now=NOW
    )
    with config.open("a", encoding="utf-8") as file:
        file.write(INVOICES_SECTION)
    with open_store(folder / "var" / "data") as store:
        with store.transaction() as tx:
            for n, email in enumerate(PEOPLE):
                contact = make_contact(
                    email, first_name=f"P{n}", timezone=ZONES[n % 3], tags=["friend"]
                )
                tx.put(CONTACTS, contact.email, contact.to_doc())
        for n, email in enumerate(PEOPLE[:4]):
            issued = date(2026, 2, 1) + timedelta(days=7 * n)
            billing.add(
                store,
                make_invoice(
                    f"2026-{n:03d}",
                    email,
                    "100.00",
                    "EUR",
                    issued=issued,
                    due=issued + timedelta(14),
                ),
            )
    tick(config, NOW)
    return config


@dataclass
class Viewed:
    config: Config
    store: Store  # the dashboard's own instance
    other: Store  # another instance, writing as another process would
    view: PlanView
    snapshot: Snapshot

    def planned(self, now: datetime) -> list[Row]:
        self.store.refresh()
        self.snapshot.sync(self.store)
        return self.view.planned(self.snapshot, self.store, now).rows

    def afresh(self, at: datetime) -> list[Row]:
        """The whole store planned from nothing at ``at``, by a store instance of its own."""
        with open_store(self.config.paths.data) as store:
            return upcoming(store, self.config, now=at, until=at + timedelta(days=PLAN_DAYS))


@pytest.fixture
def viewed(tmp_path: Path) -> Iterator[Viewed]:
    # On a thread of its own: the tick runs an event loop, and Playwright's may run here.
    with ThreadPoolExecutor(1) as pool:
        config_path = pool.submit(make, tmp_path / "project").result()
    config = load_config(config_path)
    with open_store(config.paths.data) as store, open_store(config.paths.data) as other:
        yield Viewed(config, store, other, PlanView(config), Snapshot())


def sent(store: Store, email: str, step: str, at: datetime) -> None:
    """What a tick writes when it sends ``step`` to ``email``."""
    key = sequence_key(email, "keep", step)
    record = new_record(
        key=key,
        contact=email,
        kind="sequence",
        ref=f"keep/{step}",
        template="hello.md",
        due_at=at,
        at=at,
        sequence="keep",
        step=step,
        state=MessageState.SENDING,
    )
    done = advance(record, MessageState.SENT, at=at, message_id=f"<{step}.{email}>")
    with store.transaction() as tx:
        tx.put(MESSAGES, key, done.to_doc())


def test_each_write_plans_again_only_whom_it_touched_and_the_plan_is_the_stores(
    viewed: Viewed,
) -> None:
    at = NOW + timedelta(minutes=5)
    first = viewed.planned(at)
    assert first == viewed.afresh(at)
    assert {row.contact for row in first} >= set(PEOPLE[:8])
    assert {row.kind for row in first} == {"sequence", "invoice"}
    assert viewed.view.replanned == 0
    other = viewed.other
    later = at + timedelta(seconds=30)

    def pause(store: Store) -> None:
        addressbook.set_status(store, PEOPLE[0], Status.PAUSED, now=later, reason="test")

    def unenrol(store: Store) -> None:
        enrolled.unenrol(store, PEOPLE[1], "keep")

    def send(store: Store) -> None:
        sent(store, PEOPLE[2], "second", later)

    def new_contact(store: Store) -> None:  # the next tick would enrol her by her tag
        contact = make_contact("new@example.org", timezone="Asia/Tokyo", tags=["friend"])
        with store.transaction() as tx:
            tx.put(CONTACTS, contact.email, contact.to_doc())

    def paid(store: Store) -> None:
        billing.settle(store, "2026-003", paid_on=date(2026, 3, 2), now=later)

    def handwritten(store: Store) -> None:
        with store.transaction() as tx:
            tx.put(SYNC, contacted_key(PEOPLE[7]), {"at": iso(later), "conversation": "x"})

    def forgotten_record(store: Store) -> None:  # its step is planned again
        with store.transaction() as tx:
            tx.delete(MESSAGES, sequence_key(PEOPLE[6], "keep", "first"))

    def invoice_moved(store: Store) -> None:
        # From PEOPLE[2] to PEOPLE[7]; its first reminder, sent, stays recorded as PEOPLE[2]'s.
        with store.transaction() as tx:
            doc = tx.get(INVOICES, "2026-002")
            assert doc is not None
            tx.put(INVOICES, "2026-002", {**doc, "contact": PEOPLE[7]})

    def new_invoice(store: Store) -> None:
        billing.add(
            store,
            make_invoice(
                "2026-100", PEOPLE[8], "5.00", "EUR", issued=date(2026, 3, 1), due=date(2026, 3, 4)
            ),
        )

    # Each write, how many contacts it touches, and whether it changes what is planned
    # (mail written by hand moves nothing here: the steps are a week apart).
    writes = [
        (pause, 1, True),
        (unenrol, 1, True),
        (send, 1, True),
        (new_contact, 1, True),
        (paid, 1, True),
        (forgotten_record, 1, True),
        (invoice_moved, 2, True),
        (handwritten, 1, False),
        (new_invoice, 1, True),
    ]
    before = first
    replanned = 0
    for write, whom, changes in writes:
        write(other)
        now = viewed.planned(later)
        assert now == viewed.afresh(at), write.__name__
        assert (now != before) is changes, write.__name__
        replanned += whom
        assert viewed.view.replanned == replanned, write.__name__
        before = now
    assert not any(row.contact == PEOPLE[0] for row in before)


def test_a_plan_growing_old_is_made_again_for_everyone(viewed: Viewed) -> None:
    at = NOW + timedelta(minutes=5)
    view = viewed.view
    assert not view.stale(at)  # no plan yet: the first page makes it
    viewed.planned(at)
    assert not view.stale(at + PLAN_FRESHENED - timedelta(seconds=1))
    assert view.stale(at + PLAN_FRESHENED)
    sent(viewed.other, PEOPLE[2], "second", at)
    older = at + PLAN_KEPT
    assert viewed.planned(older) == viewed.afresh(older)
    assert view.replanned == 0  # planned again for everyone, not contact by contact
    assert not view.stale(older)


def test_a_plan_made_a_part_at_a_time_between_writes_is_the_stores(viewed: Viewed) -> None:
    at = NOW + timedelta(minutes=5)
    old = viewed.planned(at)
    view, other = viewed.view, viewed.other
    later = at + PLAN_FRESHENED
    assert view.stale(later)
    view.begin(later, steps=4)
    assert view.making and not view.stale(later)

    def pause_many() -> None:  # some of them planned already at the new moment
        for email in PEOPLE[3:12]:
            addressbook.set_status(other, email, Status.PAUSED, now=later)

    writes = [
        lambda: sent(other, PEOPLE[2], "second", later),
        lambda: enrolled.unenrol(other, PEOPLE[1], "keep"),
        pause_many,
    ]
    steps = 0
    while True:
        if steps < len(writes):
            writes[steps]()
        viewed.store.refresh()
        viewed.snapshot.sync(viewed.store)
        more = view.step(viewed.snapshot, viewed.store, later)
        steps += 1
        shown = view.planned(viewed.snapshot, viewed.store, later)
        if not more:
            break
        # Meanwhile the pages show the plan kept, its contacts written to planned again.
        assert shown.at == at and shown.rows == viewed.afresh(at)
        assert steps < 20
    assert steps >= 4  # twelve contacts, three a step, and some planned again
    assert not view.making
    assert shown.at == later
    assert shown.rows == viewed.afresh(later) != old


def test_a_plan_made_a_part_at_a_time_gives_way_to_a_newer_one(viewed: Viewed) -> None:
    at = NOW + timedelta(minutes=5)
    viewed.planned(at)
    view = viewed.view
    view.begin(at + PLAN_FRESHENED, steps=4)
    view.step(viewed.snapshot, viewed.store, at + PLAN_FRESHENED)
    too_late = at + PLAN_KEPT  # a page plans everyone: the plan being made is dropped
    assert viewed.planned(too_late) == viewed.afresh(too_late)
    assert not view.making
    assert not view.step(viewed.snapshot, viewed.store, too_late)


def test_edited_sequence_files_plan_everyone_again(viewed: Viewed) -> None:
    at = NOW + timedelta(minutes=5)
    viewed.planned(at)
    sequence = viewed.config.paths.sequences / "keep.toml"
    sequence.write_text(
        sequence.read_text(encoding="utf-8").replace('after = "1w"', 'after = "2d"'),
        encoding="utf-8",
    )
    later = at + timedelta(minutes=1)
    assert viewed.planned(later) == viewed.afresh(later)
    assert viewed.view.replanned == 0


def test_the_dashboard_refreshes_a_plan_growing_old_without_a_page(tmp_path: Path) -> None:
    from toma.mail.unsubscribe import SECRET_FILE, load_or_create_secret
    from toma.web.pages import Dashboard

    with ThreadPoolExecutor(1) as pool:
        config_path = pool.submit(make, tmp_path / "project").result()
    config = load_config(config_path)
    clock = FixedClock(NOW + timedelta(minutes=5))
    dashboard = Dashboard(config, clock, load_or_create_secret(config.paths.data / SECRET_FILE))
    view = dashboard.plan_view
    try:
        dashboard.run_on_reader(dashboard.refresh)  # after the warm-up
        assert not view.stale(clock.now())
        clock.advance(PLAN_FRESHENED)
        assert view.stale(clock.now())
        dashboard.run_on_reader(dashboard.refresh)
        for _ in range(20):  # each step runs after the tasks queued before it
            if not dashboard.run_on_reader(lambda: view.making):
                break
        assert not view.making and not view.stale(clock.now())
        planned = dashboard.run_on_reader(
            lambda: dashboard.upcoming(dashboard.reader(), clock.now())
        )
        assert planned.at == clock.now()
    finally:
        dashboard.close()
