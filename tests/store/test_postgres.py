"""What only the PostgreSQL store does: daemon numbers, claims, migrations, its DSN."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import psycopg.sql
import pytest

from tests.postgres import PgServer
from toma.core.contacts import make_contact
from toma.core.outbox import HANDED, HANDOVER_PENDING, MessageState, new_record
from toma.errors import StoreError
from toma.store import MESSAGES, claims
from toma.store.postgres import PgStore, describe, reads, schema
from toma.store.postgres import store as pg
from toma.store.records import contacts as addressbook
from toma.store.records import enrolments
from toma.timeutil import FixedClock
from toma.web.oneclick import OneClick

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def dsn(pg_server: PgServer) -> Iterator[str]:
    with pg_server.database() as found:
        yield found


def sending(key: str, handover: str) -> dict[str, object]:
    record = new_record(
        key=key, contact="a@example.org", kind="sequence", ref="keep/hello", template="t.md",
        due_at=NOW, at=NOW, state=MessageState.SENDING,
    )  # fmt: skip
    return replace(record, handover=handover).to_doc()


def mark(store: PgStore, key: str, handover: str = HANDOVER_PENDING) -> None:
    with store.transaction() as tx:
        tx.put(MESSAGES, key, sending(key, handover))


def abandoned(store: PgStore) -> list[str]:
    with store.transaction() as tx:
        return [record.key for record in claims.abandoned(tx, starting=False)]


def test_any_number_of_daemons_hold_a_number_each(dsn: str):
    """The daemon lock excludes nobody on PostgreSQL: each daemon gets its own number."""
    with PgStore(dsn) as first, PgStore(dsn) as second:
        with first.daemon_lock(), second.daemon_lock():
            assert first.daemon_number is not None
            assert second.daemon_number is not None
            assert first.daemon_number != second.daemon_number
            assert claims.shared(first)
        assert first.daemon_number is None
        assert not claims.shared(first)


def test_a_living_daemons_claims_are_nobody_elses_a_dead_ones_are(dsn: str):
    """Messages a daemon marked `sending` are left alone while it lives, and become
    the others' to recover once its connection (and so its lock) is gone."""
    with PgStore(dsn) as other, other.daemon_lock():
        alive = PgStore(dsn)
        with alive.daemon_lock():
            mark(alive, "m1")
            mark(alive, "m2", HANDED)
            assert abandoned(other) == []
        assert abandoned(other) == ["m1", "m2"]  # its lock ended with it
        alive.close()


def test_a_message_claimed_by_one_daemon_is_not_anothers_until_let_go(dsn: str):
    """Claims keep two daemons from talking to their servers about one message: each
    gets what nobody else holds, and a message let go can be claimed again."""
    with (
        PgStore(dsn) as first,
        PgStore(dsn) as second,
        first.daemon_lock(),
        second.daemon_lock(),
    ):
        assert claims.claimer(first) is first
        assert first.claim(["m1", "m2"]) == {"m1", "m2"}
        assert second.claim(["m2", "m3"]) == {"m3"}
        first.release(["m2"])
        assert second.claim(["m2"]) == {"m2"}
        assert second.claim(["m1"]) == set()
        first.release(["m1"])
        assert second.claim(["m1"]) == {"m1"}


def test_a_dead_daemons_claims_end_with_it(dsn: str):
    """A claim is part of the daemon's session: nothing is left for anybody to clear."""
    with PgStore(dsn) as other, other.daemon_lock():
        gone = PgStore(dsn)
        with gone.daemon_lock():
            assert gone.claim(["m1"]) == {"m1"}
            assert other.claim(["m1"]) == set()
        gone.close()
        assert other.claim(["m1"]) == {"m1"}


def test_outside_a_daemon_every_message_is_ones_own(dsn: str):
    """A command that sends without the daemon lock shares with nobody: no claims."""
    with PgStore(dsn) as store:
        assert claims.claimer(store) is None
        assert store.claim(["m1"]) == {"m1"}
        store.release(["m1"])


