"""What a flush of the embedded store costs as history grows.

Builds a store of contacts and message records (~350-byte documents), then, in a
fresh process, measures: load time, the cost of a transaction changing 1 and
100 documents, another instance catching up, a compaction, file sizes and peak
memory. Prints figures only; nothing here asserts on time.

    .venv/bin/python bench/store_flush.py            # 10k+500k and 100k+500k documents
    .venv/bin/python bench/store_flush.py --quick    # a small run, a few seconds
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from toma.store import CONTACTS, MESSAGES, TinyStore
from toma.store.embedded.journal import encode_doc

FULL = [(10_000, 500_000), (100_000, 500_000)]
QUICK = [(1_000, 20_000), (5_000, 20_000)]
BATCH = 10_000  # documents per transaction while building
FLUSH_RUNS = {1: 50, 100: 20}


def contact(n: int) -> dict[str, Any]:
    return {
        "email": f"person.{n}@example-{n % 97}.com",
        "first_name": "Firstname",
        "last_name": f"Lastname{n}",
        "company": f"Company {n % 1000} Ltd",
        "timezone": "Europe/Lisbon",
        "status": "active",
        "tags": ["client", "met", f"group-{n % 20}"],
        "fields": {
            "met_where": "Web Summit, Lisbon",
            "met_when": "2024-11-12",
            "met_why": "talked about keeping in touch with past clients",
        },
        "created_at": "2024-11-12T10:00:00+00:00",
        "updated_at": "2024-11-13T09:30:00+00:00",
    }


def message(n: int, contacts: int, state: str = "sent") -> dict[str, Any]:
    return {
        "contact": f"person.{n % contacts}@example-{n % contacts % 97}.com",
        "kind": "sequence",
        "sequence": "new-acquaintance",
        "step": f"step-{n % 7}",
        "state": state,
        "message_id": f"<{n}.{n * 7919 % 1_000_003:x}@toma.example.com>",
        "subject": "Good to meet you at Web Summit",
        "planned_at": "2025-01-14T09:01:00+00:00",
        "sent_at": "2025-01-14T09:01:07+00:00",
        "attempts": 1,
        "error": None,
    }


def batches(count: int, make: Callable[[int], dict[str, Any]]) -> Iterator[list[tuple[int, Any]]]:
    for start in range(0, count, BATCH):
        yield [(n, make(n)) for n in range(start, min(start + BATCH, count))]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def store_bytes(data_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(data_dir.iterdir()) if p.suffix != ".lock"}


# -- the phases, each in its own process so that peak memory is its own ------------------


def phase_build(data_dir: Path, contacts: int, messages: int) -> dict[str, Any]:
    started = time.perf_counter()
    with TinyStore(data_dir) as store:
        for batch in batches(contacts, contact):
            with store.transaction() as tx:
                for _, doc in batch:
                    tx.put(CONTACTS, doc["email"], doc)
        for batch in batches(messages, lambda n: message(n, contacts)):
            with store.transaction() as tx:
                for n, doc in batch:
                    tx.put(MESSAGES, f"msg-{n}", doc)
        built = time.perf_counter() - started
        before = store_bytes(data_dir)
        started = time.perf_counter()
        store.compact()
        compacted = time.perf_counter() - started
    return {
        "build_s": built,
        "transactions": -(-contacts // BATCH) - (-messages // BATCH),
        "files_before_compact": before,
        "compact_s": compacted,
        "files": store_bytes(data_dir),
        "peak_rss_mb": peak_rss_mb(),
    }


def timed_flushes(store: TinyStore, changed: int, runs: int, size: tuple[int, int]) -> list[float]:
    """Seconds per transaction that rewrites ``changed`` existing message records."""
    contacts, messages = size
    times = []
    for run in range(runs):
        started = time.perf_counter()
        with store.transaction() as tx:
            for n in range(changed):
                key = (run * changed + n) * 7 % messages
                tx.put(MESSAGES, f"msg-{key}", message(key, contacts, state=f"bounced-{run}"))
        times.append(time.perf_counter() - started)
    return times


def phase_use(data_dir: Path, contacts: int, messages: int) -> dict[str, Any]:
    started = time.perf_counter()
    store = TinyStore(data_dir)
    loaded = time.perf_counter() - started
    rss_after_load = peak_rss_mb()
    result: dict[str, Any] = {"load_s": loaded, "rss_after_load_mb": rss_after_load}
    sizes_before = store_bytes(data_dir)
    for changed, runs in FLUSH_RUNS.items():
        journal_before = sum(store_bytes(data_dir).values())
        times = timed_flushes(store, changed, runs, (contacts, messages))
        grown = sum(store_bytes(data_dir).values()) - journal_before
        result[f"flush_{changed}"] = {
            "median_ms": statistics.median(times) * 1000,
            "max_ms": max(times) * 1000,
            "journal_bytes_per_flush": grown / runs,
        }
    snapshot = next(name for name in sizes_before if name.startswith("snapshot-"))
    result["snapshot_untouched_by_flushes"] = (
        store_bytes(data_dir)[snapshot] == sizes_before[snapshot]
    )
    result["catch_up_ms"] = catch_up_ms(store, data_dir, (contacts, messages))
    started = time.perf_counter()
    store.compact()
    result["compact_s"] = time.perf_counter() - started
    result["files"] = store_bytes(data_dir)
    started = time.perf_counter()
    sum(1 for _ in store.all(MESSAGES))
    result["iterate_messages_s"] = time.perf_counter() - started
    started = time.perf_counter()
    for n in range(10_000):
        store.get(MESSAGES, f"msg-{n * 37 % messages}")
    result["get_us"] = (time.perf_counter() - started) / 10_000 * 1e6
    store.close()
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def catch_up_ms(store: TinyStore, data_dir: Path, size: tuple[int, int]) -> float:
    """Another instance, already loaded, reading one new commit (the second instance
    costs this process a second copy of the store, which shows in the peak memory)."""
    other = TinyStore(data_dir)
    times = []
    for _ in range(20):
        timed_flushes(store, 1, 1, size)
        started = time.perf_counter()
        other.refresh()
        times.append(time.perf_counter() - started)
    other.close()
    return statistics.median(times) * 1000


# -- driver ------------------------------------------------------------------------------


def run_phase(phase: str, data_dir: Path, contacts: int, messages: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--phase",
            phase,
            "--dir",
            str(data_dir),
            "--contacts",
            str(contacts),
            "--messages",
            str(messages),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out.splitlines()[-1])
    return result


def mb(size: float) -> str:
    return f"{size / 1e6:,.1f} MB" if size >= 100_000 else f"{size / 1e3:,.1f} kB"


def files_text(files: dict[str, int]) -> str:
    return ", ".join(f"{name} {mb(size)}" for name, size in files.items())


def report(contacts: int, messages: int, build: dict[str, Any], use: dict[str, Any]) -> None:
    avg = (len(encode_doc(contact(1))) + len(encode_doc(message(1, contacts)))) / 2
    print(f"\n{contacts:,} contacts + {messages:,} messages (documents ~{avg:.0f} B of JSON)")
    rows = [
        (
            "build",
            f"{build['build_s']:.1f} s in {build['transactions']} transactions "
            f"of {BATCH:,} documents, compacting as it went",
        ),
        ("files after build", files_text(build["files_before_compact"])),
        ("compaction after build", f"{build['compact_s']:.2f} s"),
        ("files after compaction", files_text(build["files"])),
        ("peak memory, build", f"{build['peak_rss_mb']:,.0f} MB RSS"),
        ("load (fresh process)", f"{use['load_s']:.2f} s, {use['rss_after_load_mb']:,.0f} MB RSS"),
    ]
    for changed in FLUSH_RUNS:
        flush = use[f"flush_{changed}"]
        rows.append(
            (
                f"flush changing {changed} doc{'s' if changed > 1 else ''}",
                f"median {flush['median_ms']:.2f} ms, max {flush['max_ms']:.2f} ms, "
                f"+{flush['journal_bytes_per_flush']:,.0f} B of journal",
            )
        )
    rows += [
        ("snapshot rewritten by a flush", "no" if use["snapshot_untouched_by_flushes"] else "YES"),
        ("other instance catching up 1 commit", f"median {use['catch_up_ms']:.2f} ms"),
        ("get (one document)", f"{use['get_us']:.1f} µs"),
        ("all(messages), copies", f"{use['iterate_messages_s']:.2f} s"),
        ("compaction (full snapshot rewrite)", f"{use['compact_s']:.2f} s"),
        ("files after", files_text(use["files"])),
        (
            "peak memory, load + flushes",
            f"{use['peak_rss_mb']:,.0f} MB RSS (includes a second instance for catch-up)",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run")
    parser.add_argument("--phase", choices=["build", "use"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--contacts", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--messages", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "build":
        print(json.dumps(phase_build(args.dir, args.contacts, args.messages)))
        return
    if args.phase == "use":
        print(json.dumps(phase_use(args.dir, args.contacts, args.messages)))
        return
    started = time.perf_counter()
    for contacts, messages in QUICK if args.quick else FULL:
        with tempfile.TemporaryDirectory(prefix="toma-bench-") as tmp:
            data_dir = Path(tmp) / "data"
            build = run_phase("build", data_dir, contacts, messages)
            use = run_phase("use", data_dir, contacts, messages)
            report(contacts, messages, build, use)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
