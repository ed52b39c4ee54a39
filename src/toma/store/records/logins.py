"""The SMTP passwords refused lately (:mod:`toma.core.refusals`), kept in the sync table so
that the next tick, or the next cron run, does not try them again."""

from __future__ import annotations

from toma.core.refusals import Refusals
from toma.store import SYNC, Reader, Store

KEY = "smtp-refusals"


def refusals(reader: Reader) -> Refusals:
    return Refusals.from_doc(reader.get(SYNC, KEY))


def keep(store: Store, refusals: Refusals) -> None:
    """Write ``refusals`` when they differ from what the store holds."""
    doc = refusals.to_doc()
    with store.transaction() as tx:
        if (tx.get(SYNC, KEY) or {}) != doc:
            tx.put(SYNC, KEY, doc)
