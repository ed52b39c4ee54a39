"""Crashes in the middle of a tick: how many people a SIGKILL leaves in doubt.

Each round builds a project of N due messages (one sequence step each),
starts ``toma run --once`` in a child process against an aiosmtpd sink in
its own process, SIGKILLs the child once the sink has taken a chosen number
of messages (spread over the tick, from a fixed seed), then recovers the
store as the next start of the daemon would, and counts:

- ``unknown``: messages left in doubt (never resent on their own);
- ``never reached``: those of them the sink never received;
- ``resent``: messages planned again by the recovery (sent at the next tick).

A second tick then sends what is planned, and every recipient must have
received at most one message (at most once holds across the crash).

    python bench/crash.py [--rounds 8] [-n 300] [-c 4] [--delay 0.005] [--seed 12]

Bounded: ``rounds`` crashes, each waiting at most ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from tick import NOW, fill, write_project

from toma.daemon.worker import Worker
from toma.store import MESSAGES, open_store
from toma.timeutil import iso

HOST = "127.0.0.1"


def _sink_main(conn: multiprocessing.connection.Connection, log_path: str, delay: float) -> None:
    """Child process: accept every message, append its recipients to ``log_path``."""
    from aiosmtpd.smtp import SMTP

    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    class Recording:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            # One write per message: whole lines, even when the sink is stopped.
            os.write(fd, "".join(f"{rcpt}\n" for rcpt in envelope.rcpt_tos).encode())
            if delay:
                await asyncio.sleep(delay)
            return "250 OK"

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(Recording(), hostname="sink.localhost", data_size_limit=None),
            host=HOST,
            port=0,
        )
        conn.send(server.sockets[0].getsockname()[1])
        conn.close()
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


@contextmanager
def sink(log_path: Path, delay: float) -> Iterator[int]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_sink_main, args=(child, str(log_path), delay), daemon=True)
    process.start()
    child.close()
    try:
        if not parent.poll(10):
            raise RuntimeError("the SMTP sink did not start")
        yield int(parent.recv())
    finally:
        parent.close()
        process.terminate()
        process.join(5)


def received(log_path: Path) -> Counter[str]:
    if not log_path.exists():
        return Counter()
    return Counter(line for line in log_path.read_text().splitlines() if line)


def states(folder: Path) -> dict[str, str]:
    store = open_store(folder / "var" / "data")
    try:
        return {doc["contact"]: doc["state"] for _key, doc in store.all(MESSAGES)}
    finally:
        store.close()


def one_round(
    count: int, connections: int, kill_after: int, delay: float, timeout: float
) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        log_path = folder / "received.txt"
        with sink(log_path, delay) as port:
            config = write_project(folder, smtp=(HOST, port), connections=connections)
            fill(folder, count, tags=["a"], history=False)
            command = [
                sys.executable,
                "-m",
                "toma",
                "--config",
                str(config),
                "run",
                "--once",
                "--now",
                iso(NOW),
            ]
            child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            try:
                while sum(received(log_path).values()) < kill_after:
                    if child.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"the tick ended or stalled before {kill_after} went")
                    time.sleep(0.002)
                child.send_signal(signal.SIGKILL)
            finally:
                child.wait(timeout=30)
            at_kill = received(log_path)
            store = open_store(folder / "var" / "data")
            try:
                Worker(config, store, sync_inbox=False).recover(NOW)
            finally:
                store.close()
            after = states(folder)
            unknown = [address for address, state in after.items() if state == "unknown"]
            planned = [address for address, state in after.items() if state == "planned"]
            # The next start: everything planned goes, nothing in doubt goes again.
            subprocess.run(
                [*command[:-1], iso(NOW.replace(minute=5))],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=timeout,
            )
            final = received(log_path)
            return {
                "received_at_kill": sum(at_kill.values()),
                "unknown": len(unknown),
                "never_reached": sum(1 for address in unknown if address not in at_kill),
                "resent": len(planned),
                "twice": sum(1 for n in final.values() if n > 1),
                "missing": sum(
                    1
                    for address, state in states(folder).items()
                    if state != "unknown" and address not in final
                ),
            }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("-c", type=int, default=4)
    parser.add_argument(
        "--delay",
        type=float,
        default=0.005,
        help="seconds the sink waits before answering each message",
    )
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    logging.getLogger("toma").setLevel(logging.ERROR)  # the recovery logs every record
    chooser = random.Random(args.seed)
    totals: Counter[str] = Counter()
    print(f"{args.rounds} SIGKILLs during {args.n}-message ticks over {args.c} connections:")
    print(
        f"  {'killed after':>12} {'unknown':>8} {'never reached':>14} {'resent':>7} "
        f"{'twice':>6} {'missing':>8}"
    )
    for _ in range(args.rounds):
        kill_after = chooser.randrange(args.n // 10, args.n * 9 // 10)
        row = one_round(args.n, args.c, kill_after, args.delay, args.timeout)
        totals.update(row)
        print(
            f"  {row['received_at_kill']:>12} {row['unknown']:>8} {row['never_reached']:>14} "
            f"{row['resent']:>7} {row['twice']:>6} {row['missing']:>8}"
        )
    rounds = max(1, args.rounds)
    print(
        f"  total: {totals['unknown']} unknown ({totals['unknown'] / rounds:.1f} per crash), "
        f"{totals['never_reached']} of them never reached the server; "
        f"{totals['resent']} sent at the next tick; {totals['twice']} received twice; "
        f"{totals['missing']} neither received nor in doubt"
    )
    return 1 if totals["twice"] or totals["missing"] else 0


if __name__ == "__main__":
    sys.exit(main())
