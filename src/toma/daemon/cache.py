"""From the store to the planner's input, kept decoded between the daemon's ticks.

The planner (:mod:`toma.core.planner`) is pure; this module is the thin layer that
reads what it needs: the contacts, enrolments and outbox history from the
store, beside the sequence files as :mod:`toma.project.sequences` read them (a
broken file is reported and its sequence held).

Reading means decoding every contact, enrolment and outbox record into the
planner's frozen dataclasses: at 100k contacts in three sequences that is
700k documents, seconds of work. :func:`plan_state` does it all, for a command
that plans once. The daemon plans every tick over a store that changed a
little since the last one, so it keeps a :class:`PlanCache`: the decoded model
stays in memory between ticks, and each tick decodes only the keys that the
store's change feed (:meth:`~toma.store.base.Store.changes_since`) names.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

from toma.config import Config
from toma.core.contacts import Contact
from toma.core.enrolments import Enrolment
from toma.core.outbox import OutboxRecord
from toma.core.planner import PlanState
from toma.inbox.handwritten import CONTACTED_PREFIX
from toma.project.sequences import Files
from toma.store import CONTACTS, ENROLMENTS, MESSAGES, SYNC, Reader, Store
from toma.store.base import Changed, ChangeMark, Document
from toma.store.records.query import keyed_from, matching_any
from toma.timeutil import parse_moment


def plan_state(reader: Reader, config: Config, files: Files) -> PlanState:
    """Everything the planner needs, read afresh from ``reader``."""
    contacts = _decode_all(reader, CONTACTS, _ContactDecoder())
    enrolments = _decode_all(reader, ENROLMENTS, Enrolment.from_doc)
    history = _decode_all(reader, MESSAGES, OutboxRecord.from_doc)
    state = _state(contacts, tuple(enrolments.values()), history, _holds(contacts), config, files)
    return replace(state, last_contacted=MappingProxyType(_contacted(reader)))


def plan_state_of(
    reader: Reader, config: Config, files: Files, emails: Collection[str]
) -> PlanState:
    """The planner's input for the contacts ``emails`` only, read by indexed queries.

    The planner plans each contact from its own documents alone (and the
    files), so for these contacts its plan is the one it makes from the whole
    store: what :mod:`toma.store.records.due` finds can be due is all a tick
    on a large store decodes.
    """
    # Asked all at once: on PostgreSQL the server answers one while this decodes another.
    people = matching_any(reader, CONTACTS, "key", emails)
    enrolled = matching_any(reader, ENROLMENTS, "contact", emails)
    sent = matching_any(reader, MESSAGES, "contact", emails)
    written = matching_any(reader, SYNC, "key", [CONTACTED_PREFIX + e for e in emails])
    with _collector_paused():
        decode = _ContactDecoder()
        contacts = {key: decode(doc) for key, doc in people}
        enrolments = tuple(Enrolment.from_doc(doc) for _key, doc in enrolled)
        history = {key: OutboxRecord.from_doc(doc) for key, doc in sent}
    contacted = {
        key[len(CONTACTED_PREFIX) :]: parse_moment(doc["at"])
        for key, doc in written
        if isinstance(doc.get("at"), str)
    }
    state = _state(contacts, enrolments, history, _holds(contacts), config, files)
    return replace(state, last_contacted=MappingProxyType(contacted))


def _contacted(reader: Reader) -> dict[str, datetime]:
    """When the owner last wrote to each contact by hand (see toma.inbox.handwritten)."""
    found: dict[str, datetime] = {}
    for key, doc in keyed_from(reader, SYNC, CONTACTED_PREFIX):
        if isinstance(doc.get("at"), str):
            found[key[len(CONTACTED_PREFIX) :]] = parse_moment(doc["at"])
    return found


class PlanCache:
    """The planner's model of the store, kept from one tick to the next.

    :meth:`state` gives what :func:`plan_state` would, at the cost of decoding
    only what changed since its last call: it replays the store's change feed
    in order (so that even the order of the enrolments stays the store's),
    then decodes each key the feed named, as it is now. The first call, a
    call with another store, and a feed that cannot say what changed (the
    store reloaded its snapshot after another process compacted it) read
    everything. A failed decoding forgets the model, so that the next call
    starts afresh rather than from half an update.

    A :class:`PlanState` handed out shares the model's dicts, which are
    copied before the next change to them (copy on write): a state never
    changes after it was made, and a quiet table costs no copy.
    """

    def __init__(self) -> None:
        self._store: Store | None = None
        self._mark: ChangeMark | None = None
        self._contacts = _Model(_ContactDecoder())
        self._enrolments = _Model(Enrolment.from_doc)
        self._history = _Model(OutboxRecord.from_doc)
        self._holds: dict[str, datetime] = {}
        self._contacted: dict[str, datetime] = {}
        self._enrolment_list: tuple[Enrolment, ...] | None = None

    def state(self, store: Store, config: Config, files: Files) -> PlanState:
        """The planner's input for ``store`` as its readers see it now."""
        mark, changes = store.changes_since(self._mark if store is self._store else None)
        try:
            if changes is None:
                self._load(store)
            elif changes:
                self._update(store, changes)
        except BaseException:
            self._forget()
            raise
        self._store, self._mark = store, mark
        if self._enrolment_list is None:
            self._enrolment_list = tuple(self._enrolments.hand_out().values())
        state = _state(
            self._contacts.hand_out(),
            self._enrolment_list,
            self._history.hand_out(),
            self._holds,
            config,
            files,
        )
        return replace(state, last_contacted=MappingProxyType(self._contacted))

    def _forget(self) -> None:
        self._store = self._mark = None
        for model in (self._contacts, self._enrolments, self._history):
            model.clear()
        self._holds, self._enrolment_list = {}, None
        self._contacted = {}

    def _load(self, store: Store) -> None:
        self._forget()
        # A new decoder, so that sets of tags nobody carries any more are let go.
        self._contacts.decode = _ContactDecoder()
        self._contacts.load(store, CONTACTS)
        self._holds = _holds(self._contacts.decoded)
        self._enrolments.load(store, ENROLMENTS)
        self._history.load(store, MESSAGES)
        self._contacted = _contacted(store)
        # One full collection now, rather than the several that the new objects
        # would otherwise go through as they age (see _collector_paused).
        gc.collect()

    def _update(self, store: Store, changes: list[Changed]) -> None:
        models = {CONTACTS: self._contacts, ENROLMENTS: self._enrolments, MESSAGES: self._history}
        touched: dict[str, set[str]] = {}
        for table, key, deleted in changes:
            if table == SYNC and key.startswith(CONTACTED_PREFIX):
                self._contacted = {**self._contacted}  # the last state handed out keeps the old
                doc = None if deleted else store.get(SYNC, key)
                email = key[len(CONTACTED_PREFIX) :]
                if doc is not None and isinstance(doc.get("at"), str):
                    self._contacted[email] = parse_moment(doc["at"])
                else:
                    self._contacted.pop(email, None)
                continue
            model = models.get(table)
            if model is not None:
                model.replay(key, deleted=deleted)
                touched.setdefault(table, set()).add(key)
        for table, keys in touched.items():
            models[table].read(store, table, keys)
        if CONTACTS in touched:
            # A new dict: the last state handed out keeps the old one.
            self._holds = {**self._holds}
            for key in touched[CONTACTS]:
                contact = self._contacts.decoded.get(key)
                if contact is not None and contact.hold_until:
                    self._holds[key] = parse_moment(contact.hold_until)
                else:
                    self._holds.pop(key, None)
        if ENROLMENTS in touched:
            self._enrolment_list = None


class _ContactDecoder:
    """:meth:`Contact.from_doc`, with one tuple for every equal list of tags.

    Most contacts carry one of a few sets of tags; a tuple each would cost 6 MB
    at 100k contacts. The tuples are kept for the decoder's life: as many as
    the distinct sets of tags it has decoded.
    """

    def __init__(self) -> None:
        self._tags: dict[tuple[str, ...], tuple[str, ...]] = {}

    def __call__(self, doc: Document) -> Contact:
        tags = doc.get("tags")
        if type(tags) is list and tags:
            found = tuple(tags)
            # from_doc's tuple() hands a tuple back as it is.
            doc["tags"] = self._tags.setdefault(found, found)
        return Contact.from_doc(doc)


class _Model:
    """One table's documents, decoded, in the store's order."""

    def __init__(self, decode: Callable[[Document], Any]) -> None:
        self.decode = decode
        self.decoded: dict[str, Any] = {}
        self._shared = False  # a PlanState holds ``decoded``: copy it before a change

    def clear(self) -> None:
        self.decoded, self._shared = {}, False

    def load(self, reader: Reader, table: str) -> None:
        self.decoded, self._shared = _decode_all(reader, table, self.decode), False

    def hand_out(self) -> dict[str, Any]:
        self._shared = True
        return self.decoded

    def replay(self, key: str, *, deleted: bool) -> None:
        """Follow one write of the feed, so that keys stay in the store's order."""
        if self._shared:
            self.decoded, self._shared = dict(self.decoded), False
        if deleted:
            self.decoded.pop(key, None)
        elif key not in self.decoded:
            # Holds the key's place (the store appended it) until read() decodes it.
            self.decoded[key] = None

    def read(self, reader: Reader, table: str, keys: Iterable[str]) -> None:
        decoded = self.decoded
        for key in keys:
            doc = reader.get(table, key)
            if doc is None:
                decoded.pop(key, None)
            else:
                decoded[key] = self.decode(doc)


def _decode_all(reader: Reader, table: str, decode: Callable[[Document], Any]) -> dict[str, Any]:
    with _collector_paused():
        return {key: decode(doc) for key, doc in reader.all(table)}


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector around the decoding of a whole table.

    Decoding makes hundreds of thousands of long-lived objects, none in a
    cycle; each time the collector's threshold is crossed meanwhile it would
    walk every one of them again (at 100k contacts, a fifth of the time of a
    full load).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _holds(contacts: Mapping[str, Contact]) -> dict[str, datetime]:
    return {
        email: parse_moment(contact.hold_until)
        for email, contact in contacts.items()
        if contact.hold_until
    }


def _state(
    contacts: dict[str, Contact],
    enrolments: tuple[Enrolment, ...],
    history: dict[str, OutboxRecord],
    holds: dict[str, datetime],
    config: Config,
    files: Files,
) -> PlanState:
    return PlanState(
        contacts=MappingProxyType(contacts),
        enrolments=enrolments,
        history=MappingProxyType(history),
        sequences=MappingProxyType(files.sequences),
        held=files.held,
        windows=config.windows,
        pace=config.pace,
        default_tz=config.owner.timezone,
        contact_hold_until=MappingProxyType(holds),
    )
