"""The outgoing-mail interface, and the loop that drives it.

Theory of operation
-------------------

A :class:`Transport` hands one :class:`Envelope` at a time to a mail system and
says what became of it as a :class:`Result`. It never raises for a failure that
concerns one message; it raises only when the transport itself cannot be used
(a bad configuration found when it is opened).

The outcomes are chosen for at-most-once delivery::

    SENT       the server took responsibility for the message (250 after DATA)
    PERMANENT  a 5xx to MAIL, RCPT or DATA: this message will not go; others go on
    TEMPORARY  certainly not accepted (no connection, a 4xx, a drop before the
               body was handed over): safe to try again
    UNKNOWN    the body was handed over and the final answer never came: it may
               have been delivered, so it must never be retried automatically
    WITHDRAWN  the caller's last check before the hand-over stopped it (see
               ``handing`` below): nothing was sent

``send`` takes an optional ``handing`` callback. The transport calls it once
per attempt, as the attempt starts (so that the caller notes the hand-over
while the server is being talked to), and awaits the future it returns right
before the server (or the mailbox) could first take the message: SMTP before
DATA, Maildir before the link into ``new/``. The future is True once the
caller has durably noted the hand-over, False to withdraw the message (the
transport then gives it up: WITHDRAWN). Nothing before that point can have
delivered the message; a crash after the caller's note leaves it in doubt.

:func:`send_all` runs a batch through a transport with the transport's
concurrency, retries TEMPORARY results with exponential back-off and jitter
until a deadline, and stops taking new messages when asked (SIGTERM). Every
envelope ends with exactly one final result, reported through ``on_result`` as
soon as it is known, so the caller can record it before the batch is over.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import TracebackType
from typing import Protocol, Self

from toma.logs import fields

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Envelope:
    """One message to hand over: who it is from, whom it is for, the bytes.

    ``key`` is the caller's idempotency key, carried through untouched so that a
    result can be matched to its record. ``data`` is a complete RFC 5322 message
    with CRLF line endings.
    """

    key: str
    sender: str
    recipients: tuple[str, ...]
    data: bytes


class Outcome(StrEnum):
    SENT = "sent"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"
    UNKNOWN = "unknown"
    WITHDRAWN = "withdrawn"


# Called as an attempt starts, its future awaited right before the hand-over; False
# withdraws the message (see the module docstring).
Handing = Callable[[str], "asyncio.Future[bool]"]


@dataclass(frozen=True)
class Result:
    """What became of one envelope. ``detail`` is one line: the server's answer or the error.

    ``retry_soon`` is False for a TEMPORARY result that another try within the
    batch cannot mend (a refused login): it ends the envelope's retries there.
    """

    key: str
    outcome: Outcome
    code: int | None
    detail: str
    retry_soon: bool = True


class Transport(Protocol):
    """Something that delivers envelopes: ``async with transport: await transport.send(e)``."""

    @property
    def concurrency(self) -> int:
        """How many sends may usefully run at once."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    async def send(self, envelope: Envelope, handing: Handing | None = None) -> Result:
        """Deliver one envelope; a per-message failure is a result, never an exception.

        ``handing(envelope.key)`` is called as the attempt starts and its future
        awaited before the hand-over (see the module docstring); an exception
        from it ends the send and is raised.
        """
        ...


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def one_line(text: str, limit: int = 500) -> str:
    """Collapse a multi-line server answer or error text to one bounded line.

    The text is the server's: its control characters (a NUL, which PostgreSQL
    cannot store in a document; a terminal escape, which would reach the log and
    the screen) become U+FFFD.
    """
    lines = str(text).splitlines()
    flat = " ".join(_CONTROL.sub("\ufffd", part.strip()) for part in lines if part.strip())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off with jitter: ``first * factor**(n-1)``, capped, times 0.5–1.

    The jitter keeps a batch of messages that failed together (a server restart)
    from coming back together and failing together again.
    """

    first: float = 0.5
    factor: float = 2.0
    cap: float = 60.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the ``attempt``-th failure (1 for the first)."""
        base = min(self.cap, self.first * self.factor ** max(0, attempt - 1))
        return base * random.uniform(0.5, 1.0)


ResultCallback = Callable[[Result], Awaitable[None] | None]


