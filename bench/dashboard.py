"""Every dashboard page's time at 10k contacts with a year of history (target < 200 ms).

A project with N contacts (default 10,000) in three zones, each enrolled in three
sequences over the past year with the steps due by now sent (about 6 messages
each), a reply from one contact in ten, and an invoice for one in twenty. The
whole app is served by its real server on 127.0.0.1; as it starts, its reading
thread reads the store, indexes the fields the pages ask by, and makes the plan
and the calendar (that warm-up is timed first). Then each page is fetched over
HTTP: once, then five times (the median), then once more after a tick wrote,
from another store instance (as the daemon's process would), its report and
the plan's next send as sent, and again after a busy tick that sent the next
500 (each to another contact). Then the clock moves on with no write: the
reading thread plans everyone again between pages (at 2.5 min), a tenth of the
contacts a step, while a Plan page is fetched; and, late (a plan over 5 min
old that was not made again: a machine waking up), the Plan page does.
/healthz answers 503 here (no tick before the first). Figures are printed;
nothing is asserted.

    python bench/dashboard.py [--contacts 10000]

Measured on 2 shared cores (load 2.5-4 from other work: read every figure as
+-50%), 10k contacts, 80k messages; the code before and after in turns:

    before (0be1b34, its bench: its tick rewrote one message already sent)
    page          first   median of 5   after a tick
    Today         43-52 ms    9-24 ms   252-282 ms
    Plan         52-109 ms     1-3 ms   437-508 ms   (~205-218 ms on a quieter machine)
    Contact         212 ms  181-196 ms  139-200 ms
    Invoices    152-180 ms      164 ms  154-180 ms
    Invoice     114-146 ms  135-140 ms  129-138 ms
    the others under 25 ms

    after (this bench; after a tick / after 500 sent)
    page          first   median of 5   after a tick   after 500 sent
    Today         25 ms        9-11 ms       25 ms        41-59 ms
    Plan           2-3 ms        2 ms     18-25 ms        29-38 ms
    Contacts      17-18 ms     8-10 ms     15 ms          11-12 ms
    Contact       14-40 ms      2-4 ms      3-4 ms         2-3 ms
    Invoices      23-26 ms    16-18 ms    21-24 ms        18-22 ms
    Invoice        7-12 ms      2 ms        3-4 ms           2 ms
    the others under 12 ms; the old bench's tick on this code: Plan 19-31 ms
    warm-up 4.3-5.5 s (before: 6.8-7.1 s); memory of the app ~170 MB (before ~145 MB)
    the whole plan made again between pages in 10 steps: 331-397 ms in all, a step
    26-38 ms (in one task: 174-180 ms); a Plan page asked meanwhile 51-64 ms, then 3-4 ms
    the Plan page with a plan over 5 min old not made again: 141-207 ms

Where the time went, and what changed: the planner over everyone (~150 ms)
now runs only when the plan grows old, on the reading thread between pages;
after a write only the contacts it touched are planned again
(toma.web.planview). The Plan page keeps each row's HTML while the row is
planned (~55 ms for 2,300 rows before). The status report is tallied one
message at a time (toma.web.statusview; ~70 ms for 80k messages before). The
Contact, Invoice and Invoices pages asked the whole outbox for a contact's or
the invoices' messages: now an index of the snapshot answers
(toma.web.snapshot.Snapshot.where).
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from tick import write_project

from toma.config import load_config
from toma.core.contacts import make_contact
from toma.core.enrolments import Enrolment
from toma.core.invoices import make_invoice
from toma.core.outbox import MessageState, advance, new_record, sequence_key
from toma.daemon.worker import STATUS_KEY
from toma.reports.plan import Row, upcoming
from toma.store import CONTACTS, CONVERSATIONS, ENROLMENTS, INVOICES, MESSAGES, SYNC, TinyStore
from toma.timeutil import FixedClock, iso
from toma.web.app import build
from toma.web.oneclick import OneClick
from toma.web.pages import Dashboard
from toma.web.planview import PLAN_FRESHENED, PLAN_KEPT
from toma.web.server import WebServer

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo")
STEP_DAYS = 30  # bench/tick.py's sequences: steps s0, s1, s2 at 0, 30 and 60 days
BUSY = 500  # messages sent by a busy tick, each to another contact


def fill(folder: Path, count: int) -> dict[str, int]:
    store = TinyStore(folder / "var" / "data")
    sizes = dict.fromkeys((CONTACTS, ENROLMENTS, MESSAGES, CONVERSATIONS, INVOICES), 0)
    batch = 2000
    for start in range(0, count, batch):
        with store.transaction() as tx:
            for n in range(start, min(count, start + batch)):
                email = f"person{n}@example.org"
                contact = make_contact(
                    email,
                    first_name=f"P{n}",
                    last_name="Example",
                    company=f"Firm {n % 300}",
                    timezone=ZONES[n % 3],
                    tags=["a", "b", "c", f"group{n % 12}"],
                    fields={"met_where": "the fair", "met_why": "pricing"},
                    added_at=iso(NOW - timedelta(days=400)),
                )
                tx.put(CONTACTS, email, contact.to_doc())
                sizes[CONTACTS] += 1
                # Enrolled a year, half a year and up to two months ago.
                for name, ago in (("one", 360), ("two", 180), ("three", n % 60)):
                    enrolled_at = NOW - timedelta(days=ago + n % 30, hours=n % 7)
                    enrolment = Enrolment(email, name, enrolled_at, source="tag")
                    tx.put(ENROLMENTS, enrolment.key, enrolment.to_doc())
                    sizes[ENROLMENTS] += 1
                    for step in range(3):
                        at = enrolled_at + timedelta(days=STEP_DAYS * step)
                        if at > NOW:
                            break
                        key = sequence_key(email, name, f"s{step}")
                        record = new_record(
                            key=key,
                            contact=email,
                            kind="sequence",
                            ref=f"{name}/s{step}",
                            template="note.md",
                            due_at=at,
                            at=at,
                            sequence=name,
                            step=f"s{step}",
                            state=MessageState.SENDING,
                        )
                        sent = advance(
                            record, MessageState.SENT, at=at, message_id=f"<{n}.{key}@x>"
                        )
                        tx.put(MESSAGES, key, {**sent.to_doc(), "subject": f"Hello P{n}"})
                        sizes[MESSAGES] += 1
                if n % 10 == 0:
                    received = NOW - timedelta(days=n % 300, hours=3)
                    tx.put(
                        CONVERSATIONS,
                        f"<r{n}@example.org>",
                        {
                            "kind": "reply",
                            "contact": email,
                            "received_at": iso(received),
                            "subject": f"Re: Hello P{n}",
                            "message_id": f"<r{n}@example.org>",
                            "text": "Good to hear from you.",
                            "actions": ["stopped one"],
                        },
                    )
                    sizes[CONVERSATIONS] += 1
                if n % 20 == 0:
                    issued = date(2026, 3, 1) - timedelta(days=n % 150)
                    invoice = make_invoice(
                        f"2026-{n:05d}",
                        email,
                        f"{500 + n % 2000}.00",
                        "EUR" if n % 3 else "USD",
                        issued=issued,
                        due=issued + timedelta(days=14),
                    )
                    tx.put(INVOICES, invoice.number, invoice.to_doc())
                    sizes[INVOICES] += 1
    store.compact()
    store.close()
    return sizes


def rss_mb() -> float:
    """This process's resident memory now (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def a_tick(data: Path, sends: list[Row]) -> None:
    """What a tick writes, from another store instance: its report, and the planned
    ``sends`` as sent."""
    store = TinyStore(data)
    with store.transaction() as tx:
        tx.put(
            SYNC,
            STATUS_KEY,
            {
                "now": iso(NOW),
                "seconds": 0.5,
                "sent": len(sends),
                "failed": 0,
                "retrying": 0,
                "unknown": 0,
                "skipped": 0,
                "enrolled": 0,
            },
        )
        for n, row in enumerate(sends):
            name, step = row.ref.split("/")
            key = sequence_key(row.contact, name, step)
            record = new_record(
                key=key,
                contact=row.contact,
                kind="sequence",
                ref=row.ref,
                template="note.md",
                due_at=NOW,
                at=NOW,
                sequence=name,
                step=step,
                state=MessageState.SENDING,
            )
            sent = advance(record, MessageState.SENT, at=NOW, message_id=f"<tick{n}@x>")
            tx.put(MESSAGES, key, sent.to_doc())
    store.close()


