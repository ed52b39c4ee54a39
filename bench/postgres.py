"""One daemon's tick on the PostgreSQL store: time and peak memory, from 100k contacts up.

The store of bench/tick.py's ``scale`` (each contact in three sequences with its
first step sent, 1% of them with a step due now, another 1% due in half an
hour), written into a fresh database of a throwaway server (tests/postgres.py)
with COPY, then, in a fresh process so that the peak memory is the daemon's
own: the store opened, the tag rules applied to every contact (what the first
daemon on a store does once), one tick (plan and send to a Maildir), the next
tick an hour later (again 1% due), and a quiet one an hour later still
(nothing due: the contacts just sent to wait out the pace). ``deciding`` is the
part of a tick that reads and plans (TickReport.deciding); the rest is
rendering, building, delivering and recording each message. Targets: under 10 s
and under 500 MB per daemon.

    python bench/postgres.py [--sizes 100000,300000,1000000] [--copy 100000] [--where DIR]
                             [--copy-built]

``--copy-built`` leaves building out (a copy of one built message each time), so
that the tick's time is the daemon's, the database's and the Maildir's alone.

Measured on 2 shared cores, PostgreSQL 15, fsync off, the Maildir on the same
disk outside /tmp (``--where``; this machine's /tmp creates files 15-40 times
slower), ``--sizes 1000000 --copy 0``, with a send written twice (handed over,
then its outcome), on a day when this machine filled the store 1.5 times slower
than on the day of the next table:

    contacts   fill   tags    tick deciding per send  peak RSS  next tick deciding   sent
    1000000 1053.9s  31.9s  26.54s    5.66s   2.09ms     173MB     29.78s    5.90s  10000

The quiet tick, with nothing due while the 20,000 contacts just sent to have steps
of their other sequences due and wait out the pace: 3.3 s at 1M (4.2 CPU-seconds)
before the index knew the pace (schema version 4), 0.3-0.6 s since; 0.34 s at 100k.
Knowing it also takes the second tick's deciding at 1M from 3.8 s to 2.1-2.9 s (it
no longer reads the 10,000 contacts the first tick sent to). Measured on copies of
one filled store, this version's runs and the last one's on the same day.

Against the version before it, which also marked each send ``sending`` ahead of
the transport, one tick at 1M on copies of one filled database, runs
alternated: 21.5-25.1 s (mean 23.0 s, PostgreSQL's CPU 7.7-8.4 s) against
24.6-33.4 s (mean 28.7 s, 9.3-10.4 s); at 100k the difference is lost in the
noise of the disk. That version, ``--sizes 100000,300000,1000000 --copy 0``:

    contacts   fill   tags    tick deciding per send  peak RSS  next tick deciding   sent
     100000   65.3s   2.0s   1.70s    0.28s   1.43ms      82MB      1.91s    0.39s   1000
     300000  195.9s   9.2s   7.44s    1.62s   1.94ms     113MB      5.54s    1.41s   3000
    1000000  683.1s  17.5s  15.48s    2.99s   1.25ms     172MB     14.55s    3.53s  10000

Each write of the journal reads its messages and contacts in two queries and
writes in one statement (arrays in binary), the progress trigger parses each
document once (schema version 3), the Maildir groups its file operations.
Before those, with a round trip per document and per Maildir file operation (the
Maildir in /tmp then, which made little difference to that code: 4.3-5.0 s at
100k either way):

    contacts   fill   tags    tick deciding per send  peak RSS  next tick deciding   sent
     100000   59.2s   2.1s   4.10s    0.28s   3.82ms      83MB      4.39s    0.29s   1000
     300000  191.7s      -  13.40s        -        -     112MB     13.91s        -   3000
    1000000  641.1s  20.4s  37.80s    3.28s   3.45ms     179MB     36.98s    3.67s  10000

Before, when every tick decoded the whole store (load average about 8):

    contacts   fill     tick   peak RSS  next tick
     100000   166 s    20.0 s   420 MB     7.3 s
     300000   128 s    81.3 s  1110 MB    19.3 s   (tick time 1.35x linear)
    store copy, 100k contacts (700k documents): postgres -> embedded 323 s,
    embedded -> postgres 178 s, identical after the round trip

Deciding grows with the contacts due (1% of the store here), memory barely with
the store; the rest of the tick is about the same 1.2-2 ms per message sent at
any size. The daemon, the database and the builder process share two cores,
each taking about a third of the 3.3 ms of CPU a message costs at 1M (deciding
included; 32-37 CPU-seconds a tick), so at 1M contacts the 10,000 messages due,
not the store, put the tick over 10 s on one daemon of these machines: two cores
need 16 s for that much CPU, however well it overlaps.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.postgres

import psycopg
from tick import AGO, NOW, write_project

from toma.config import load_config
from toma.core.contacts import make_contact
from toma.core.enrolments import Enrolment
from toma.core.outbox import MessageState, advance, new_record, sequence_key
from toma.daemon.scoped import enrol_by_tag
from toma.daemon.worker import Worker
from toma.project.sequences import read_sequences
from toma.store import CONTACTS, ENROLMENTS, MESSAGES
from toma.store.embedded.snapshot import normalise_doc
from toma.store.postgres import PgStore

SEQUENCES = ("one", "two", "three")


def rows(count: int):
    """(table, key, JSON text) of bench/tick.py's store with history, in insertion order."""
    for n in range(count):
        email = f"person{n}@example.org"
        contact = make_contact(
            email,
            first_name=f"P{n}",
            tags=["a", "b", "c"],
            company="Firm",
            fields={"met_where": "the fair", "met_why": "pricing"},
        )
        yield CONTACTS, email, normalise_doc(contact.to_doc())[0].decode()
        enrolled_at = NOW - AGO.get(n % 100, timedelta(days=10))
        for name in SEQUENCES:
            enrolment = Enrolment(
                contact=email, sequence=name, enrolled_at=enrolled_at, source="tag"
            )
            yield ENROLMENTS, enrolment.key, normalise_doc(enrolment.to_doc())[0].decode()
            key = sequence_key(email, name, "s0")
            record = new_record(
                key=key,
                contact=email,
                kind="sequence",
                ref=f"{name}/s0",
                template="note.md",
                due_at=enrolled_at,
                at=enrolled_at,
                sequence=name,
                step="s0",
                state=MessageState.SENDING,
            )
            sent = advance(
                record, MessageState.SENT, at=enrolled_at, message_id=f"<{n}.{name}@example.com>"
            )
            yield MESSAGES, key, normalise_doc(sent.to_doc())[0].decode()


