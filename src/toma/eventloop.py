"""The event loop that toma's sends run on: uvloop where it is installed, else asyncio's own.

Sending is bound by the event loop: every SMTP command is a write, a
wake-up and a read, and a tick of thousands of messages spends more CPU in
the loop than in rendering. uvloop (libuv underneath) does the same work
for about a tenth less CPU in the sending process (``bench/tick.py``). On a
platform without it (Windows) asyncio's loop does the same job, only slower.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop``, or None for asyncio's default."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def name() -> str:
    """Which loop :func:`run` uses: ``uvloop`` or ``asyncio``."""
    return "asyncio" if loop_factory() is None else "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop this module picks."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
