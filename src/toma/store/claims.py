"""Claims: which daemon sends a message, when several share one store.

On the embedded store one daemon holds the data directory, so every message
it plans is its own, and what a crash left ``sending`` is recovered once, at
the next start. On PostgreSQL any number of daemons plan the same messages.
Three rules:

- :func:`taken`: the write that first records a message ``sending`` (right
  before its hand-over, see :mod:`toma.daemon.sending`) leaves it alone when
  the stored record has moved past what a planner sends from since this
  daemon read it: another daemon sent or rescheduled it. That write runs under
  the store's write lock, so exactly one daemon's write of a record in
  ``planned`` (or absent) succeeds: never one key twice, on either backend.
- :class:`Claimer`: on a shared store a daemon first *claims* the messages it
  is about to send, a batch at a time, and sends only those it got. This costs
  no write: it keeps the daemons from all talking to their servers about the
  same message (MAIL, RCPT, a file under the Maildir's ``tmp/``) only for the
  check above to call all but one back. (Before that, a daemon leaves out
  of the chunk it is about to build what others have handed over already:
  :mod:`toma.daemon.claiming`.) A dead daemon's claims end with its session.
  The rule above, not the claim, is what holds at most once. On
  PostgreSQL claims are advisory locks, kept in the server's shared lock
  table: a daemon holds a bounded few (about two batches ahead of each chunk
  in flight, the sends in flight and the outcomes not yet written; some 200
  with the defaults), never a tick's all.
- :func:`starting_point`: daemons that walked a tick's messages in one order
  would all claim the same next batch, and the slowest to get there could
  lose every claim of the tick. Each daemon starts its walk elsewhere (by its
  number, spread by the golden ratio) and goes round.
- :func:`abandoned`: the ``sending`` records no living daemon will finish, for a
  recovery to settle as after a crash. On a shared store these are a dead
  daemon's, looked for at every tick; on the embedded store, all of them, at
  the start only (the daemon lock says nobody else is sending).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from toma.core.outbox import MessageState, OutboxRecord
from toma.store.base import MESSAGES, Document, Store, Transaction
from toma.store.records.query import matching
from toma.timeutil import parse_moment

TAKEN = "another daemon took it"


@runtime_checkable
class Claiming(Protocol):
    """A transaction of a store that several daemons share."""

    def abandoned_claims(self) -> list[tuple[str, Document]]: ...


@runtime_checkable
class Claimer(Protocol):
    """A store that several daemons share: claims of the messages a daemon is about to send."""

    def claim(self, keys: Collection[str]) -> set[str]:
        """Of ``keys``, those this daemon now holds: none of them held by another."""
        ...

    def release(self, keys: Collection[str]) -> None:
        """Let others claim ``keys`` again (each claimed by this daemon, once)."""
        ...


def claimer(store: Store) -> Claimer | None:
    """Where ``store``'s daemons claim their messages; None when nobody else sends."""
    return store if shared(store) and isinstance(store, Claimer) else None


_GOLDEN = 0.6180339887498949  # consecutive numbers land far apart, whatever their count


def starting_point(count: int, daemon: int) -> int:
    """Where daemon number ``daemon`` starts in a tick's ``count`` messages (see above)."""
    if count <= 0:
        return 0
    return int(count * ((daemon * _GOLDEN) % 1.0)) % count


def shared(store: Store) -> bool:
    """Whether other daemons may be sending from ``store`` at the same time."""
    return getattr(store, "daemon_number", None) is not None


def taken(before: dict[str, Any] | None, now: datetime) -> bool:
    """Whether a record stored as ``before`` is no longer this daemon's to send.

    Absent, or ``planned`` and due, it may be sent; anything else means
    another daemon got there first (``sending``, ``sent``, …) or rescheduled
    it for later.
    """
    if before is None:
        return False
    if before.get("state") != MessageState.PLANNED:
        return True
    retry = before.get("next_attempt_at")
    if isinstance(retry, str) and retry:
        try:
            return parse_moment(retry) > now
        except ValueError:
            return False
    return False


def abandoned(tx: Transaction, *, starting: bool) -> list[OutboxRecord]:
    """The ``sending`` records that no living daemon will finish (see the module docstring)."""
    if isinstance(tx, Claiming):
        docs = tx.abandoned_claims()
    elif starting:
        docs = list(matching(tx, MESSAGES, state=MessageState.SENDING.value))
    else:
        return []
    return [OutboxRecord.from_doc(doc) for _key, doc in docs]