def fill(dsn: str, count: int) -> float:
    """Write the store with COPY (the bench's setup, not what it measures).

    As a bulk load is made: the expression indexes and the progress triggers
    (migration 0002) off during the COPY, then the indexes made again and the
    progress rebuilt from the documents, as the migration does for an old database.
    """
    PgStore(dsn).close()  # the schema
    started = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'toma_documents'"
            " AND indexname NOT LIKE '%pkey'"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        conn.execute("ALTER TABLE toma_documents DISABLE TRIGGER USER")
        with (
            conn.cursor() as cur,
            cur.copy("COPY toma_documents (tbl, key, doc, ord) FROM STDIN") as copy,
        ):
            for order, (table, key, text) in enumerate(rows(count), start=1):
                copy.write_row((table, key, text, order))
        conn.execute("ALTER TABLE toma_documents ENABLE TRIGGER USER")
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute("SELECT toma_progress_rebuild()")
        conn.execute("SELECT setval('toma_order', (SELECT max(ord) FROM toma_documents))")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE toma_documents")
        conn.execute("VACUUM ANALYZE toma_progress")
    return time.perf_counter() - started


def copy_built() -> None:
    """Building replaced, in this process, by a copy of one built message per template
    (its Message-ID changed): what is left of a tick is the daemon's own work, the
    journal's writes above all (``--copy-built``)."""
    from toma.daemon import builder

    build, built = builder._build, {}

    def copied(composer, job):
        if job.template not in built:
            built[job.template] = build(composer, job)
        return dataclasses.replace(built[job.template], message_id=f"<{job.key}@bench>")

    builder.PARALLEL_FROM = sys.maxsize
    builder._build = copied


def tick_one(dsn: str, count: int, where: str | None = None) -> dict[str, float]:
    """Run in a fresh process: open the store and time two ticks (the project and its
    Maildir in a temporary directory under ``where``)."""
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        folder = Path(tmp)
        config = write_project(folder, smtp=None, connections=1)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        store = PgStore(dsn)
        opened = time.perf_counter() - started
        with store.daemon_lock():
            worker = Worker(config, store, sync_inbox=False)
            # The tag rules applied once to every contact, as the first daemon on a
            # store does (the next ones carry on from the mark it leaves).
            started = time.perf_counter()
            enrol_by_tag(store, read_sequences(load_config(config)).sequences, NOW)
            tags_seconds = time.perf_counter() - started
            started = time.perf_counter()
            report = worker.run_once(NOW)
            tick_seconds = time.perf_counter() - started
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            started = time.perf_counter()
            following = worker.run_once(NOW + timedelta(hours=1))
            next_seconds = time.perf_counter() - started
            # Nothing due: the contacts just sent to wait out the pace, whatever is due.
            started = time.perf_counter()
            quiet = worker.run_once(NOW + timedelta(hours=2))
            quiet_seconds = time.perf_counter() - started
        store.close()
        return {
            "contacts": count,
            "open_s": opened,
            "tags_s": tags_seconds,
            "tick_s": tick_seconds,
            "deciding_s": report.deciding,
            "sent": report.sent,
            "peak_rss_mb": peak / 1024,
            "rss_before_mb": rss_before / 1024,
            "next_tick_s": next_seconds,
            "next_deciding_s": following.deciding,
            "next_sent": following.sent,
            "next_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "quiet_tick_s": quiet_seconds,
            "quiet_sent": quiet.sent,
        }


