"""One pooled SMTP connection and the waiting for closed ones to be gone."""

from __future__ import annotations

import asyncio

import aiosmtplib
from aiosmtplib.protocol import SMTPProtocol


class Slot:
    """One pooled connection (mutable on purpose: it is the pool's state)."""

    __slots__ = ("closing", "needs_reset", "smtp")

    def __init__(self) -> None:
        self.smtp: aiosmtplib.SMTP | None = None
        self.needs_reset = False
        # Connections closed but perhaps not yet gone (a TLS goodbye takes a round
        # trip); closing the transport waits for them, so none outlives the loop.
        self.closing: list[SMTPProtocol] = []

    @property
    def connected(self) -> bool:
        return self.smtp is not None and self.smtp.is_connected

    def drop(self) -> None:
        if self.smtp is not None:
            self.remember(self.smtp.protocol)
            self.smtp.close()
        self.smtp = None
        self.needs_reset = False

    def remember(self, protocol: SMTPProtocol | None) -> None:
        self.closing = [p for p in self.closing if p.transport is not None]
        if protocol is not None and protocol.transport is not None:
            self.closing.append(protocol)


async def settle(protocols: list[SMTPProtocol], timeout: float = 1.0) -> None:
    """Wait until closed connections are gone; abort those that take too long."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while any(p.transport is not None for p in protocols) and loop.time() < deadline:
        await asyncio.sleep(0.01)
    aborted = False
    for protocol in protocols:
        if isinstance(protocol.transport, asyncio.Transport):
            protocol.transport.abort()
            aborted = True
    if aborted:
        await asyncio.sleep(0)