def fetch(url: str, ok: tuple[int, ...] = (200,)) -> float:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=120) as answer:  # noqa: S310 - 127.0.0.1
            answer.read()
            status = answer.status
    except urllib.error.HTTPError as error:
        with error:
            error.read()
            status = error.code
    assert status in ok or url.endswith("/healthz"), (url, status)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config_path = write_project(folder, smtp=None, connections=1)
        started = time.perf_counter()
        sizes = fill(folder, args.contacts)
        print(
            f"store: {', '.join(f'{n} {table}' for table, n in sizes.items())} "
            f"(made in {time.perf_counter() - started:.1f} s)"
        )
        config = load_config(config_path)
        clock = FixedClock(NOW)
        store = TinyStore(config.paths.data)
        gc.collect()
        base_rss = rss_mb()
        started = time.perf_counter()
        rows = upcoming(store, config, now=NOW, until=NOW + timedelta(days=28))
        took = 1000 * (time.perf_counter() - started)
        print(f"the plan alone, read afresh (28 days, {len(rows)} sends): {took:.0f} ms")
        store.close()
        built = build(config, clock, OneClick(config.paths.data, clock))
        server = WebServer(built.app, "127.0.0.1", 0)
        server.start()
        started = time.perf_counter()
        base = "http://{}:{}".format(*server.address)
        fetch(base + "/healthz")  # waits for the reading thread's warm-up, begun at build
        print(
            f"warm-up after start (reading the store, making the plan): "
            f"{1000 * (time.perf_counter() - started):.0f} ms; memory {rss_mb():.0f} MB "
            f"(before the app: {base_rss:.0f} MB, one store instance open)"
        )
        pages = {
            "Today": "/",
            "Plan": "/plan",
            "Contacts": "/contacts",
            "Contacts, searched": "/contacts?q=person77&tag=group5",
            "Contact": "/contacts/person120@example.org",
            "Invoices": "/invoices",
            "Invoice": "/invoices/2026-00120",
            "Newsletters": "/newsletters",
            "Status": "/status",
            "/healthz": "/healthz",
            "/plan.ics": f"/plan.ics?token={built_token(config)}",
        }
        try:
            figures = {}
            for name, path in pages.items():
                first = fetch(base + path)
                warm = statistics.median(fetch(base + path) for _ in range(5))
                figures[name] = [first, warm]
            # The next sends of the plan go, one, then BUSY others.
            coming = [row for row in rows if row.kind == "sequence"]
            for sends in (coming[:1], coming[1 : 1 + BUSY]):
                a_tick(config.paths.data, sends)
                for name, path in pages.items():
                    figures[name].append(fetch(base + path))
            print(
                f"{'page':<20} {'first':>9} {'median of 5':>12} {'after a tick':>13} "
                f"{f'after {BUSY} sent':>15}"
            )
            for name, times in figures.items():
                mark = "" if max(times) < 0.2 else "  (over 200 ms)"
                print(
                    f"{name:<20} {1000 * times[0]:7.0f} ms {1000 * times[1]:9.0f} ms "
                    f"{1000 * times[2]:10.0f} ms {1000 * times[3]:12.0f} ms{mark}"
                )
            growing_old(built.dashboard, clock, base)
        finally:
            server.stop()
            built.close()


