"""The dashboard on a PostgreSQL store too large to hold in memory: refused, not read.

The pages read the whole store into memory (toma.web.snapshot), about 1.6 kB a
document: on a large PostgreSQL store, served by `toma run`, that would take the
daemon's memory with it. Above `[dashboard] max_documents` the pages say so
instead, nothing is read, and /healthz still answers, from the store itself.

Here rather than in tests/web: each project here is ticked with asyncio.run(),
which cannot run in the thread where the web tests' browser keeps its loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.projects import make_project
from tests.postgres import PgServer
from tests.web.conftest import serve  # the dashboard served as the web tests serve it
from tests.web.test_dashboard import fetch
from toma.config import load_config
from toma.core.contacts import make_contact
from toma.core.outbox import MessageState, advance, carry_on
from toma.core.planner import PlannedSend
from toma.daemon.worker import Worker
from toma.store import CONTACTS, MESSAGES, TABLES, open_configured
from toma.timeutil import FixedClock

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PEOPLE = 6


@pytest.fixture
def project(tmp_path: Path, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project on PostgreSQL whose daemon has ticked once: some 20 documents."""
    with pg_server.database() as dsn:
        monkeypatch.setenv("TOMA_LARGE_DSN", dsn)
        config = make_project(tmp_path / "project", now=NOW)
        config.write_text(
            config.read_text() + '\n[store]\nkind = "postgres"\ndsn_env = "TOMA_LARGE_DSN"\n'
        )
        with open_configured(load_config(config)) as store:
            with store.transaction() as tx:
                for n in range(PEOPLE):
                    contact = make_contact(
                        f"person{n}@example.org", first_name=f"P{n}", tags=["friend"]
                    )
                    tx.put(CONTACTS, contact.email, contact.to_doc())
            report = Worker(config, store, sync_inbox=False).run_once(NOW)
            assert report.sent == PEOPLE and not report.problems
        yield config


def limited(config: Path, most: int) -> None:
    text = config.read_text().split("\n[dashboard]")[0]
    config.write_text(text + f"\n[dashboard]\nmax_documents = {most}\n")


def documents(config: Path) -> int:
    with open_configured(load_config(config)) as store:
        return sum(store.count(table) for table in TABLES)


def test_pages_refuse_a_store_over_the_limit_and_read_nothing(project: Path) -> None:
    count = documents(project)
    limited(project, count - 1)
    server, built = serve(project, FixedClock(NOW + timedelta(minutes=1)))
    try:
        base = "http://{}:{}".format(*server.address)
        for path in ("/", "/plan", "/contacts", "/status", "/contacts/person0@example.org"):
            status, body = fetch(base + path)
            assert status == 503, path
            assert b"max_documents" in body and f"{count:,} documents".encode() in body, path
        # The daemon's health does not need the pages' copy of the store.
        assert fetch(base + "/healthz") == (200, b"ok\n")
        assert built.dashboard is not None
        snapshot = built.dashboard.snapshot
        assert snapshot.refused
        assert all(not dict(snapshot.all(table)) for table in TABLES)  # nothing was read
    finally:
        server.stop()
        built.close()


def test_health_of_a_store_over_the_limit_sees_what_needs_the_owner(project: Path) -> None:
    send = PlannedSend(
        key="keep/person0@example.org/again",
        contact="person0@example.org",
        kind="sequence",
        sequence="keep",
        step="again",
        template="hello.md",
        due_at=NOW,
        send_at=NOW,
        late_by=timedelta(0),
    )
    record = carry_on(None, send, MessageState.SENDING, at=NOW)
    with open_configured(load_config(project)) as store, store.transaction() as tx:
        tx.put(MESSAGES, record.key, advance(record, MessageState.UNKNOWN, at=NOW).to_doc())
    limited(project, 1)
    server, built = serve(project, FixedClock(NOW + timedelta(minutes=1)))
    try:
        status, body = fetch("http://{}:{}/healthz".format(*server.address))
        assert status == 503 and body.startswith(b"needs attention: "), body
        assert b"in doubt" in body
    finally:
        server.stop()
        built.close()


def test_a_store_within_the_limit_is_shown(project: Path) -> None:
    limited(project, documents(project))
    server, built = serve(project, FixedClock(NOW + timedelta(minutes=1)))
    try:
        base = "http://{}:{}".format(*server.address)
        status, body = fetch(base + "/contacts")
        assert status == 200 and b"person0@example.org" in body
    finally:
        server.stop()
        built.close()