def test_a_daemon_whose_session_ended_refuses_to_write(dsn: str):
    """Cut off (its session killed, as a network cut would), a daemon may have been
    recovered by the others already: it writes nothing more and says why."""
    with PgStore(dsn) as store, store.daemon_lock():
        mark(store, "m1")
        with psycopg.connect(dsn, autocommit=True) as admin:
            # Termination is a signal: without the timeout the call returns before the
            # session has ended, and the lock may still be held when the daemon looks.
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_locks"
                " WHERE locktype = 'advisory' AND objid = %s AND objsubid = 2",
                (store.daemon_number,),
            ).fetchall()
            assert ended == [(True,)]
        with pytest.raises(StoreError, match="lost its connection"), store.transaction() as tx:
            tx.put(MESSAGES, "m2", sending("m2", HANDOVER_PENDING))
        assert store.get(MESSAGES, "m2") is None


def test_a_record_past_planned_is_taken():
    """The claim rule: only an absent or due planned record may be marked sending."""
    later = (NOW + timedelta(minutes=5)).isoformat()
    earlier = (NOW - timedelta(minutes=5)).isoformat()
    assert not claims.taken(None, NOW)
    assert not claims.taken({"state": "planned"}, NOW)
    assert not claims.taken({"state": "planned", "next_attempt_at": earlier}, NOW)
    assert claims.taken({"state": "planned", "next_attempt_at": later}, NOW)
    for state in ("sending", "sent", "failed", "unknown", "skipped"):
        assert claims.taken({"state": state}, NOW)


def test_daemons_start_their_walk_through_a_tick_far_apart():
    """Daemons numbered one after another start in different places of the same tick's
    messages, so none of them finds every claim taken before it gets there."""
    count = 2000
    starts = sorted(claims.starting_point(count, number) for number in range(1, 9))
    assert all(0 <= start < count for start in starts)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    gaps.append(starts[0] + count - starts[-1])
    assert min(gaps) >= count // 16, starts
    assert claims.starting_point(0, 3) == 0
    assert claims.starting_point(1, 3) == 0


def test_migrations_run_once_and_a_newer_schema_is_refused(dsn: str):
    PgStore(dsn).close()
    PgStore(dsn).close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM toma_schema")]
        assert versions == [v for v, _name, _sql in schema.migrations()]
        conn.execute("INSERT INTO toma_schema (version, name) VALUES (9999, 'future')")
    with pytest.raises(StoreError, match="newer than this toma knows"):
        PgStore(dsn)


def test_an_unreachable_database_is_one_error_without_the_password():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dsn = f"postgresql://toma:s3cret@127.0.0.1:{port}/toma?connect_timeout=2"
    with pytest.raises(StoreError) as caught:
        PgStore(dsn)
    assert "s3cret" not in str(caught.value)
    assert caught.value.file == f"postgresql://127.0.0.1:{port}/toma"
    assert describe(dsn) == f"postgresql://127.0.0.1:{port}/toma"


def test_a_forgotten_contacts_address_is_left_in_no_relation(dsn: str):
    """Not in the documents, nor in the change feed's keys (readers reload instead)."""
    with PgStore(dsn) as store:
        for email in ("ada@example.org", "bo@example.org"):
            addressbook.add(store, make_contact(email, first_name="X", tags=["t"]), now=NOW)
            enrolments.enrol(store, email, "keep", now=NOW)
        mark_before, _ = store.changes_since(None)
        addressbook.forget(store, "ada@example.org", now=NOW)
        store.compact()
        assert store.changes_since(mark_before)[1] is None
        with psycopg.connect(dsn) as conn:
            found = conn.execute(
                "SELECT (SELECT count(*) FROM toma_documents"
                "        WHERE key LIKE '%%ada@%%' OR doc::text LIKE '%%ada@%%'),"
                "       (SELECT count(*) FROM toma_changes WHERE key LIKE '%%ada@%%'),"
                "       (SELECT count(*) FROM toma_changes WHERE key LIKE '%%bo@%%')"
            ).fetchone()
        assert found == (0, 0, 2)