def growing_old(dashboard: Dashboard | None, clock: FixedClock, base: str) -> None:
    """The plan as time passes with no write: made again between pages, or (late) in one."""
    assert dashboard is not None
    view = dashboard.plan_view
    freshened, kept = (f"{span.total_seconds() / 60:g} min" for span in (PLAN_FRESHENED, PLAN_KEPT))
    clock.advance(PLAN_FRESHENED)
    started = time.perf_counter()
    dashboard.run_on_reader(dashboard.refresh)  # its first step; the others are queued
    first = time.perf_counter() - started
    during = fetch(base + "/plan")  # waits for the step queued before it
    steps = 1
    while dashboard.run_on_reader(lambda: view.making):
        steps += 1
    made = time.perf_counter() - started
    page = fetch(base + "/plan")
    print(
        f"{freshened} later, the reading thread plans everyone again between pages in "
        f"steps: {1000 * made:.0f} ms in all, the first {1000 * first:.0f} ms; the Plan "
        f"page meanwhile: {1000 * during:.0f} ms, then: {1000 * page:.0f} ms"
    )
    clock.advance(PLAN_KEPT)
    page = fetch(base + "/plan")
    print(
        f"the Plan page when the plan is older than {kept} and was not made again between "
        f"pages (a machine waking up): {1000 * page:.0f} ms"
    )


def built_token(config: object) -> str:
    from toma.mail.unsubscribe import SECRET_FILE, load_or_create_secret
    from toma.web.auth import calendar_token

    return calendar_token(load_or_create_secret(config.paths.data / SECRET_FILE))  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
