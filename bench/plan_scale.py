"""How planning scales: time and peak memory for 1k, 10k and 100k contacts.

Each contact is enrolled in three sequences and has the history a real
installation would have: the steps that came due before ``now`` were sent.
Contacts are spread over five zones. For every size the script times

- ``tick``: ``plan(state, now)``, what the daemon does every minute;
- ``week``: ``plan(state, now, until=now + 7 days)``, what ``toma plan`` shows;

(median of several runs), then measures the peak memory of one ``week`` plan
with tracemalloc (a separate run: tracing slows everything down). Growth
ratios compare each size with the one before: ~10 for a tenfold size is linear.

    .venv/bin/python bench/plan_scale.py [--sizes 1000,10000,100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from toma.config import Pace
from toma.core.contacts import Contact
from toma.core.enrolments import Enrolment
from toma.core.outbox import MessageState, OutboxRecord, repeat_key, sequence_key
from toma.core.planner import PlanState, plan
from toma.core.sequences import OnReply, Repeat, Sequence, Step
from toma.timeutil import parse_duration

NOW = datetime(2026, 3, 18, 10, 30, tzinfo=UTC)  # a Wednesday
ZONES = ("", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Pacific/Auckland")


def make_sequences() -> dict[str, Sequence]:
    def seq(name: str, steps: list[tuple[str, str]], repeat: str | None) -> Sequence:
        return Sequence(
            name=name,
            description="",
            enroll_tag=None,
            on_reply=OnReply("stop"),
            window="default",
            steps=tuple(Step(i, parse_duration(a), f"{name}/{i}.md") for i, a in steps),
            repeat=Repeat(parse_duration(repeat), f"{name}/hello.md") if repeat else None,
            file=Path(f"sequences/{name}.toml"),
        )

    return {
        s.name: s
        for s in (
            seq(
                "new-acquaintance",
                [("nice-to-meet", "1d"), ("article", "2w"), ("coffee", "1mo")],
                "90d",
            ),
            seq(
                "client-care",
                [("thanks", "2d"), ("check-in", "3w"), ("review", "2mo"), ("referral", "1mo")],
                "60d",
            ),
            seq("not-yet", [("goodbye", "1h"), ("useful", "6w")], "120d"),
        )
    }


def make_state(size: int, seed: int = 7) -> PlanState:
    rng = random.Random(seed)
    sequences = make_sequences()
    contacts: dict[str, Contact] = {}
    enrolments: list[Enrolment] = []
    history: dict[str, OutboxRecord] = {}
    for n in range(size):
        email = f"person{n}@example.com"
        contacts[email] = Contact(email, timezone=ZONES[n % len(ZONES)])
        for name, sequence in sequences.items():
            enrolled = NOW - timedelta(days=rng.uniform(0, 240))
            enrolments.append(Enrolment(email, name, enrolled))
            # The history the daemon would have written: each step that came due went,
            # a little after it was due.
            moment = enrolled
            count = 0
            for step in sequence.steps:
                moment = step.after.after(moment) + timedelta(hours=rng.uniform(0, 30))
                if moment >= NOW:
                    break
                key = sequence_key(email, name, step.id)
                history[key] = _sent(key, email, name, step.id, moment)
            else:
                assert sequence.repeat is not None
                while True:
                    moment = sequence.repeat.every.after(moment) + timedelta(
                        hours=rng.uniform(0, 30)
                    )
                    if moment >= NOW:
                        break
                    count += 1
                    key = repeat_key(email, name, count)
                    history[key] = _sent(key, email, name, f"repeat-{count}", moment)
    return PlanState(
        contacts=contacts,
        enrolments=enrolments,
        history=history,
        sequences=sequences,
        pace=Pace(min_gap=parse_duration("3d"), max_late=parse_duration("14d")),
        default_tz="Europe/Berlin",
    )


def _sent(key: str, email: str, name: str, step: str, at: datetime) -> OutboxRecord:
    return OutboxRecord(
        key=key,
        contact=email,
        kind="sequence",
        ref=f"{name}/{step}",
        sequence=name,
        step=step,
        template=f"{name}/{step}.md",
        state=MessageState.SENT,
        due_at=at,
        attempts=1,
        sent_at=at,
        updated_at=at,
    )


def timed(state: PlanState, until: datetime | None, runs: int) -> tuple[float, int, int, int]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = plan(state, NOW, until=until)
        times.append(time.perf_counter() - started)
    return statistics.median(times), len(result.due), len(result.later), len(result.skipped)


def peak_memory(state: PlanState, until: datetime) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    plan(state, NOW, until=until)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def state_memory(size: int) -> int:
    tracemalloc.start()
    state = make_state(size)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del state
    return current


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    week = NOW + timedelta(days=7)

    print(
        f"{'contacts':>9} {'enrol.':>7} {'history':>8} {'tick s':>8} {'week s':>8} "
        f"{'due':>6} {'later':>6} {'skip':>5} {'plan MB':>8} {'state MB':>9} "
        f"{'x tick':>7} {'x week':>7}"
    )
    previous: tuple[int, float, float] | None = None
    for size in sizes:
        state = make_state(size)
        tick, due, _, skipped = timed(state, None, args.runs)
        span, _, later, _ = timed(state, week, args.runs)
        peak = peak_memory(state, week)
        held = len(state.history)
        enrolled = len(state.enrolments)
        del state
        stored = state_memory(size)
        growth = ("", "")
        if previous is not None:
            factor = size / previous[0]
            growth = (
                f"{tick / previous[1] / factor * 10:.1f}",
                f"{span / previous[2] / factor * 10:.1f}",
            )
        print(
            f"{size:>9} {enrolled:>7} {held:>8} {tick:>8.3f} {span:>8.3f} {due:>6} {later:>6} "
            f"{skipped:>5} {peak / 2**20:>8.1f} {stored / 2**20:>9.1f} "
            f"{growth[0]:>7} {growth[1]:>7}"
        )
        previous = (size, tick, span)
    print("x tick / x week: time growth per tenfold size (10 = linear)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
