"""The store on PostgreSQL: several processes, on several machines, on one database.

Theory of operation
-------------------
**Tables.** Every table of the store is rows of one relation, ``toma_documents``
(table, key, document as ``json``, insertion order, claim). ``json`` rather than
``jsonb`` so that a document reads back with its fields in the order they were
written, as from the embedded store; the questions the records layer asks
(:meth:`PgStore.where`: a message's state, contact, kind and reference; a
conversation's contact, kind and the message it answers; an invoice's status
and contact) have expression indexes, so they never read a whole table. The
schema is plain versioned SQL (:mod:`toma.store.postgres.schema`).

**Writes.** A transaction is a database transaction that first takes one
advisory lock (``pg_advisory_xact_lock``), so writers take turns exactly as
with the embedded store's ``store.lock``, whatever machine they run on. That
one rule gives two things at once: every transaction reads what all the
earlier ones committed (the last check of :mod:`toma.daemon.sending` holds
here as it does on one machine), and the change feed's numbers
(``toma_changes.seq``, a sequence) are handed out in commit order, so a reader
at mark *n* misses nothing by asking for what is above *n*. A write holds the
lock for milliseconds (a batch of marks or outcomes); the slow part of
sending, the SMTP conversation, runs outside it, in every daemon at once.
Puts are sent in batches (one ``INSERT ... SELECT FROM unnest`` of arrays sent
in binary) before the next read of the transaction and at its end: a statement
per document costs the daemon more in the driver than the database spends on
it, and arrays sent as text are escaped a character at a time.

**Connections.** A pool (psycopg_pool) of a few connections, each in
autocommit between transactions. The store interface is synchronous, as the
embedded store's is; the daemon already runs its store writes in a worker
thread (:mod:`toma.daemon.sending`), so its event loop never waits on the
database, and one interface serves the commands and the daemon alike.

**Reads** go to the database each time and see what is committed; there is
nothing for :meth:`PgStore.refresh` to catch up with. :meth:`PgStore.all`
reads a page of rows at a time in insertion order, up to the last row that
existed when it began.

**Several daemons.** :meth:`PgStore.daemon_lock` does not exclude anybody: it
takes a number from the sequence ``toma_daemons`` and holds the session-level
advisory lock ``(DAEMON_CLASS, number)`` on a connection of its own for the
daemon's whole life. On that connection it also *claims* the messages it is
about to send (:meth:`PgStore.claim`): a session-level advisory lock per
message, keyed by a hash of its key, taken a batch at a time and let go once
the message's outcome is written. Claims keep daemons from all talking to
their servers about one message; they are not what holds at most once. That
is the write that first records a message ``sending``, right before its
hand-over: it stores the daemon's number beside the document
(``claimed_by``), and, being a write, it runs under the write lock and reads
the record as the last daemon left it. A daemon that finds the message
already past ``planned`` (another daemon sent or rescheduled it since this
one planned it) leaves it alone (:func:`toma.store.claims.taken`). Two
daemons can therefore plan the same message, but only one records it
``sending``, and only that one hands it over: never one key twice.

A daemon that dies (SIGKILL, a lost machine) loses its connection, and
PostgreSQL releases its advisory locks, its claims with them (a machine that
vanishes without closing its socket is found out by the server's TCP
keepalive probes, which the daemon's session sets to about a minute and a
half). What it had recorded ``sending`` is then the messages ``sending`` whose
number holds no lock (:meth:`PgTransaction.abandoned_claims`, under the write
lock); every daemon looks for them at the start of each tick and settles them
as a restart after a crash does (:func:`toma.core.outbox.recover_after_crash`):
``unknown``, since they may have been handed over (or planned again, for a
record an earlier version wrote ahead of its hand-over). A daemon that lost
its own lock while still running (a network cut long enough for the server to
drop the session) refuses to write any more, since what it has in flight may
already be somebody else's: it stops with a :class:`~toma.errors.StoreError`.
"""

from __future__ import annotations

from toma.store.postgres.store import PgStore, PgTransaction, describe

__all__ = ["PgStore", "PgTransaction", "describe"]
