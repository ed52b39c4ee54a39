"""The daemon on PostgreSQL reads only who can be due; it decides as on the embedded store.

The same project lives on both stores, and the same fortnight happens to both:
contacts added and tagged (enrolled by the tick), four days with the machine
down (late steps are skipped), one person unsubscribing, another held, an
enrolment paused, an invoice whose reminders come due, a newsletter issue
scheduled. The daemon ticks every five
hours on each; at the end both stores hold the same outbox, message for
message, both Maildirs the same number of messages, and `toma plan` showed the
same rows on both along the way.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tests.integration.projects import make_project
from tests.postgres import PgServer, progress, rebuilt
from toma.config import load_config
from toma.core.contacts import make_contact
from toma.core.invoices import make_invoice
from toma.daemon.worker import Worker
from toma.reports.plan import Row, upcoming
from toma.store import CONTACTS, ENROLMENTS, MESSAGES, Store, TinyStore
from toma.store.postgres import PgStore
from toma.store.records import invoices as billing
from toma.store.records import newsletters as broadcast

START = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)  # a Monday
TICK = timedelta(hours=5)
TICKS = 70  # a fortnight and a half
ISSUE = """---
subject: "News for {{ contact.first_name }}"
purpose: "What changed this spring, for the people I work with."
audience: "friend"
---
Hi {{ contact.first_name }}, a short note.
"""


def project(folder: Path, kind: str) -> Path:
    config = make_project(
        folder,
        now=START,
        steps=(("hello", "0h"), ("again", "2d"), ("last", "4d")),
        window=("08:00", "18:00"),
    )
    config.write_text(
        config.read_text().replace(
            "[windows.default]",
            '[invoices]\nstages = [{ at = "-3d", template = "invoices/before-due.md" },'
            ' { at = "0d", template = "invoices/on-the-day.md" }]\n\n'
            '[pace]\nmin_gap = "1d"\nmax_late = "3d"\n\n[windows.default]',
        )
        + ('\n[store]\nkind = "postgres"\ndsn_env = "TOMA_SCOPED_DSN"\n' if kind else "")
    )
    scaffold = resources.files("toma.project") / "starter" / "templates" / "invoices"
    (folder / "templates" / "invoices").mkdir()
    for name in ("before-due.md", "on-the-day.md"):
        with resources.as_file(scaffold / name) as path:
            shutil.copy(path, folder / "templates" / "invoices" / name)
    (folder / "newsletters").mkdir()
    (folder / "newsletters" / "spring.md").write_text(ISSUE, encoding="utf-8")
    return config


@pytest.fixture
def stores(
    tmp_path: Path, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[tuple[Path, Store], tuple[Path, Store]]]:
    with pg_server.database() as dsn:
        monkeypatch.setenv("TOMA_SCOPED_DSN", dsn)
        embedded_config = project(tmp_path / "embedded", "")
        pg_config = project(tmp_path / "postgres", "postgres")
        with TinyStore(tmp_path / "embedded" / "var" / "data") as embedded, PgStore(dsn) as pg:
            yield (embedded_config, embedded), (pg_config, pg)


def happen(store: Store, config: Path, n: int, now: datetime) -> None:
    """What the owner and the world do between two ticks (the same on both stores)."""
    people = [f"p{k}@example.org" for k in range(3 * n, 3 * n + 3)] if n < 12 else []
    with store.transaction() as tx:
        for k, email in enumerate(people):
            tags = ["friend"] if k else ["client"]
            zone = ("Europe/Berlin", "America/New_York", "Asia/Tokyo")[k]
            contact = make_contact(email, first_name=f"P{n}", tags=tags, timezone=zone)
            tx.put(CONTACTS, email, contact.to_doc())
        if n == 4:  # a client becomes a friend: the tag enrols them
            doc = tx.get(CONTACTS, "p0@example.org")
            assert doc is not None
            tx.put(CONTACTS, "p0@example.org", {**doc, "tags": ["client", "friend"]})
        if n == 6:
            doc = tx.get(CONTACTS, "p4@example.org")
            assert doc is not None
            tx.put(CONTACTS, "p4@example.org", {**doc, "status": "unsubscribed"})
        if n == 7:
            doc = tx.get(CONTACTS, "p5@example.org")
            assert doc is not None
            held = (now + timedelta(days=3)).isoformat()
            tx.put(CONTACTS, "p5@example.org", {**doc, "hold_until": held})
        if n == 9:
            key = "keep/p7@example.org"
            doc = tx.get(ENROLMENTS, key)
            assert doc is not None
            until = (now + timedelta(days=2)).isoformat()
            tx.put(ENROLMENTS, key, {**doc, "state": "paused", "paused_until": until})
    if n == 2:
        invoice = make_invoice(
            "2026-7", "p3@example.org", "120", "EUR", issued=date(2026, 3, 1),
            due=date(2026, 3, 9), today=date(2026, 3, 2),
        )  # fmt: skip
        billing.add(store, invoice)
    if n == 30:
        broadcast.schedule(store, broadcast.load(load_config(config), "spring.md"), now=now)


def outbox(store: Store) -> dict[str, tuple[Any, ...]]:
    return {
        # A sent message's detail names its file in the Maildir: not compared.
        key: (doc["state"], doc.get("sent_at"), doc["state"] != "sent" and doc.get("detail"))
        for key, doc in store.all(MESSAGES)
    }


@pytest.mark.slow
def test_the_same_fortnight_on_both_stores_sends_the_same(
    stores: tuple[tuple[Path, Store], tuple[Path, Store]],
) -> None:
    sent: dict[str, int] = {}
    plans: dict[str, list[list[Row]]] = {}
    for config, store in stores:
        worker = Worker(config, store, sync_inbox=False)
        total = 0
        plans[str(config)] = []
        for n in range(TICKS):
            now = START + n * TICK
            happen(store, config, n, now)
            if n % 6 == 0:
                # `toma plan`: on PostgreSQL from who can be due in those days only.
                until = now + timedelta(days=3)
                rows = upcoming(store, load_config(config), now=now, until=until)
                plans[str(config)].append(rows)
            if 36 <= n < 56:
                continue  # the machine is down for four days: late steps are skipped
            report = worker.run_once(now)
            assert not report.problems, report.problems
            total += report.sent
        sent[str(config)] = total
    (embedded_config, embedded), (pg_config, pg) = stores
    mine, theirs = outbox(embedded), outbox(pg)
    assert mine == theirs
    assert plans[str(embedded_config)] == plans[str(pg_config)]
    planned = {row.kind for rows in plans[str(pg_config)] for row in rows}
    assert {"sequence", "invoice"} <= planned, planned
    kinds = {doc["kind"] for _key, doc in pg.all(MESSAGES)}
    states = {value[0] for value in mine.values()}
    # Everything the fortnight was meant to exercise did happen.
    assert {"sequence", "invoice", "newsletter"} <= kinds, kinds
    assert {"sent", "skipped"} <= states, states
    assert len(list(embedded.all(ENROLMENTS))) == len(list(pg.all(ENROLMENTS))) == 25
    counts = [
        sum(1 for _ in (config.parent / "var" / "outbox" / "new").iterdir())
        for config in (embedded_config, pg_config)
    ]
    assert counts[0] == counts[1] == sent[str(embedded_config)] == sent[str(pg_config)] > 40
    # What the triggers kept through the daemon's writes is what the documents say.
    assert isinstance(pg, PgStore)
    assert progress(pg) == rebuilt(pg)


def test_a_scheduled_issue_keeps_only_the_contacts_it_waits_for(
    tmp_path: Path, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audience is looked for among every contact, a page at a time; a tick keeps
    only those the issue still waits for, not the whole address book."""
    from toma.core.newsletters import newsletter_key
    from toma.core.outbox import MessageState, advance, new_record
    from toma.daemon import scoped
    from toma.project.sequences import read_sequences

    with pg_server.database() as dsn:
        monkeypatch.setenv("TOMA_SCOPED_DSN", dsn)
        config = load_config(project(tmp_path / "postgres", "postgres"))
        friends = {f"f{n}@example.org" for n in range(12)}
        with PgStore(dsn) as store:
            with store.transaction() as tx:
                for n in range(36):
                    email = f"f{n // 3}@example.org" if n % 3 == 0 else f"c{n}@example.org"
                    tags = ["friend"] if email in friends else ["client"]
                    tx.put(CONTACTS, email, make_contact(email, tags=tags).to_doc())
                tx.put(
                    CONTACTS,
                    "gone@example.org",
                    {
                        **make_contact("gone@example.org", tags=["friend"]).to_doc(),
                        "status": "unsubscribed",
                    },
                )
            issue = broadcast.load(config, "spring.md")
            broadcast.schedule(store, issue, now=START)
            key = newsletter_key(issue.name, "f0@example.org")
            copy = new_record(
                key=key, contact="f0@example.org", kind="newsletter", ref=issue.name,
                template=issue.name, due_at=START, at=START, state=MessageState.SENDING,
            )  # fmt: skip
            with store.transaction() as tx:
                tx.put(MESSAGES, key, advance(copy, MessageState.SENT, at=START).to_doc())
            state = scoped.plan_state(store, config, read_sequences(config), START, [])
            # Nobody is enrolled: the contacts held are those the issue waits for.
            assert set(state.contacts) == friends - {"f0@example.org"}
            assert key in state.history