def round_trip(server, dsn: str, count: int) -> None:
    """`toma store copy`'s work at this size: PostgreSQL -> embedded -> a new database,
    each copy verified by counts and checksums, then the two databases compared."""
    from toma.store import TABLES, TinyStore
    from toma.store.copy import copy_store, fingerprint

    with (
        tempfile.TemporaryDirectory() as tmp,
        server.database() as second,
        PgStore(dsn) as source,
        TinyStore(Path(tmp) / "data") as middle,
        PgStore(second) as back,
    ):
        started = time.perf_counter()
        copy_store(source, middle)
        out = time.perf_counter() - started
        started = time.perf_counter()
        copy_store(middle, back)
        home = time.perf_counter() - started
        same = all(fingerprint(source, t) == fingerprint(back, t) for t in TABLES)
        docs = sum(fingerprint(back, t).count for t in TABLES)
    print(
        f"  store copy of {count} contacts ({docs} documents): postgres -> embedded {out:.1f}s,"
        f" embedded -> postgres {home:.1f}s, identical after the round trip: {same}",
        flush=True,
    )
    assert same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--copy", type=int, default=100000, help="round-trip this size (0: no)")
    parser.add_argument(
        "--where",
        help="the directory the daemon's project and Maildir go in (default: the system's"
        " temporary directory)",
    )
    parser.add_argument(
        "--copy-built",
        action="store_true",
        help="replace building by a copy of one built message: the journal sets the pace",
    )
    parser.add_argument("--tick-one", nargs=2, metavar=("DSN", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.copy_built:
        copy_built()
    if args.tick_one:
        print(json.dumps(tick_one(args.tick_one[0], int(args.tick_one[1]), args.where)))
        return 0
    from tests.postgres import PgServer

    server = PgServer()
    try:
        print("postgres: one tick, contacts in three sequences with history, 1% of them due")
        print(
            f"  {'contacts':>9} {'fill':>7} {'tags':>6} {'tick':>7} {'deciding':>8}"
            f" {'per send':>8} {'peak RSS':>9}  {'next tick':>9} {'deciding':>8} {'sent':>6}"
            f"  {'quiet tick':>10}"
        )
        results = []
        for size in (int(s) for s in args.sizes.split(",")):
            with server.database() as dsn:
                filled = fill(dsn, size)
                if size == args.copy:
                    round_trip(server, dsn, size)
                where = ["--where", args.where] if args.where else []
                where += ["--copy-built"] if args.copy_built else []
                out = subprocess.run(
                    [sys.executable, __file__, "--tick-one", dsn, str(size), *where],
                    capture_output=True,
                    text=True,
                    check=True,
                )
            row = json.loads(out.stdout.strip().splitlines()[-1])
            assert row["sent"] == size // 100 and row["quiet_sent"] == 0, row
            results.append(row)
            per_send = (row["tick_s"] - row["deciding_s"]) / row["sent"]
            print(
                f"  {size:>9} {filled:6.1f}s {row['tags_s']:5.1f}s {row['tick_s']:6.2f}s "
                f"{row['deciding_s']:7.2f}s {1000 * per_send:6.2f}ms {row['peak_rss_mb']:7.0f}MB"
                f"  {row['next_tick_s']:8.2f}s {row['next_deciding_s']:7.2f}s {row['sent']:>6}"
                f"  {row['quiet_tick_s']:9.2f}s",
                flush=True,
            )
        if len(results) > 1:
            first, last = results[0], results[-1]
            growth = (last["tick_s"] / first["tick_s"]) / (last["contacts"] / first["contacts"])
            print(
                f"  growth of tick time relative to linear, {first['contacts']} -> "
                f"{last['contacts']}: {growth:.2f} (1.0 = linear)"
            )
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
