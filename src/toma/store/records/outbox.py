"""The outbox table's records: what the owner does to them by hand.

The daemon writes the outbox as it sends (:mod:`toma.daemon.outboxwriter`); this
module holds the changes a command makes (``toma outbox release``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from toma.core.outbox import MessageState, OutboxRecord
from toma.errors import TomaError
from toma.logs import fields
from toma.store import MESSAGES, Store

log = logging.getLogger(__name__)


def release_unknown(
    store: Store, keys: Iterable[str], contacts: Iterable[str], *, now: datetime, by: str
) -> list[OutboxRecord]:
    """Release ``unknown`` messages for sending again: those named by key, and all of
    ``contacts``' (``toma outbox release``). The next tick sends them.

    A key that names no message, or one that is not ``unknown``, is an error and
    nothing is released.
    """
    from toma.core.contacts import normalize_address
    from toma.core.outbox import release

    wanted = list(dict.fromkeys(keys))
    people = {normalize_address(address) for address in contacts}
    with store.transaction() as tx:
        chosen: dict[str, OutboxRecord] = {}
        for key in wanted:
            doc = tx.get(MESSAGES, key)
            if doc is None:
                raise TomaError(f"no message with the key {key!r} (see `toma outbox list`)")
            record = OutboxRecord.from_doc(doc)
            if record.state is not MessageState.UNKNOWN:
                raise TomaError(
                    f"{key} is {record.state.value}, not unknown: nothing released",
                    contact=record.contact,
                )
            chosen[key] = record
        if people:
            for key, doc in tx.all(MESSAGES):
                if doc.get("contact") in people and doc.get("state") == MessageState.UNKNOWN:
                    chosen.setdefault(key, OutboxRecord.from_doc(doc))
        released = [release(record, at=now, by=by) for record in chosen.values()]
        for record in released:
            tx.put(MESSAGES, record.key, record.to_doc())
    for record in released:
        log.warning(
            "released", extra=fields(contact=record.contact, ref=record.ref, key=record.key, by=by)
        )
    return released
