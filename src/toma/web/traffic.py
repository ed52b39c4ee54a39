"""The traffic in and out (:func:`toma.reports.dashboard.traffic`), kept up to date.

Made once from the whole outbox and inbox record; then, after each tick, only
the records the snapshot says were written are read again, and each moment
goes into (or out of) lists kept in time order. Each contact's latest is kept
too; when a moment that was someone's latest goes (a message erased, or its
moment changed), that contact's latest is found again among their messages,
which the snapshot's index of the contact field names.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from toma.reports.dashboard import Moment, Traffic, assemble, received_moment, sent_moment
from toma.store import CONVERSATIONS, MESSAGES
from toma.web.snapshot import Snapshot

_AT = lambda moment: moment.at  # noqa: E731


class TrafficView:
    def __init__(self) -> None:
        self._position: tuple[int, int] | None = None
        self._by_key: dict[str, dict[str, Moment]] = {MESSAGES: {}, CONVERSATIONS: {}}
        self._traffic: Traffic | None = None
        self._ordered: dict[str, list[Moment]] = {MESSAGES: [], CONVERSATIONS: []}
        self.assembled = 0  # times everything was read afresh (for the tests)

    def traffic(self, reader: Snapshot) -> Traffic:
        written = reader.written_since(self._position)
        self._position = reader.position
        if written is None or self._traffic is None:
            return self._assemble(reader)
        added: list[tuple[str, Moment]] = []
        gone: set[str] = set()  # contacts whose latest moment went
        changed = False
        for table, key in written:
            kept = self._by_key.get(table)
            if kept is None:
                continue
            doc = reader.get(table, key)
            new = None if doc is None else _moment_of(table, doc)
            old = kept.get(key)
            if new == old:
                continue
            changed = True
            if old is not None:
                if not self._remove(table, old):
                    return self._assemble(reader)
                if self._was_latest(table, old):
                    if not old.contact:
                        return self._assemble(reader)
                    gone.add(old.contact)
            if new is None:
                del kept[key]
            else:
                kept[key] = new
                insort(self._ordered[table], new, key=_AT)
                added.append((table, new))
        if changed:
            self._traffic = self._with(self._traffic, added, gone, reader)
        return self._traffic

    def _assemble(self, reader: Snapshot) -> Traffic:
        self.assembled += 1
        for table, kept in self._by_key.items():
            kept.clear()
            for key, doc in reader.all(table):
                moment = _moment_of(table, doc)
                if moment is not None:
                    kept[key] = moment
        self._traffic = assemble(
            self._by_key[MESSAGES].values(), self._by_key[CONVERSATIONS].values()
        )
        self._ordered = {
            MESSAGES: list(self._traffic.sent),
            CONVERSATIONS: list(self._traffic.received),
        }
        return self._traffic

    def _was_latest(self, table: str, old: Moment) -> bool:
        before = self._traffic
        if before is None:
            return True
        if old.known and before.last_seen.get(old.contact) == old.at:
            return True
        return table == MESSAGES and before.last_out.get(old.contact) == old.at

    def _remove(self, table: str, old: Moment) -> bool:
        """Take ``old`` out of the order; False when it is not there (assemble)."""
        ordered = self._ordered[table]
        index = bisect_left(ordered, old.at, key=_AT)
        while index < len(ordered) and ordered[index].at == old.at:
            if ordered[index] == old:
                del ordered[index]
                return True
            index += 1
        return False

    def _with(
        self,
        before: Traffic,
        added: list[tuple[str, Moment]],
        gone: set[str],
        reader: Snapshot,
    ) -> Traffic:
        last_out = dict(before.last_out)
        last_seen = dict(before.last_seen)
        for contact in gone:
            # Their latest is among their messages as they are now (the added ones too).
            sent = self._moments(MESSAGES, contact, reader)
            seen = sent + [m for m in self._moments(CONVERSATIONS, contact, reader) if m.known]
            for latest, moments in ((last_out, sent), (last_seen, seen)):
                if moments:
                    latest[contact] = max(m.at for m in moments)
                else:
                    latest.pop(contact, None)
        for table, moment in added:
            _later(last_seen, moment)
            if table == MESSAGES:
                _later(last_out, moment)
        return Traffic(
            tuple(self._ordered[MESSAGES]),
            tuple(self._ordered[CONVERSATIONS]),
            last_out,
            last_seen,
        )

    def _moments(self, table: str, contact: str, reader: Snapshot) -> list[Moment]:
        kept = self._by_key[table]
        found = (kept.get(key) for key, _doc in reader.where(table, contact=contact))
        return [m for m in found if m is not None and m.contact == contact]


def _later(latest: dict[str, datetime], moment: Moment) -> None:
    if moment.known and (moment.contact not in latest or moment.at > latest[moment.contact]):
        latest[moment.contact] = moment.at


def _moment_of(table: str, doc: Mapping[str, Any]) -> Moment | None:
    return sent_moment(doc) if table == MESSAGES else received_moment(doc)
