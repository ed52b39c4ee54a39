"""How well, and how fast, toma reads the real-world corpus in tests/corpus.

    .venv/bin/python bench/classify_corpus.py [--rounds N]

Prints class accuracy per class, per source and, for bounces, per MTA with the
failed-recipient and hard/soft accuracy; how many bounces could be tied to the
message they return (toma acts on a bounce only when it is, see
toma.core.reading.match); then messages read per second.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

from toma.core.reading.classify import Reading, read_message

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "corpus"


def recipients_right(expected: dict[str, object], reading: Reading) -> bool:
    want = set(expected["recipients"])  # type: ignore[arg-type]
    allowed = want | set(expected.get("also", []))  # type: ignore[arg-type]
    return reading.kind == "bounce" and want <= set(reading.recipients) <= allowed


def table(title: str, rows: dict[str, list[int]], columns: list[str]) -> None:
    print(f"\n{title}")
    print(f"  {'':<18}{'n':>5}" + "".join(f"{c:>12}" for c in columns))
    for name in sorted(rows, key=lambda k: (-rows[k][0], k)):
        n, *rights = rows[name]
        cells = "".join(f"{r / n:>12.1%}" if n else f"{'-':>12}" for r in rights)
        print(f"  {name:<18}{n:>5}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="passes for the speed figure")
    args = parser.parse_args()

    expected: dict[str, dict[str, object]] = json.loads((CORPUS / "expected.json").read_text())
    data = {name: (CORPUS / name).read_bytes() for name in expected}
    readings = {name: read_message(raw) for name, raw in data.items()}

    by_class: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_source: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_mta: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    hard_judged = hard_right = dated = dated_right = 0
    returned = tieable = removed = 0
    for name, exp in expected.items():
        reading = readings[name]
        right = reading.kind == exp["class"]
        for row in (by_class[str(exp["class"])], by_source[str(exp["source"])]):
            row[0] += 1
            row[1] += right
        if exp["class"] == "bounce":
            row = by_mta[str(exp["mta"])]
            row[0] += 1
            row[1] += right
            row[2] += recipients_right(exp, reading)
            if exp["hard"] is not None:
                hard_judged += 1
                hard_right += reading.hard == exp["hard"]
            row[3] += exp["hard"] is None or reading.hard == exp["hard"]
            has_id = bool(reading.original_message_id or reading.in_reply_to or reading.references)
            returned += has_id
            # Tied had toma sent it: a returned Message-ID and a failed recipient named.
            tieable += has_id and bool(reading.recipients)
            removed += not has_id and b"Message removed" in data[name]
        if exp["class"] == "auto-reply":
            dated += 1
            got = reading.back_on.isoformat() if reading.back_on else None
            dated_right += right and got == exp["back_on"]

    total = len(expected)
    right_total = sum(row[1] for row in by_class.values())
    bounces = by_class["bounce"][0]
    recipients = sum(row[2] for row in by_mta.values())
    print(f"corpus: {total} messages ({CORPUS})")
    print(f"class accuracy:           {right_total}/{total} = {right_total / total:.1%}")
    print(f"failed-recipient accuracy: {recipients}/{bounces} = {recipients / bounces:.1%}")
    print(
        f"hard/soft accuracy:        {hard_right}/{hard_judged} = "
        f"{hard_right / hard_judged:.1%} (bounces whose report says which)"
    )
    print(f"return-date accuracy:      {dated_right}/{dated} auto-replies")
    print(
        f"returned Message-ID:       {returned}/{bounces} = {returned / bounces:.1%} of bounces "
        f"({tieable} also name a failed recipient: tied, had toma sent them)"
    )
    kept = bounces - removed
    print(
        f"  of those whose source kept the returned message: {returned}/{kept} = "
        f"{returned / kept:.1%} ({removed} had it replaced by 'Message removed')"
    )
    table("by class", by_class, ["class"])
    table("by source", by_source, ["class"])
    table("bounces by MTA", by_mta, ["class", "recipients", "hard/soft"])

    start = time.perf_counter()
    for _ in range(args.rounds):
        for raw in data.values():
            read_message(raw)
    elapsed = time.perf_counter() - start
    count = args.rounds * len(data)
    print(f"\nspeed: {count} messages in {elapsed:.2f} s = {count / elapsed:,.0f} messages/s")


if __name__ == "__main__":
    main()
