"""A whole tick, measured: throughput against a bare SMTP loop, and cost at scale.

1. ``throughput``: one tick (enrol, plan, render, build, record, send) that
   delivers N sequence messages over SMTP to an aiosmtpd sink in its own
   process, against a bare aiosmtplib loop sending N prebuilt messages over
   the same number of connections, on the same event loop (see
   ``toma.eventloop``). Printed as a ratio (target >= 0.5).
2. ``scale``: a tick over 1k, 10k and 100k contacts, each enrolled in three
   sequences with a sent history, each size in a fresh process so that peak
   memory is its own (target: 100k in under 5 s and under 500 MB). The first
   tick of a daemon decodes the whole store; the next ticks decode only what
   changed since, so the next tick (an hour later, again 1% of the contacts
   due) is measured too.

    python bench/tick.py [-n 2000] [-c 4] [--sizes 1000,10000,100000] [--skip-scale]
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from smtp_bare import bare_send, build_messages, start_sink

from toma import eventloop
from toma.core.contacts import make_contact
from toma.core.enrolments import Enrolment
from toma.core.outbox import MessageState, advance, new_record, sequence_key
from toma.daemon.worker import Worker
from toma.store import CONTACTS, ENROLMENTS, MESSAGES, TinyStore, open_store

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday morning in Europe
# How long ago the contacts numbered n % 100 == key were enrolled: their second
# step (30 days after the first) is due 10 days ago, or half an hour from now.
AGO = {0: timedelta(days=40), 50: timedelta(days=30, minutes=-30)}

TEMPLATE = """---
subject: "How are things, {{ contact.first_name }}?"
---
Hi {{ contact.first_name }},

a couple of months have passed since we met at {{ contact.met_where }}, and I wondered how
things turned out with {{ contact.met_why }}. I have been thinking about our conversation,
and a few ideas came up that might be useful to you.

- The first is about keeping things **simple**: fewer moving parts, fewer surprises.
- The second is about *timing*: asking at the right moment matters more than asking well.
- The third is about people: the ones you already know are the ones who help most.

If you ever want to think something through over a coffee or a call, I'm happy to.
There is no agenda here, and nothing to buy: just a conversation between two people
who enjoyed the last one.

Hope all is well at {{ contact.company | default("your end") }}, and that the projects you
mentioned are going the way you hoped. If anything changed, I would love to hear about it.

