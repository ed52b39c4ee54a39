"""SMTP throughput on loopback: an aiosmtpd sink in its own process, a bare client loop.

The sink runs in a separate process so that it does not share the client's
event loop or GIL; it only counts what it accepts. The client sends N prebuilt
messages (~4 KB) over C reused aiosmtplib connections, on the event loop toma
sends on (``toma.eventloop``), and prints messages per second. ``--toma`` also
runs the same messages through ``SmtpTransport`` and ``send_all``, to show
what the transport adds to the bare loop.

    python bench/smtp_bare.py -n 2000 -c 4 [--toma]

As a library::

    with start_sink() as sink:
        rate = eventloop.run(bare_send(sink.host, sink.port, build_messages(2000), 4))
        assert sink.count() == 2000
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import multiprocessing.sharedctypes
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aiosmtplib

from toma import eventloop

HOST = "127.0.0.1"
SENDER = "owner@example.com"


def _sink_main(conn: multiprocessing.connection.Connection, counter: Any) -> None:
    """Child process: serve SMTP on a free port, count accepted messages, run until killed."""
    from aiosmtpd.smtp import SMTP

    class Counting:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            with counter.get_lock():
                counter.value += 1
            return "250 OK"

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        handler = Counting()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="sink.localhost", data_size_limit=None),
            host=HOST,
            port=0,
        )
        conn.send(server.sockets[0].getsockname()[1])
        conn.close()
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


@dataclass(frozen=True)
class Sink:
    host: str
    port: int
    process: multiprocessing.process.BaseProcess
    counter: Any

    def count(self) -> int:
        """Messages the sink has accepted so far."""
        with self.counter.get_lock():
            return int(self.counter.value)

    def wait_for(self, expected: int, timeout: float = 10.0) -> int:
        """The count once it reaches ``expected`` (or when ``timeout`` runs out)."""
        deadline = time.monotonic() + timeout
        while self.count() < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.count()


@contextmanager
def start_sink(timeout: float = 10.0) -> Iterator[Sink]:
    """An aiosmtpd sink in its own process on 127.0.0.1; stopped on exit."""
    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_sink_main, args=(child, counter), daemon=True)
    process.start()
    child.close()
    try:
        if not parent.poll(timeout):
            raise RuntimeError("the SMTP sink did not start")
        port = int(parent.recv())
        yield Sink(HOST, port, process, counter)
    finally:
        parent.close()
        process.terminate()
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join(5)


def build_messages(count: int, size: int = 4096) -> list[tuple[str, bytes]]:
    """``count`` (recipient, message) pairs, each message about ``size`` bytes with CRLF."""
    line = b"Just keeping in touch: a line of ordinary text for the body of the message.\r\n"
    messages = []
    for number in range(count):
        recipient = f"person{number}@example.com"
        head = (
            f"From: Owner <{SENDER}>\r\nTo: <{recipient}>\r\nSubject: Hello {number}\r\n"
            f"Message-ID: <bench-{number}@toma.test>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        ).encode()
        body = line * max(1, (size - len(head)) // len(line))
        messages.append((recipient, head + body))
    return messages


async def bare_send(
    host: str, port: int, messages: Sequence[tuple[str, bytes]], connections: int
) -> float:
    """Send every message over ``connections`` reused connections; messages per second."""
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in messages:
        queue.put_nowait(item)

    async def worker() -> None:
        smtp = aiosmtplib.SMTP(
            hostname=host, port=port, start_tls=False, local_hostname="bench.localhost", timeout=30
        )
        await smtp.connect()
        try:
            while not queue.empty():
                recipient, data = queue.get_nowait()
                await smtp.sendmail(SENDER, [recipient], data)
        finally:
            await smtp.quit()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return len(messages) / (time.perf_counter() - started)


async def toma_send(
    host: str, port: int, messages: Sequence[tuple[str, bytes]], connections: int
) -> float:
    """The same messages through ``SmtpTransport`` and ``send_all``; messages per second."""
    from toma.config import Smtp
    from toma.transports import Envelope, Outcome, SmtpTransport, send_all

    config = Smtp(
        host=host,
        port=port,
        security="none",
        concurrency=connections,
        rate_per_minute=10_000_000,
        timeout=30.0,
    )
    envelopes = [
        Envelope(key=str(number), sender=SENDER, recipients=(recipient,), data=data)
        for number, (recipient, data) in enumerate(messages)
    ]
    started = time.perf_counter()
    async with SmtpTransport(config) as transport:
        results = await send_all(transport, envelopes)
    elapsed = time.perf_counter() - started
    failed = [r for r in results if r.outcome is not Outcome.SENT]
    if failed:
        raise RuntimeError(f"{len(failed)} not sent, first: {failed[0]}")
    return len(messages) / elapsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--messages", type=int, default=2000)
    parser.add_argument("-c", "--connections", type=int, default=4)
    parser.add_argument("--size", type=int, default=4096, help="approximate message size")
    parser.add_argument("--toma", action="store_true", help="also measure SmtpTransport")
    args = parser.parse_args(argv)

    messages = build_messages(args.messages, args.size)
    average = sum(len(data) for _, data in messages) // len(messages)
    with start_sink() as sink:
        # A few messages first, so connection set-up and imports are not measured.
        eventloop.run(bare_send(sink.host, sink.port, messages[:20], 1))
        before = sink.wait_for(20)
        rate = eventloop.run(bare_send(sink.host, sink.port, messages, args.connections))
        received = sink.wait_for(before + len(messages)) - before
        print(
            f"bare aiosmtplib on {eventloop.name()}: {len(messages)} messages of ~{average} B "
            f"over {args.connections} connections: {rate:,.0f} msg/s (sink received {received})"
        )
        if received != len(messages):
            return 1
        if args.toma:
            before = sink.count()
            rate = eventloop.run(toma_send(sink.host, sink.port, messages, args.connections))
            received = sink.wait_for(before + len(messages)) - before
            print(f"SmtpTransport + send_all: {rate:,.0f} msg/s (sink received {received})")
            if received != len(messages):
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
