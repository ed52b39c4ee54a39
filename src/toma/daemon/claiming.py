"""One send's claims, when several daemons share the store (see :mod:`toma.store.claims`).

Two things keep daemons off each other's messages during a send:

- :func:`left_to_send`, before a chunk is built: the messages another daemon
  has already handed over (or rescheduled) are dropped, read from the stored
  records without a claim: one indexed read a chunk. Each daemon plans every
  message due; without this, each would also render every one of them only to
  lose its claim.
- :class:`ClaimsAhead`, before each send: a send whose message is not yet
  claimed claims the next ``CLAIM_BATCH`` and waits; once fewer than
  ``CLAIM_BATCH`` claimed messages are left ahead of a send, the next batch is
  claimed in the background. So at most ``CLAIM_AHEAD`` messages of a chunk are
  claimed and not yet sent; each claim is let go once its outcome is written
  (or at the end, for those never sent).

Neither holds at most once: the hand-over's write does (:func:`toma.store.claims.taken`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import datetime
from typing import Any

from toma.store import MESSAGES, Store, claims
from toma.store.records.query import by_keys

CLAIM_BATCH = 32  # claimed in one round trip, on a store several daemons share
CLAIM_AHEAD = 2 * CLAIM_BATCH  # at most this many claimed and not yet sent, per chunk in flight

Spawn = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


def left_to_send(store: Store, keys: Sequence[str], now: datetime) -> set[str]:
    """Of ``keys``, those no other daemon has handed over or rescheduled (one read)."""
    stored = by_keys(store, MESSAGES, list(keys))
    return {key for key in keys if not claims.taken(stored.get(key), now)}


class ClaimsAhead:
    """A send's claims (see the module docstring); every key is claimed when nobody else
    sends. A claim refused is noted in ``withdrawn``, with :data:`toma.store.claims.TAKEN`."""

    def __init__(self, store: Store, withdrawn: dict[str, str], spawn: Spawn) -> None:
        self.claimer = claims.claimer(store)
        self.withdrawn = withdrawn
        self.spawn = spawn
        self.order: list[str] = []
        self.position: dict[str, int] = {}
        self.claimed: set[str] = set()  # claimed, or refused (see withdrawn)
        self.holding: set[str] = set()  # claimed and not yet let go
        self.claiming = asyncio.Lock()
        self.ahead: asyncio.Task[None] | None = None  # claims made in the background
        self._ahead_keys: frozenset[str] = frozenset()

    def extend(self, keys: Iterable[str]) -> None:
        """Keys about to be sent, in the order of their sends."""
        for key in keys:
            self.position[key] = len(self.order)
            self.order.append(key)

    async def ensure(self, key: str) -> None:
        """Return once ``key`` is this daemon's to send, or withdrawn."""
        if self.claimer is None:
            return  # nobody else sends: every message is this daemon's
        while key not in self.claimed:
            if self.ahead is not None and key in self._ahead_keys:
                await asyncio.shield(self.ahead)  # a cancelled send leaves the claim alone
                continue
            async with self.claiming:
                if key not in self.claimed:  # else claimed by another send while this one waited
                    await self._claim(self._batch(self.position[key]))
        self._look_ahead(self.position[key])

    def let_go_soon(self, keys: list[str]) -> None:
        """Release, in the background, the claims of ``keys`` (those this daemon holds)."""
        if self.claimer is not None and any(key in self.holding for key in keys):
            self.spawn(self._let_go(keys))

    def let_go_all(self) -> None:
        """Release every claim still held (at the end: claimed and never sent)."""
        if self.claimer is not None and self.holding:
            self.claimer.release(sorted(self.holding))
            self.holding.clear()

    def _look_ahead(self, position: int) -> None:
        if self.ahead is not None and not self.ahead.done():
            return
        if self.ahead is not None:
            self.ahead.result()  # a claim that failed ends the send
        probe = position + CLAIM_BATCH
        if probe >= len(self.order) or self.order[probe] in self.claimed:
            return
        start = next(
            (at for at in range(position + 1, probe) if self.order[at] not in self.claimed), probe
        )
        batch = self._batch(start)
        if batch:
            self._ahead_keys = frozenset(batch)
            self.ahead = self.spawn(self._claim_when_free(batch))

    def _batch(self, start: int) -> list[str]:
        return [
            key
            for key in self.order[start : start + CLAIM_BATCH]
            if key not in self.claimed and key not in self._ahead_keys
        ]

    async def _claim_when_free(self, keys: list[str]) -> None:
        async with self.claiming:
            await self._claim(keys)

    async def _claim(self, keys: list[str]) -> None:
        assert self.claimer is not None  # noqa: S101 - only called on a shared store
        got = await asyncio.to_thread(self.claimer.claim, keys)
        for key in keys:
            if key not in got:
                self.withdrawn[key] = claims.TAKEN
        self.holding.update(got)
        self.claimed.update(keys)

    async def _let_go(self, keys: list[str]) -> None:
        done = [key for key in keys if key in self.holding]
        if done and self.claimer is not None:
            self.holding.difference_update(done)
            await asyncio.to_thread(self.claimer.release, done)