@pytest.mark.parametrize(
    ("table", "equal"),
    [
        ("messages", {"state": "sending"}),
        ("messages", {"kind": "invoice", "state": "planned"}),
        ("messages", {"kind": "newsletter", "ref": "issue-1"}),
        ("messages", {"contact": "a@example.org"}),
        ("enrolments", {"contact": "a@example.org"}),
        ("conversations", {"contact": "a@example.org"}),
        ("conversations", {"kind": "reply"}),
    ],
)
def test_the_records_layers_questions_have_an_index(dsn: str, table: str, equal: dict[str, str]):
    """Each question the records layer asks matches an index (not a scan of the table)."""
    PgStore(dsn).close()
    with psycopg.connect(dsn) as conn:
        conn.execute("SET enable_seqscan = off")
        query = psycopg.sql.SQL("EXPLAIN SELECT key FROM toma_documents WHERE {} ORDER BY ord")
        plan = "\n".join(
            row[0] for row in conn.execute(query.format(reads._where_clause(table, equal)))
        )
    assert "Seq Scan" not in plan, plan
    assert "Index" in plan, plan


def test_the_server_probes_a_daemons_session_to_end_a_vanished_machines_claims(dsn: str):
    with PgStore(dsn) as store, store.daemon_lock(), psycopg.connect(dsn) as admin:
        holders = admin.execute(
            "SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.objid = %s AND l.objsubid = 2",
            (store.daemon_number,),
        ).fetchall()
        assert len(holders) == 1  # one session holds the number: the one probed
        conn = store._daemon_conn
        assert conn is not None
        shown = {
            name: conn.execute(
                psycopg.sql.SQL("SHOW {}").format(psycopg.sql.Identifier(name))
            ).fetchone()[0]  # type: ignore[index]
            for name, _seconds in pg.KEEPALIVE
        }
    assert shown == {
        "tcp_keepalives_idle": "60",
        "tcp_keepalives_interval": "10",
        "tcp_keepalives_count": "3",
    }


def test_a_one_click_unsubscribe_is_recorded_in_the_configured_database(dsn: str, tmp_path: Path):
    """The endpoint beside a daemon on PostgreSQL writes there, not to a data directory."""
    with PgStore(dsn) as store:
        addressbook.add(store, make_contact("ada@example.org", first_name="Ada"), now=NOW)
    record = OneClick(tmp_path / "data", FixedClock(NOW), opener=lambda: PgStore(dsn))
    try:
        record("ada@example.org")
    finally:
        record.close()
    with PgStore(dsn) as store:
        assert addressbook.find(store, "ada@example.org").status.value == "unsubscribed"
    assert not (tmp_path / "data").exists()


def test_a_document_reads_back_as_json_reads_it_whatever_its_numbers(dsn: str):
    """Documents are decoded by msgspec, and by json where msgspec refuses: an integer
    past 64 bits stays exact, and a number past a double (which jsonb keeps, written by
    hand) reads as json reads it instead of failing the read; strings keep their
    escapes."""
    doc = {"big": 2**70, "small": -(2**65), "tiny": 5e-324, "text": 'é "q" \\ 😀'}
    with PgStore(dsn) as store:
        with store.transaction() as tx:
            tx.put(MESSAGES, "exact", doc)
        assert store.get(MESSAGES, "exact") == doc
        with store._conn() as conn:
            conn.execute(
                "INSERT INTO toma_documents (tbl, key, doc, ord) VALUES"
                " ('messages', 'by-hand', '{\"far\": 1e400, \"n\": 1}', nextval('toma_order'))"
            )
        assert store.get(MESSAGES, "by-hand") == {"far": float("inf"), "n": 1}
        assert reads.decode('{"far": 1e400}') == {"far": float("inf")}
