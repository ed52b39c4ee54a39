"""What a large PostgreSQL store costs the commands and pages that read it: time, peak memory.

On bench/postgres.py's store (every contact in three sequences with one step sent,
1% of them due), each measure in a fresh process, so that its peak memory is its
own, and beside each the way it was done before, with the ratio:

- ``toma plan`` a week ahead: reading who can have something due by then (and
  whom a tag rule would enrol), against planning from the whole store;
- ``toma status``: counting the outbox in the database, against reading every
  message;
- the dashboard's first read with ``[dashboard] max_documents`` at its default,
  against reading the whole store into memory (at 100,000 contacts only: at a
  million that is some 11 GB);
- a tick's look for those a scheduled newsletter issue still waits for, with an
  audience that needs a tag nobody carries, against an audience that selects by
  a field (every contact read).

    python bench/pg_reports.py [--size 100000] [--dsn DSN]

``--dsn`` measures a database filled already (by this script or bench/postgres.py).
Measured on 2 shared cores, PostgreSQL 15 (fsync off), the machine otherwise quiet;
about 66 MB of each peak is the process and its imports:

      100000 contacts                      now            before    ratio
      toma plan, 7 days                 4.5s    84MB    17.5s   422MB    3.9x  5000
      toma status                       1.0s    66MB     6.0s    81MB    5.9x  {'sent': 300000}
      dashboard, first read             0.1s    66MB    13.2s  1137MB  130.6x  refused (700000)
      issue waiting, tag audience       0.6s    66MB     2.5s    77MB    4.2x  0

      1000000 contacts                     now            before    ratio
      toma plan, 7 days                54.8s   197MB   197.6s  3541MB    3.6x  50000
      toma status                       8.6s    66MB    57.7s    84MB    6.7x  {'sent': 3000000}
      dashboard, first read             0.7s    66MB  refused (7000000)
      issue waiting, tag audience       5.6s    66MB    29.1s    79MB    5.2x  0
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.postgres

from tick import NOW, write_project

from postgres import fill
from toma.config import load_config
from toma.daemon import scoped
from toma.daemon.cache import plan_state
from toma.project.sequences import read_sequences
from toma.reports.plan import plan_rows, upcoming
from toma.reports.status import OutboxTally, gather
from toma.store.postgres import PgStore
from toma.store.records import outbox
from toma.web.snapshot import Snapshot, TooLargeToHold

MEASURES = (
    ("toma plan, 7 days", "plan", "plan_whole"),
    ("toma status", "status", "status_read"),
    ("dashboard, first read", "dashboard", "dashboard_whole"),
    ("issue waiting, tag audience", "issue_tag", "issue_fields"),
)
WHOLE_STORE_UP_TO = 300_000  # contacts: past it, the whole store read would not fit here


def measure(name: str, dsn: str) -> dict[str, Any]:
    """One measure, in this (fresh) process: seconds, peak RSS and what it found."""
    with tempfile.TemporaryDirectory() as tmp, PgStore(dsn) as store:
        folder = Path(tmp)
        config = load_config(write_project(folder, smtp=None, connections=1))
        files = read_sequences(config)
        until = NOW + timedelta(days=7)
        if name.startswith("issue"):
            (folder / "newsletters").mkdir()
            audience = "nobody" if name == "issue_tag" else 'company = "Nobody"'
            (folder / "newsletters" / "news.md").write_text(
                f'---\nsubject: "News"\npurpose: "What changed."\naudience: {json.dumps(audience)}'
                "\n---\nHi.\n"
            )
            config = load_config(folder / "config.toml")
        started = time.perf_counter()
        found: object
        if name == "plan":
            found = len(upcoming(store, config, now=NOW, until=until))
        elif name == "plan_whole":
            state = plan_state(store, config, files)
            found = len(plan_rows(store, config, state, files, now=NOW, until=until))
        elif name == "status":
            found = gather(store).states
        elif name == "status_read":
            tally = OutboxTally()
            for number, doc in enumerate(outbox.documents(store)):
                tally.add(number, doc)
            found = gather(store, tally).states
        elif name in ("dashboard", "dashboard_whole"):
            snapshot = Snapshot(most=200_000 if name == "dashboard" else None)
            try:
                snapshot.sync(store)
                found = "read"
            except TooLargeToHold as refused:
                found = f"refused ({refused.count})"
        else:
            found = len(scoped._waiting_for(store, config, ["news.md"], {}))
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"name": name, "seconds": seconds, "peak_mb": peak, "found": found}


def run(name: str, dsn: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--one", name, dsn], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def report(dsn: str, size: int) -> None:
    print(f"  {size} contacts {'now':>24} {'before':>17} {'ratio':>8}")
    for label, now_name, before_name in MEASURES:
        now = run(now_name, dsn)
        if before_name == "dashboard_whole" and size > WHOLE_STORE_UP_TO:
            print(f"  {label:<30} {now['seconds']:6.1f}s {now['peak_mb']:5.0f}MB  {now['found']}")
            continue
        before = run(before_name, dsn)
        if now_name in ("plan", "status"):
            assert now["found"] == before["found"], (now, before)
        ratio = before["seconds"] / now["seconds"] if now["seconds"] else float("inf")
        print(
            f"  {label:<30} {now['seconds']:6.1f}s {now['peak_mb']:5.0f}MB"
            f" {before['seconds']:7.1f}s {before['peak_mb']:5.0f}MB {ratio:6.1f}x  {now['found']}",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--dsn", help="a database filled already (its size is --size)")
    parser.add_argument("--one", nargs=2, metavar=("NAME", "DSN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one), default=str))
        return 0
    if args.dsn:
        report(args.dsn, args.size)
        return 0
    from tests.postgres import PgServer

    server = PgServer()
    try:
        with server.database() as dsn:
            print(f"filled {args.size} contacts in {fill(dsn, args.size):.0f}s", flush=True)
            report(dsn, args.size)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
