"""The dashboard's snapshot answers questions by field as reading the whole table would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toma.store import MESSAGES, Reader, Store, open_store
from toma.store.records.query import matching
from toma.web.snapshot import Snapshot

QUESTIONS: list[dict[str, Any]] = [
    {"contact": "a@example.org"},
    {"contact": "b@example.org"},
    {"contact": "c@example.org"},
    {"kind": "invoice"},
    {"kind": "sequence", "contact": "a@example.org"},
    {"contact": None},
    {"kind": "nothing of the kind"},
]


def scanned(reader: Reader, equal: dict[str, Any]) -> list[tuple[str, Any]]:
    """The plain reading: every document of the table, in its order, tested field by field."""
    return [
        (key, doc)
        for key, doc in reader.all(MESSAGES)
        if all(doc.get(name) == value for name, value in equal.items())
    ]


def check(snapshot: Snapshot, store: Store) -> None:
    store.refresh()  # what ``other`` wrote
    snapshot.sync(store)
    for equal in QUESTIONS:
        assert list(snapshot.where(MESSAGES, **equal)) == scanned(store, equal), equal
        assert list(matching(snapshot, MESSAGES, **equal)) == scanned(store, equal), equal


def put(store: Store, key: str, **doc: Any) -> None:
    with store.transaction() as tx:
        tx.put(MESSAGES, key, doc)


def test_the_index_follows_every_kind_of_write(tmp_path: Path) -> None:
    with open_store(tmp_path / "data") as store, open_store(tmp_path / "data") as other:
        for n in range(12):
            put(other, f"k{n}", contact="abc"[n % 3] + "@example.org", kind="sequence")
        snapshot = Snapshot()
        check(snapshot, store)  # the indexes are made here, at the first questions
        assert snapshot.count(MESSAGES) == 12
        put(other, "k12", contact="a@example.org", kind="invoice")  # appended
        check(snapshot, store)
        # A message whose contact changes keeps its place in the table: it moves into
        # the middle of its new contact's messages, not to their end.
        put(other, "k1", contact="c@example.org", kind="invoice")
        check(snapshot, store)
        assert [key for key, _doc in snapshot.where(MESSAGES, contact="c@example.org")][:2] == [
            "k1",
            "k2",
        ]
        with other.transaction() as tx:  # deleted, then written again: now the last
            tx.delete(MESSAGES, "k3")
        check(snapshot, store)
        put(other, "k3", contact="a@example.org", kind="sequence")
        check(snapshot, store)
        put(other, "k4", kind="sequence")  # no contact at all
        put(other, "k5", contact=["a@example.org"], kind="sequence")  # a list is no address
        check(snapshot, store)
        with other.transaction() as tx:  # several writes to one key in one transaction
            tx.put(MESSAGES, "k6", {"contact": "b@example.org", "kind": "invoice"})
            tx.delete(MESSAGES, "k6")
            tx.put(MESSAGES, "k6", {"contact": "a@example.org", "kind": "invoice"})
        check(snapshot, store)
