"""Tell systemd how the daemon is doing: ``sd_notify(3)`` over ``$NOTIFY_SOCKET``.

With ``Type=notify`` systemd waits for ``READY=1`` before it counts the
service as started (so a unit ordered after toma starts once the store is
open, recovered and locked), shows ``STATUS=`` in ``systemctl status``, and
takes ``STOPPING=1`` as the start of a clean stop. Without ``NOTIFY_SOCKET``
(not under systemd) every call does nothing. The protocol is one datagram
of ``KEY=value`` lines to a Unix socket; a name starting with ``@`` is in the
abstract namespace.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

T = TypeVar("T")
# How often a running tick says it is alive. Well under a second: the watchdog pings
# once per half WatchdogSec at most (Watchdog.beat), so a pulse that comes just short
# of that is refused and the next one pings, a gap of half WatchdogSec plus a pulse.
# With pulses of a second and WatchdogSec=2s that gap reached the full 2 s.
PULSE_SECONDS = 0.25


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (``"READY=1"``, ``"STATUS=…"``…); whether systemd was there to hear it."""
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    target = "\0" + address[1:] if address[0] == "@" else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(state.encode("utf-8", "replace"))
    except OSError:
        return False  # systemd gone or socket unusable: the daemon goes on regardless
    return True


class Watchdog:
    """``WATCHDOG=1`` at most every half ``WatchdogSec``, each time the daemon shows life.

    systemd passes ``WatchdogSec=`` as ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``,
    the process meant). :meth:`beat` is called from the daemon's own loop and,
    during a tick, from the tick's event loop (``Worker.alive``): a daemon whose
    loop stops turning stops beating, and systemd restarts it after
    ``WatchdogSec``. Without ``WATCHDOG_USEC`` it is not :attr:`enabled`.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = dict(os.environ if environ is None else environ)
        usec = self._environ.get("WATCHDOG_USEC", "")
        pid = self._environ.get("WATCHDOG_PID", "")
        meant = not pid or (pid.isdigit() and int(pid) == os.getpid())
        self.interval = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 and meant else 0.0
        self._last = -self.interval

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def beat(self) -> None:
        now = time.monotonic()
        if self.enabled and now - self._last >= self.interval:
            self._last = now
            notify("WATCHDOG=1", self._environ)


async def pulsing(work: Awaitable[T], alive: Callable[[], object] | None) -> T:
    """``work``, calling ``alive`` every second while the event loop turns (if there is one)."""
    if alive is None:
        return await work

    async def pulse() -> None:
        while True:
            alive()
            await asyncio.sleep(PULSE_SECONDS)

    beating = asyncio.create_task(pulse())
    try:
        return await work
    finally:
        beating.cancel()
