"""10,000 newsletter messages to a local SMTP sink: time, rate, peak memory.

The sink (aiosmtpd) runs in its own process; the send is what `toma newsletter
send` does: render and build in a worker process, send over the configured
connections, record every outcome.

    python bench/newsletter.py [-n 10000] [-c 4]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from smtp_bare import start_sink
from tick import fill, write_project

from toma.config import load_config
from toma.daemon.worker import Worker
from toma.store import open_store
from toma.store.records.newsletters import load

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

ISSUE = """---
subject: "Three things I learned this year, {{ contact.first_name }}"
purpose: "A thank-you to the people I worked with, and three lessons they may find useful."
audience: "a"
---
Hi {{ contact.first_name }},

this year was a good one, thanks to people like you at {{ contact.company }}.
Here are three things I learned, in case they are useful to you too:

1. **Ask early.** The question you hold back costs more later.
2. **Write it down.** A one-page summary beats a one-hour meeting.
3. **Say thank you.** Like this.

If any of it sparks a thought, just reply — I read every answer.

{{ sender.first_name }}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("-c", type=int, default=4)
    args = parser.parse_args()
    with start_sink() as sink, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config_path = write_project(folder, smtp=(sink.host, sink.port), connections=args.c)
        (folder / "newsletters").mkdir()
        (folder / "newsletters" / "issue.md").write_text(ISSUE)
        fill(folder, args.n, tags=["a"], history=False)
        store = open_store(folder / "var" / "data")
        worker = Worker(config_path, store, sync_inbox=False)
        issue = load(load_config(config_path), "issue.md")
        before = sink.count()
        started = time.perf_counter()
        report = asyncio.run(worker.send_newsletter(issue, NOW))
        seconds = time.perf_counter() - started
        store.close()
        received = sink.count() - before
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"newsletter: {args.n} recipients over {args.c} connections to a local sink")
    print(
        f"  sent {report.sent}, failed {report.failed}, unknown {report.unknown}; "
        f"the sink received {received}"
    )
    print(f"  time {seconds:.2f} s, rate {report.sent / seconds:.0f} msg/s")
    print(
        f"  peak RSS: sending process {own:.0f} MB, largest child (builder, sink) {children:.0f} MB"
    )
    return 0 if report.sent == received == args.n else 1


if __name__ == "__main__":
    sys.exit(main())