All the best,
{{ sender.first_name }}
"""


def write_project(folder: Path, *, smtp: tuple[str, int] | None, connections: int) -> Path:
    transport = '[transport]\nkind = "maildir"\npath = "var/outbox"\n'
    if smtp:
        transport = (
            f'[transport]\nkind = "smtp"\n[smtp]\nhost = "{smtp[0]}"\nport = {smtp[1]}\n'
            f'security = "none"\nconcurrency = {connections}\nrate_per_minute = 1000000\n'
        )
    (folder / "config.toml").write_text(
        '[owner]\nname = "Alex Example"\nemail = "alex@example.com"\n'
        'timezone = "Europe/Berlin"\n'
        + transport
        + '[windows.default]\ndays = ["mon","tue","wed","thu","fri","sat","sun"]\n'
        'start = "00:00"\nend = "23:59"\n'
    )
    (folder / "sequences").mkdir()
    for name, tag in (("one", "a"), ("two", "b"), ("three", "c")):
        steps = "".join(
            f'[[steps]]\nid = "s{n}"\nafter = "{n * 30}d"\ntemplate = "note.md"\n' for n in range(3)
        )
        (folder / "sequences" / f"{name}.toml").write_text(
            f'name = "{name}"\nenroll_tag = "{tag}"\n{steps}'
        )
    (folder / "templates" / "layouts").mkdir(parents=True)
    (folder / "templates" / "note.md").write_text(TEMPLATE)
    (folder / "templates" / "layouts" / "default.html").write_text(
        "<html><body style='font-family:serif'>{{ body }}</body></html>"
    )
    return folder / "config.toml"


def fill(folder: Path, count: int, *, tags: list[str], history: bool) -> None:
    """``count`` contacts; with ``history``, enrolled in three sequences a while ago."""
    store = TinyStore(folder / "var" / "data")
    batch = 5000
    for start in range(0, count, batch):
        with store.transaction() as tx:
            for n in range(start, min(count, start + batch)):
                email = f"person{n}@example.org"
                contact = make_contact(
                    email,
                    first_name=f"P{n}",
                    tags=tags,
                    company="Firm",
                    fields={"met_where": "the fair", "met_why": "pricing"},
                )
                tx.put(CONTACTS, email, contact.to_doc())
                if not history:
                    continue
                # One contact in a hundred has a step due now, another one in a hundred
                # has one due in half an hour (for the next tick); the others are
                # mid-sequence.
                enrolled_at = NOW - AGO.get(n % 100, timedelta(days=10))
                for name in ("one", "two", "three"):
                    enrolment = Enrolment(
                        contact=email, sequence=name, enrolled_at=enrolled_at, source="tag"
                    )
                    tx.put(ENROLMENTS, enrolment.key, enrolment.to_doc())
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
                        record,
                        MessageState.SENT,
                        at=enrolled_at,
                        message_id=f"<{n}.{name}@example.com>",
                    )
                    tx.put(MESSAGES, key, sent.to_doc())
    # Start the tick from a fresh snapshot: left to chance, whether the tick's first
    # commit crosses the compaction threshold (and rewrites the whole snapshot, a cost
    # amortised over many ticks) would depend on the size.
    store.compact()
    store.close()


def throughput(count: int, connections: int, runs: int = 3) -> None:
    """Tick and bare loop taken in turns, ``runs`` times each: the machine is shared, so
    a ratio of medians measured side by side says more than one run of each."""
    ticks: list[float] = []
    bares: list[float] = []
    with start_sink() as sink:
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                config = write_project(folder, smtp=(sink.host, sink.port), connections=connections)
                fill(folder, count, tags=["a"], history=False)
                store = open_store(folder / "var" / "data")
                worker = Worker(config, store, sync_inbox=False)
                started = time.perf_counter()
                report = worker.run_once(NOW)
                ticks.append(time.perf_counter() - started)
                store.close()
                assert report.sent == count, report
            before = sink.count()
            rate = eventloop.run(
                bare_send(sink.host, sink.port, build_messages(count, size=4096), connections)
            )
            bares.append(count / rate)
            assert sink.count() - before == count
    tick_seconds, bare_seconds = statistics.median(ticks), statistics.median(bares)
    print(
        f"throughput, {count} messages over {connections} connections, median of {runs}, "
        f"event loop {eventloop.name()}:"
    )
    print(
        f"  whole tick (enrol, plan, render, build, record, send): {tick_seconds:6.2f} s "
        f"{count / tick_seconds:7.0f} msg/s"
    )
    print(
        f"  bare aiosmtplib loop, prebuilt 4 KB messages:          {bare_seconds:6.2f} s "
        f"{count / bare_seconds:7.0f} msg/s"
    )
    print(
        f"  ratio tick / bare: {bare_seconds / tick_seconds:.2f}  (target >= 0.5); "
        f"each run: {', '.join(f'{b / t:.2f}' for t, b in zip(ticks, bares, strict=True))}"
    )


def scale_one(count: int) -> dict[str, float]:
    """Run in a fresh process: build a store, then time one quiet tick over it."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = write_project(folder, smtp=None, connections=1)
        fill(folder, count, tags=["a", "b", "c"], history=True)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        store = open_store(folder / "var" / "data")
        opened = time.perf_counter() - started
        worker = Worker(config, store, sync_inbox=False)
        started = time.perf_counter()
        report = worker.run_once(NOW)
        tick_seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        following = worker.run_once(NOW + timedelta(hours=1))
        next_seconds = time.perf_counter() - started
        store.close()
        return {
            "contacts": count,
            "open_s": opened,
            "tick_s": tick_seconds,
            "sent": report.sent,
            "peak_rss_mb": peak / 1024,
            "rss_before_mb": rss_before / 1024,
            "next_tick_s": next_seconds,
            "next_sent": following.sent,
            "next_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }


def scale(sizes: list[int]) -> None:
    print("scale: one tick, contacts in three sequences with history, 1% of them due")
    print(
        f"  {'contacts':>9} {'open':>7} {'tick':>7} {'peak RSS':>9}  per 1k contacts"
        f"   {'next tick':>9} {'peak RSS':>9}"
    )
    rows = []
    for size in sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--scale-one", str(size)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"  {size:>9} {row['open_s']:6.2f}s {row['tick_s']:6.2f}s "
            f"{row['peak_rss_mb']:7.0f}MB  {1000 * row['tick_s'] / size:6.3f} s"
            f"          {row['next_tick_s']:8.2f}s {row['next_peak_rss_mb']:7.0f}MB"
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        growth = (last["tick_s"] / first["tick_s"]) / (last["contacts"] / first["contacts"])
        print(
            f"  growth of tick time relative to linear, {first['contacts']} -> "
            f"{last['contacts']}: {growth:.2f} (1.0 = linear)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("-c", type=int, default=4)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--scale-one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scale_one:
        print(json.dumps(scale_one(args.scale_one)))
        return 0
    if not args.skip_throughput:
        throughput(args.n, args.c)
    if not args.skip_scale:
        scale([int(size) for size in args.sizes.split(",")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
