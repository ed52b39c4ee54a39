"""The one-click endpoint's recorder: an unsubscribe made durable before the page answers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from toma.logs import fields
from toma.store import Store, TinyStore
from toma.store.records import contacts as addressbook
from toma.timeutil import Clock

log = logging.getLogger(__name__)

ONE_CLICK = "one-click unsubscribe"
# Short: the person is waiting for the page. A store held longer than this gets
# them a "please try again", not a success.
RECORD_LOCK_TIMEOUT = 8.0


class OneClick:
    """``on_unsubscribe`` for :class:`toma.web.endpoint.UnsubscribeEndpoint`: durable on return.

    Each call commits the contact's new status and its suppression entry in
    one transaction of a store instance of its own (opened on the first call,
    so a daemon nobody unsubscribes from holds its store once), beside the
    daemon's: two instances are as safe as two processes, and the daemon's
    tick and last check before each send read the change from the files. An
    error (disk full, the store locked past ``lock_timeout``) is raised, and the
    endpoint answers "please try again". Calls are serialised.
    """

    def __init__(
        self,
        data_dir: Path,
        clock: Clock,
        *,
        lock_timeout: float = RECORD_LOCK_TIMEOUT,
        opener: Callable[[], Store] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.clock = clock
        self.lock_timeout = lock_timeout
        self._opener = opener  # another store than the embedded one in data_dir ([store])
        self._store: Store | None = None
        self._lock = threading.Lock()

    def __call__(self, address: str) -> None:
        with self._lock:
            if self._store is None:
                self._store = (
                    self._opener()
                    if self._opener is not None
                    else TinyStore(self.data_dir, lock_timeout=self.lock_timeout)
                )
            contact = addressbook.unsubscribe(
                self._store, address, now=self.clock.now(), by=ONE_CLICK
            )
        log.info(
            "unsubscribed", extra=fields(contact=address, by="one-click", known=contact is not None)
        )

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
