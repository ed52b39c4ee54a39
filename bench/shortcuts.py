"""What each private shortcut saves, measured against the plain way in one run.

    .venv/bin/python bench/shortcuts.py [--records 300000] [--messages 2000]

- ``toma.core._frozen.maker`` against the frozen dataclass's own ``__init__``:
  decoding the outbox records the daemon reads when it starts (300,000 at 100k
  contacts), from their stored documents.
- ``toma.mail._skeletons`` against rendering Markdown for every message: the
  HTML part of a 40-line template (bench/render_build.py's) for ``--messages``
  contacts.

The builder's worker process (``toma.daemon.builder``) is measured by
bench/tick.py: what it saves is the event loop's time, shown as the ratio of a
tick's send rate to a bare send loop's. Medians of 3 runs; compare the ratios,
not absolute figures across machines.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from render_build import LAYOUT, TEMPLATE, contexts

from toma.core import outbox
from toma.core.outbox import MessageState, OutboxRecord
from toma.mail.render import Templates


def median(run: Callable[[], object]) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def documents(count: int) -> list[dict[str, Any]]:
    start = datetime(2026, 3, 2, 9, tzinfo=UTC)
    return [
        OutboxRecord(
            key=f"c{n}@example.org|seq|step{n % 3}",
            contact=f"c{n}@example.org",
            kind="sequence",
            ref=f"seq/step{n % 3}",
            sequence="seq",
            step=f"step{n % 3}",
            template="seq/step.md",
            state=MessageState.SENT,
            due_at=start + timedelta(minutes=n),
            attempts=1,
            sent_at=start + timedelta(minutes=n, seconds=2),
            message_id=f"<{n}@example.com>",
            code=250,
            updated_at=start + timedelta(minutes=n, seconds=2),
            subject="Good to meet you",
        ).to_doc()
        for n in range(count)
    ]


def frozen(count: int) -> None:
    docs = documents(count)
    shortcut = median(lambda: [OutboxRecord.from_doc(doc) for doc in docs])
    original = outbox._make_record
    outbox._make_record = OutboxRecord  # the dataclass's __init__, __post_init__ and all
    try:
        plain = median(lambda: [OutboxRecord.from_doc(doc) for doc in docs])
    finally:
        outbox._make_record = original
    print(
        f"_frozen.maker    {count:>7,} outbox records decoded: {plain:.2f} s plain, "
        f"{shortcut:.2f} s with maker ({plain / shortcut:.2f}x)"
    )


def skeletons(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "templates"
        (folder / "layouts").mkdir(parents=True)
        (folder / "layouts" / "default.html").write_text(LAYOUT, encoding="utf-8")
        (folder / "t.md").write_text(TEMPLATE, encoding="utf-8")
        ctxs = contexts(count)

        def render_all(templates: Templates) -> Callable[[], object]:
            return lambda: [templates.render("t.md", c) for c in ctxs]

        shaped = Templates(folder)
        shortcut = median(render_all(shaped))
        plain_templates = Templates(folder)
        # Every body takes the ordinary path: Markdown rendered for each message.
        plain_templates._shapes.html = lambda _t, _s, _v, ordinary: ordinary()  # type: ignore[method-assign]
        plain = median(render_all(plain_templates))
        assert [r.html for r in render_all(shaped)()] == [  # type: ignore[attr-defined]
            r.html
            for r in render_all(plain_templates)()  # type: ignore[attr-defined]
        ]
    print(
        f"_skeletons       {count:>7,} messages rendered:        {plain:.2f} s plain, "
        f"{shortcut:.2f} s with skeletons ({plain / shortcut:.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    frozen(args.records)
    skeletons(args.messages)


if __name__ == "__main__":
    main()
