"""The store contract: what every backend promises, run against each of them unchanged."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.store.conftest import Opener
from toma.errors import StoreError
from toma.store import CONTACTS, CONVERSATIONS, MESSAGES, META, Store
from toma.store.embedded import memory, tinydb
from toma.store.postgres import reads as pg_reads
from toma.store.postgres import store as pg_store
from toma.store.records.query import by_keys, matching, matching_any


def put(store: Store, table: str, key: str, doc: dict[str, Any]) -> None:
    with store.transaction() as tx:
        tx.put(table, key, doc)


DOCS = [
    {},
    {"email": "ada@example.com", "tags": ["a", "b"], "n": 3, "x": 1.5, "ok": True, "no": None},
    {"nested": {"list": [1, {"deep": ["é", "日本", "🙂"]}], "empty": ""}, "zero": 0, "f": False},
    {"z": 1, "a": 2, "m": {"y": 1, "b": 2}},  # the fields' order is kept
    {"quote": 'say "hi"\n\\', "nul": "a\x00b", "big": 2**62, "neg": -0.25},
]


class TestDocuments:
    @pytest.mark.parametrize("doc", DOCS)
    def test_a_document_reads_back_equal_and_in_order_from_another_handle(
        self, backend: Opener, doc: dict[str, Any]
    ):
        """What one handle commits, another reads back equal, fields in the same order."""
        writer, reader = backend(), backend()
        put(writer, CONTACTS, "k", doc)
        reader.refresh()
        got = reader.get(CONTACTS, "k")
        assert got == doc
        assert list(got or {}) == list(doc)
        assert list((got or {}).get("m", {})) == list(doc.get("m", {}))

    def test_documents_handed_out_are_copies(self, store: Store):
        """Changing a document read or put later changes nothing stored."""
        doc: dict[str, Any] = {"tags": ["a"]}
        put(store, CONTACTS, "k", doc)
        doc["tags"].append("b")
        read = store.get(CONTACTS, "k")
        assert read == {"tags": ["a"]}
        assert read is not None
        read["tags"].append("c")
        assert store.get(CONTACTS, "k") == {"tags": ["a"]}

    def test_replace_delete_and_count(self, store: Store):
        put(store, CONTACTS, "a", {"v": 1})
        put(store, CONTACTS, "b", {"v": 2})
        put(store, CONTACTS, "a", {"v": 3})
        assert store.count(CONTACTS) == 2
        assert store.get(CONTACTS, "a") == {"v": 3}
        with store.transaction() as tx:
            tx.delete(CONTACTS, "b")
            tx.delete(CONTACTS, "nobody")
        assert store.count(CONTACTS) == 1
        assert store.get(CONTACTS, "b") is None
        assert store.count(MESSAGES) == 0

    def test_all_keeps_the_order_of_first_insertion(self, store: Store):
        """A replaced key keeps its place; a deleted and re-added one goes last."""
        for key in ("c", "a", "b", "d"):
            put(store, CONTACTS, key, {"k": key})
        put(store, CONTACTS, "a", {"k": "a2"})
        with store.transaction() as tx:
            tx.delete(CONTACTS, "b")
        put(store, CONTACTS, "b", {"k": "b2"})
        assert [(k, d["k"]) for k, d in store.all(CONTACTS)] == [
            ("c", "c"),
            ("a", "a2"),
            ("d", "d"),
            ("b", "b2"),
        ]

    def test_all_reads_large_tables_whole(self, store: Store, monkeypatch: pytest.MonkeyPatch):
        """Read a page at a time, every document comes once, in order."""
        monkeypatch.setattr(pg_reads, "PAGE", 7)
        with store.transaction() as tx:
            for n in range(50):
                tx.put(MESSAGES, f"m{n:02}", {"n": n})
        assert [doc["n"] for _key, doc in store.all(MESSAGES)] == list(range(50))

    def test_all_tolerates_writes_during_iteration(self, store: Store):
        """Iterating all() while committing changes to the same table is safe and ends."""
        with store.transaction() as tx:
            for n in range(5):
                tx.put(MESSAGES, f"m{n}", {"n": n})
        seen = []
        for key, doc in store.all(MESSAGES):
            seen.append(key)
            with store.transaction() as tx:
                tx.delete(MESSAGES, key)
                tx.put(MESSAGES, f"new-{key}", doc)
        assert seen == [f"m{n}" for n in range(5)]
        assert store.count(MESSAGES) == 5

    @pytest.mark.parametrize(
        ("table", "key", "doc"),
        [
            ("contact", "k", {}),
            (CONTACTS, 7, {}),
            (CONTACTS, "k", {"_key": "reserved"}),
            (META, "store", {"schema_version": 99}),
            (CONTACTS, "k", ["not", "a", "dict"]),
            (CONTACTS, "k", {"at": datetime(2024, 1, 1, tzinfo=UTC)}),
            (CONTACTS, "k", {"amount": math.nan}),
            (CONTACTS, "k", {"bad": "\ud800"}),
        ],
        ids=[
            "unknown-table",
            "int-key",
            "reserved-field",
            "store-meta",
            "not-a-dict",
            "datetime",
            "nan",
            "lone-surrogate",
        ],
    )
    def test_bad_put_is_refused_and_the_transaction_writes_nothing(
        self, store: Store, table: str, key: Any, doc: Any
    ):
        """A put that cannot be stored raises StoreError at the put; nothing is written."""
        with pytest.raises(StoreError), store.transaction() as tx:
            tx.put(CONTACTS, "good", {"ok": True})
            tx.put(table, key, doc)
        assert store.get(CONTACTS, "good") is None

    def test_an_unknown_table_is_refused_by_reads(self, store: Store):
        with pytest.raises(StoreError):
            store.get("contact", "k")
        with pytest.raises(StoreError):
            list(store.all("nope"))


class TestTransactions:
    def test_reads_inside_a_transaction_see_its_pending_writes(self, store: Store):
        put(store, CONTACTS, "old", {"v": 0})
        with store.transaction() as tx:
            tx.put(CONTACTS, "new", {"v": 1})
            tx.put(CONTACTS, "old", {"v": 2})
            assert tx.get(CONTACTS, "new") == {"v": 1}
            assert tx.count(CONTACTS) == 2
            assert dict(tx.all(CONTACTS)) == {"old": {"v": 2}, "new": {"v": 1}}
            tx.delete(CONTACTS, "old")
            assert tx.get(CONTACTS, "old") is None
            assert tx.count(CONTACTS) == 1

    def test_exception_in_the_block_discards_every_change(self, backend: Opener):
        store = backend()
        put(store, CONTACTS, "kept", {"v": 1})
        with pytest.raises(RuntimeError), store.transaction() as tx:
            tx.put(CONTACTS, "new", {"v": 1})
            tx.delete(CONTACTS, "kept")
            assert tx.count(CONTACTS) == 1
            raise RuntimeError("boom")
        other = backend()
        assert dict(other.all(CONTACTS)) == {"kept": {"v": 1}}
        put(store, CONTACTS, "after", {})  # the store is usable again
        assert store.count(CONTACTS) == 2

    def test_nested_transaction_is_refused(self, store: Store):
        with store.transaction(), pytest.raises(StoreError), store.transaction():
            pass

    def test_finished_transaction_cannot_be_used(self, store: Store):
        with store.transaction() as tx:
            tx.put(CONTACTS, "a", {})
        with pytest.raises(StoreError):
            tx.put(CONTACTS, "b", {})
        assert store.get(CONTACTS, "b") is None

    def test_a_transaction_sees_what_another_handle_committed(self, backend: Opener):
        """A write catches up with every commit before it: the last check relies on it."""
        first, second = backend(), backend()
        put(first, CONTACTS, "a", {"status": "active"})
        put(second, CONTACTS, "a", {"status": "unsubscribed"})
        with first.transaction() as tx:
            assert tx.get(CONTACTS, "a") == {"status": "unsubscribed"}


class TestChangeFeed:
    def test_no_mark_means_read_everything(self, store: Store):
        _mark, changes = store.changes_since(None)
        assert changes is None

    def test_each_put_and_delete_is_listed_in_order(self, store: Store):
        mark, _ = store.changes_since(None)
        put(store, CONTACTS, "a", {"v": 1})
        with store.transaction() as tx:
            tx.put(MESSAGES, "m", {"n": 1})
            tx.delete(CONTACTS, "a")
            tx.delete(CONTACTS, "nobody")  # changes nothing, so not listed
        mark2, changes = store.changes_since(mark)
        assert changes == [(CONTACTS, "a", False), (MESSAGES, "m", False), (CONTACTS, "a", True)]
        assert store.changes_since(mark2)[1] == []

    def test_a_failed_transaction_lists_nothing(self, store: Store):
        mark, _ = store.changes_since(None)
        with pytest.raises(RuntimeError), store.transaction() as tx:
            tx.put(CONTACTS, "a", {})
            raise RuntimeError
        assert store.changes_since(mark)[1] == []

    def test_writes_of_another_handle_are_listed_once_caught_up(self, backend: Opener):
        reader, writer = backend(), backend()
        mark, _ = reader.changes_since(None)
        put(writer, CONTACTS, "a", {"v": 1})
        reader.refresh()
        assert reader.changes_since(mark)[1] == [(CONTACTS, "a", False)]

    def test_a_reader_too_far_behind_reads_everything(
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ):
        monkeypatch.setattr(memory, "_FEED_LIMIT", 4)
        monkeypatch.setattr(pg_store, "FEED_LIMIT", 4)
        old, _ = store.changes_since(None)
        for n in range(20):
            put(store, MESSAGES, f"m{n}", {})
        recent, _ = store.changes_since(None)
        for n in range(3):
            put(store, MESSAGES, f"m{n}", {"n": n})
        assert store.changes_since(old)[1] is None
        assert store.changes_since(recent)[1] == [(MESSAGES, f"m{n}", False) for n in range(3)]

    def test_a_mark_of_another_store_says_reload(self, store: Store, tmp_path: Any):
        with tinydb.TinyStore(tmp_path / "elsewhere") as other:
            mark, _ = other.changes_since(None)
        assert store.changes_since(mark)[1] is None


class TestQueries:
    def test_matching_answers_alike_on_both_backends(self, store: Store):
        """The records layer's questions: same answers, in store order, whatever the backend."""
        with store.transaction() as tx:
            tx.put(MESSAGES, "1", {"state": "sent", "contact": "a@x", "kind": "sequence"})
            tx.put(MESSAGES, "2", {"state": "planned", "contact": "b@x", "kind": "invoice"})
            tx.put(MESSAGES, "3", {"state": "sent", "contact": "b@x", "kind": "invoice"})
            tx.put(CONVERSATIONS, "c", {"contact": "b@x", "answers": "3", "kind": "reply"})
            tx.put(CONVERSATIONS, "d", {"contact": "b@x", "kind": "reply"})
            assert [k for k, _ in matching(tx, MESSAGES, state="sent")] == ["1", "3"]
        assert [k for k, _ in matching(store, MESSAGES, state="sent", kind="invoice")] == ["3"]
        assert [k for k, _ in matching(store, MESSAGES, contact="b@x")] == ["2", "3"]
        assert [k for k, _ in matching(store, CONVERSATIONS, answers=None)] == ["d"]
        assert list(matching(store, MESSAGES, state="unknown")) == []

    def test_by_keys_answers_alike_on_both_backends(self, store: Store):
        """Several documents by key in one question, as the transaction asking sees them:
        only those that exist, its own puts and deletes included."""
        with store.transaction() as tx:
            tx.put(MESSAGES, "1", {"state": "sent"})
            tx.put(MESSAGES, "2", {"state": "sending"})
        with store.transaction() as tx:
            tx.put(MESSAGES, "3", {"state": "planned"})
            tx.put(MESSAGES, "2", {"state": "sent"})
            tx.delete(MESSAGES, "1")
            assert by_keys(tx, MESSAGES, ["1", "2", "3", "4"]) == {
                "2": {"state": "sent"},
                "3": {"state": "planned"},
            }
        assert by_keys(store, MESSAGES, ["3", "1"]) == {"3": {"state": "planned"}}
        assert by_keys(store, MESSAGES, []) == {}
        assert by_keys(store, CONTACTS, ["2"]) == {}

    def test_reads_of_many_pages_begun_together_answer_whole(
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ):
        """Reads by many values run page by page (on PostgreSQL the next page is fetched
        while the last is decoded, and reads begun together run at once): each answers
        every document it asks for, in store order within a page of values."""
        monkeypatch.setattr(pg_reads, "ANY_PAGE", 7)
        with store.transaction() as tx:
            for n in range(60):
                tx.put(CONTACTS, f"c{n:02}", {"email": f"c{n:02}"})
                tx.put(MESSAGES, f"m{n:02}", {"contact": f"c{n % 20:02}", "n": n})
        people = matching_any(store, CONTACTS, "key", [f"c{n:02}" for n in range(0, 60, 2)])
        sent = matching_any(store, MESSAGES, "contact", [f"c{n:02}" for n in range(20)])
        none = matching_any(store, MESSAGES, "contact", ["nobody"])
        assert sorted(key for key, _ in sent) == [f"m{n:02}" for n in range(60)]
        assert [key for key, _ in people] == [f"c{n:02}" for n in range(0, 60, 2)]
        assert list(none) == []
        with store.transaction() as tx:
            # In a transaction the pages come one after the other, its own puts seen.
            tx.put(MESSAGES, "m99", {"contact": "c05", "n": 99})
            mine = [doc["n"] for _, doc in matching_any(tx, MESSAGES, "contact", ["c05"])]
            assert mine == [5, 25, 45, 99]

    def test_a_read_left_unfinished_holds_nothing_up(
        self, backend: Opener, monkeypatch: pytest.MonkeyPatch
    ):
        """A read of many pages dropped halfway, or still unread when the store closes,
        leaves nothing waiting: the store closes, and the read either ends whole (what the
        embedded store already holds) or says why the next page cannot come."""
        monkeypatch.setattr(pg_reads, "ANY_PAGE", 3)
        keys = [f"c{n:02}" for n in range(30)]
        with backend() as store:
            with store.transaction() as tx:
                for key in keys:
                    tx.put(CONTACTS, key, {"email": key})
            dropped = matching_any(store, CONTACTS, "key", keys)
            assert next(iter(dropped))[0] == "c00"
            del dropped
            unread = iter(matching_any(store, CONTACTS, "key", keys))
            assert next(unread)[0] == "c00"
            store.close()
            try:
                rest = [key for key, _ in unread]
            except StoreError as exc:
                assert "closed" in str(exc)
            else:
                assert rest == keys[1:]


class TestBatches:
    def test_many_puts_in_one_transaction_read_back_equal_and_in_order(self, backend: Opener):
        """A transaction's puts are written together (one statement on PostgreSQL): every
        kind of document, claimed or not, new or replacing, comes back as it was put."""
        # Not the document with a NUL: a message cannot hold one on PostgreSQL, whose
        # indexes read its fields (migration 0002); toma writes none (mail.mime, one_line).
        kinds = [doc for doc in DOCS if "nul" not in doc]
        docs = {
            f"m{n}": dict(kinds[n % len(kinds)], state=("sending", "sent")[n % 2])
            for n in range(300)
        }
        with backend() as store:
            put(store, MESSAGES, "m7", {"state": "planned"})
            with store.transaction() as tx:
                for key, doc in docs.items():
                    tx.put(MESSAGES, key, doc)
                tx.put(MESSAGES, "m3", {"state": "sent", "again": True})
        with backend() as store:
            expected = dict(docs, m3={"state": "sent", "again": True})
            assert dict(store.all(MESSAGES)) == expected
            # m7 existed before the others: it keeps its place.
            assert [k for k, _ in store.all(MESSAGES)][:2] == ["m7", "m0"]
