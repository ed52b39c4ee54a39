"""What decoding the PostgreSQL store's documents costs a tick: msgspec against json.

Every document a tick reads from PostgreSQL comes as JSON text and is decoded by
``toma.store.postgres.reads.decode`` (its string values interned). Measured two ways,
each way decoded by msgspec (as now) and by the standard library's json (as before),
runs alternated:

- the documents of bench/postgres.py's store (a contact, its three enrolments and
  their sent messages), as it writes them: microseconds a document;
- with ``--dsn``, a filled database (bench/postgres.py's): the contacts that can
  have something due by ``--ahead`` hours past its tick, read with their documents
  as a tick reads them (``toma.daemon.scoped.plan_state``): seconds and CPU-seconds.

    python bench/pg_decode.py [--dsn DSN --ahead 30]

Measured on 2 shared cores; documents (median of 5, the interning included), on a
busy moment and then a quiet one:

    table          json  msgspec  ratio      json  msgspec  ratio
    contacts      9.5us    5.4us  0.57      6.7us    4.3us  0.64
    enrolments    6.7us    3.3us  0.49      3.5us    1.9us  0.53
    messages     14.8us    5.8us  0.39      7.6us    4.7us  0.62

A tick's read at 1M contacts (``--dsn`` on a copy of bench/postgres.py's store,
``--ahead 30``: 20,000 contacts with their 60,000 enrolments and 60,000 messages),
median of 4 each: 2.95 s wall and 2.85 CPU-seconds with json; 2.18 s and 1.98
CPU-seconds with msgspec.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tick import NOW, write_project

import toma.store.postgres.reads as reads
from postgres import rows
from toma.store import CONTACTS, ENROLMENTS, MESSAGES

FAST = reads._fast  # msgspec's decoder, as the store uses it


def documents(count: int) -> dict[str, list[str]]:
    """The JSON of ``count`` contacts' documents, by table, as bench/postgres.py fills them."""
    texts: dict[str, list[str]] = {CONTACTS: [], ENROLMENTS: [], MESSAGES: []}
    for table, _key, text in rows(count):
        texts[table].append(text)
    return texts


def _alternated(runs: int) -> Iterator[str]:
    """Each way (json, msgspec) ``runs`` times, in turns that swap which goes first,
    the store decoding that way meanwhile; msgspec again once done."""
    ways = {"json": reads._json, "msgspec": FAST}
    try:
        for run in range(runs):
            for way in ("json", "msgspec") if run % 2 == 0 else ("msgspec", "json"):
                reads._fast = ways[way]  # type: ignore[assignment]
                yield way
    finally:
        reads._fast = FAST


def per_document(runs: int = 5) -> None:
    texts = documents(10_000)
    print(f"{'table':11s} {'json':>7s} {'msgspec':>8s}  ratio")
    for kind, batch in texts.items():
        took: dict[str, list[float]] = {"json": [], "msgspec": []}
        for way in _alternated(runs):
            start = time.perf_counter()
            for text in batch:
                reads.decode(text)
            took[way].append((time.perf_counter() - start) / len(batch) * 1e6)
        old, new = statistics.median(took["json"]), statistics.median(took["msgspec"])
        print(f"{kind:11s} {old:6.1f}us {new:7.1f}us  {new / old:.2f}")


def tick_read(dsn: str, ahead: float, runs: int = 4) -> None:
    from toma.config import load_config
    from toma.daemon.scoped import plan_state
    from toma.project.sequences import read_sequences
    from toma.store.postgres import PgStore

    with tempfile.TemporaryDirectory() as tmp, PgStore(dsn) as store:
        config = load_config(write_project(Path(tmp), smtp=None, connections=1))
        files = read_sequences(config)
        horizon = NOW + timedelta(hours=ahead)
        took: dict[str, list[tuple[float, float]]] = {"json": [], "msgspec": []}
        for way in _alternated(runs):
            before, start = os.times(), time.perf_counter()
            state = plan_state(store, config, files, horizon, ())
            wall, after = time.perf_counter() - start, os.times()
            cpu = after.user - before.user + after.system - before.system
            took[way].append((wall, cpu))
            print(f"{way:8s} {len(state.contacts)} contacts: {wall:.2f}s, {cpu:.2f} cpu-s")
        for way, figures in took.items():
            wall = statistics.median(w for w, _ in figures)
            cpu = statistics.median(c for _, c in figures)
            print(f"{way:8s} median {wall:.2f}s, {cpu:.2f} cpu-s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="a filled database: also time a tick's read of it")
    parser.add_argument("--ahead", type=float, default=30.0, help="hours past the tick")
    args = parser.parse_args()
    per_document()
    if args.dsn:
        tick_read(args.dsn, args.ahead)
    return 0


if __name__ == "__main__":
    sys.exit(main())
