"""The status report (:func:`toma.reports.status.gather`), kept up to date.

The report counts the whole outbox: at 10k contacts with a year of history,
80k messages read after every tick (some 70 ms). A :class:`StatusView` tallies
them once (:class:`toma.reports.status.OutboxTally`); then, before each page,
takes out the old document of each message the snapshot says was written
since and counts its new one in. The rest of the report (the last tick, the
mail set aside) is read as :func:`gather` reads it: a few documents.
"""

from __future__ import annotations

from toma.reports.status import OutboxTally, StatusReport, gather
from toma.store import MESSAGES
from toma.store.base import Document
from toma.web.snapshot import Snapshot


class StatusView:
    def __init__(self) -> None:
        self._position: tuple[int, int] | None = None
        self._tally = OutboxTally()
        self._counted: dict[str, Document] = {}  # each message as the tally counted it

    def report(self, reader: Snapshot) -> StatusReport:
        written = reader.written_since(self._position)
        self._position = reader.position
        if written is None:
            self._tally = OutboxTally()
            self._counted = dict(reader.all(MESSAGES))
            for key, doc in self._counted.items():
                self._tally.add(key, doc)
        else:
            for table, key in written:
                if table == MESSAGES:
                    self._follow(key, reader.get(MESSAGES, key))
        return gather(reader, self._tally)

    def _follow(self, key: str, new: Document | None) -> None:
        old = self._counted.get(key)
        if old is new:  # written twice since: counted at the first
            return
        if old is not None:
            self._tally.add(key, old, sign=-1)
            del self._counted[key]
        if new is not None:
            self._tally.add(key, new)
            self._counted[key] = new