def _monotonic_deadline(retry_until: datetime | timedelta | float | None) -> float | None:
    """A wall-clock deadline or a duration, as a point on the monotonic clock.

    A wall-clock deadline is read once and turned into a remaining duration, so
    a clock change during the batch neither stretches nor cuts the retries.
    """
    if retry_until is None:
        return None
    if isinstance(retry_until, datetime):
        if retry_until.tzinfo is None:
            raise ValueError("retry_until must be an aware datetime")
        remaining = (retry_until - datetime.now(UTC)).total_seconds()
    elif isinstance(retry_until, timedelta):
        remaining = retry_until.total_seconds()
    else:
        remaining = float(retry_until)
    return time.monotonic() + max(0.0, remaining)


async def send_all(
    transport: Transport,
    envelopes: Iterable[Envelope],
    *,
    on_result: ResultCallback | None = None,
    retry_until: datetime | timedelta | float | None = None,
    stop: asyncio.Event | None = None,
    backoff: Backoff | None = None,
) -> list[Result]:
    """Send every envelope through an open ``transport``; one final result each, in order.

    - Up to ``transport.concurrency`` sends run at once.
    - A TEMPORARY result is retried after a back-off while the next attempt can
      start before ``retry_until`` (an aware datetime, or a duration in seconds
      or as a timedelta, measured on the monotonic clock), unless it says another
      try cannot help (``retry_soon``). ``None`` means one attempt only. Past the
      deadline the envelope ends as TEMPORARY, for a later tick to pick up.
    - When ``stop`` is set no new send starts; sends in progress finish. What was
      not attempted, or was waiting for a retry, ends as TEMPORARY.
    - ``on_result`` (plain or async) is called once per envelope with its final
      result, as soon as it is known; an exception from it ends the batch.
    """
    items = list(envelopes)
    results: list[Result | None] = [None] * len(items)
    last: list[Result | None] = [None] * len(items)
    attempts = [0] * len(items)
    deadline = _monotonic_deadline(retry_until)
    policy = backoff or Backoff()
    stop = stop or asyncio.Event()
    workers = max(1, transport.concurrency)
    loop = asyncio.get_running_loop()
    ready: asyncio.Queue[int | None] = asyncio.Queue()
    timers: list[asyncio.TimerHandle] = []
    remaining = len(items)

    for index in range(len(items)):
        ready.put_nowait(index)

    def wake_all() -> None:
        for _ in range(workers):
            ready.put_nowait(None)

    async def finish(index: int, result: Result) -> None:
        nonlocal remaining
        results[index] = result
        remaining -= 1
        if remaining == 0:
            wake_all()
        if on_result is not None:
            outcome = on_result(result)
            if inspect.isawaitable(outcome):
                await outcome

    async def worker() -> None:
        while True:
            index = await ready.get()
            if index is None or stop.is_set():
                return
            result = await transport.send(items[index])
            if result.outcome is not Outcome.TEMPORARY:
                await finish(index, result)
                continue
            last[index] = result
            attempts[index] += 1
            wait = policy.delay(attempts[index])
            if (
                stop.is_set()
                or not result.retry_soon
                or deadline is None
                or time.monotonic() + wait >= deadline
            ):
                await finish(index, result)
                continue
            log.debug(
                "send retry",
                extra=fields(
                    key=result.key,
                    attempt=attempts[index],
                    wait=round(wait, 2),
                    detail=result.detail,
                ),
            )
            timers.append(loop.call_later(wait, ready.put_nowait, index))

    async def watch_stop() -> None:
        await stop.wait()
        wake_all()

    if remaining == 0:
        return []
    watcher = asyncio.create_task(watch_stop())
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(worker())
    except BaseExceptionGroup as errors:
        # An error ends the batch: raised as itself, for the caller to report in one line.
        raise _first(errors) from None
    finally:
        watcher.cancel()
        for handle in timers:
            handle.cancel()
        timers.clear()

    # Only a stop leaves envelopes without a result: never tried, or waiting for a retry.
    for index, result in enumerate(results):
        if result is None:
            previous = last[index]
            await finish(
                index,
                Result(
                    key=items[index].key,
                    outcome=Outcome.TEMPORARY,
                    code=previous.code if previous else None,
                    detail=f"stopped before a retry: {previous.detail}"
                    if previous
                    else "stopped before sending",
                ),
            )
    return [result for result in results if result is not None]


def _first(errors: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error of a group that is not a cancellation (the others' consequence)."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [errors]
    while pending:
        error = pending.pop(0)
        if isinstance(error, BaseExceptionGroup):
            pending[:0] = list(error.exceptions)
        else:
            leaves.append(error)
    for error in leaves:
        if not isinstance(error, asyncio.CancelledError):
            return error
    return leaves[0] if leaves else errors
