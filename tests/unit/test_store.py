"""The embedded store: durable, atomic, owner-only, shared safely between processes."""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tinydb import TinyDB

from toma.errors import StoreError, StoreLocked
from toma.store import (
    CONTACTS,
    CONVERSATIONS,
    ENROLMENTS,
    MESSAGES,
    META,
    SCHEMA_VERSION,
    SYNC,
    TinyStore,
    open_store,
)
from toma.store.embedded import journal, memory, snapshot

CHILD_TIMEOUT = 20


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data_dir: Path) -> Iterator[TinyStore]:
    with TinyStore(data_dir) as opened:
        yield opened


def put(store: TinyStore, table: str, key: str, doc: dict[str, Any]) -> None:
    with store.transaction() as tx:
        tx.put(table, key, doc)


def contents(store: TinyStore, *tables: str) -> dict[str, dict[str, Any]]:
    return {table: dict(store.all(table)) for table in tables or (CONTACTS, MESSAGES, SYNC)}


def journal_file(data_dir: Path, generation: int = 1) -> Path:
    return journal.journal_path(data_dir, generation)


def file_states(data_dir: Path) -> dict[str, tuple[int, int, int]]:
    """name -> (inode, size, mtime) for every data file, to tell what was rewritten."""
    return {
        p.name: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(data_dir.iterdir())
        if p.suffix != ".lock"
    }


def run_child(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


class TestDocuments:
    """What is put is what is got, through disk, and callers cannot corrupt it."""

    @pytest.mark.parametrize(
        "doc",
        [
            {},
            {"email": "ana@example.com", "tags": ["client", "met"], "paused": False},
            {"name": "Zoë Ødegård 日本", "quote": 'line\nbreak \u2028 and "quotes"'},
            {"n": 12, "amount": 1234.5, "none": None, "nested": {"a": [1, {"b": [2, 3]}]}},
            {"deep": [[1, [2, "x"]], [], {}, [{}], [True, None, 1.5]], "same": [[], []]},
        ],
        ids=["empty", "flat", "unicode", "nested", "deep"],
    )
    def test_put_doc_reads_back_equal_after_reopen(self, data_dir: Path, doc: dict[str, Any]):
        """A document reads back equal in the writing process and after a reopen."""
        with TinyStore(data_dir) as store:
            put(store, CONTACTS, "ana@example.com", doc)
            assert store.get(CONTACTS, "ana@example.com") == doc
        with TinyStore(data_dir) as reopened:
            assert reopened.get(CONTACTS, "ana@example.com") == doc
            assert list(reopened.all(CONTACTS)) == [("ana@example.com", doc)]

    def test_values_keep_their_json_types(self, data_dir: Path):
        """true, 1 and 1.0 stay a bool, an int and a float, in memory and after a reopen."""
        doc = {"flag": True, "one": 1, "real": 1.0, "list": [True, 1, 1.0], "none": None}
        with TinyStore(data_dir) as store:
            put(store, CONTACTS, "k", doc)
            got = store.get(CONTACTS, "k")
            store.compact()
        with TinyStore(data_dir) as reopened:
            for found in (got, reopened.get(CONTACTS, "k")):
                assert found is not None
                assert [type(v) for v in found.values()] == [bool, int, float, list, type(None)]
                assert [type(v) for v in found["list"]] == [bool, int, float]

    def test_documents_handed_out_are_copies(self, store: TinyStore):
        """Mutating a document given to put, or got from get/all, does not change the store."""
        doc = {"tags": ["a"], "fields": {"met_where": "Lisbon"}}
        put(store, CONTACTS, "k", doc)
        doc["tags"].append("changed-after-put")
        store.get(CONTACTS, "k")["tags"].append("changed-after-get")  # type: ignore[index]
        for _, got in store.all(CONTACTS):
            got["fields"]["met_where"] = "changed-in-all"
        with store.transaction() as tx:
            tx.get(CONTACTS, "k")["tags"].append("changed-in-tx")  # type: ignore[index]
        assert store.get(CONTACTS, "k") == {"tags": ["a"], "fields": {"met_where": "Lisbon"}}

    def test_documents_are_stored_as_json_would_read_them(self, store: TinyStore):
        """Values are normalised through JSON, so every process sees the same document."""
        put(store, CONTACTS, "k", {"pair": (1, 2), "ids": {1: "one"}})
        assert store.get(CONTACTS, "k") == {"pair": [1, 2], "ids": {"1": "one"}}

    def test_replace_delete_and_count(self, store: TinyStore):
        """put replaces the whole document, delete removes it, count follows."""
        with store.transaction() as tx:
            for n in range(3):
                tx.put(MESSAGES, f"m{n}", {"n": n, "state": "sending"})
        with store.transaction() as tx:
            tx.put(MESSAGES, "m1", {"n": 1})
            tx.delete(MESSAGES, "m2")
        assert list(store.all(MESSAGES)) == [("m0", {"n": 0, "state": "sending"}), ("m1", {"n": 1})]
        assert store.count(MESSAGES) == 2
        assert store.get(MESSAGES, "m2") is None

    def test_deleting_an_absent_key_writes_nothing(self, store: TinyStore, data_dir: Path):
        """A transaction that changes nothing appends nothing."""
        with store.transaction() as tx:
            tx.delete(CONTACTS, "nobody")
        assert not journal_file(data_dir).exists()

    def test_all_tolerates_writes_during_iteration(self, store: TinyStore):
        """Iterating all() while committing changes to the same table is safe."""
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
        self, store: TinyStore, data_dir: Path, table: str, key: Any, doc: Any
    ):
        """A put that cannot be stored raises StoreError at the put; nothing is written."""
        with pytest.raises(StoreError) as caught, store.transaction() as tx:
            tx.put(CONTACTS, "good", {"ok": True})
            tx.put(table, key, doc)
        assert caught.value.file == str(data_dir)
        assert not journal_file(data_dir).exists()
        assert store.get(CONTACTS, "good") is None


def typed(value: Any) -> Any:
    """``value`` with the type of every part, and the order of every dict's keys."""
    if isinstance(value, dict):
        return ["dict", [(key, typed(item)) for key, item in value.items()]]
    if isinstance(value, list):
        return ["list", [typed(item) for item in value]]
    return [type(value).__name__, value]


def fresh(text: str) -> str:
    """An equal string that is not the same object (literals of a module are shared)."""
    return "".join(list(text))


# Same fields, null and "" in different places; every kind of falsy value.
FALSY_DOCS: list[dict[str, Any]] = [
    {"a": None, "b": "", "c": "x", "d": 0, "e": False, "f": 0.0, "g": [], "h": {}},
    {"a": "", "b": None, "c": None, "d": False, "e": 0, "f": "", "g": [""], "h": {"x": ""}},
    {"a": "y", "b": "z", "c": "", "d": 0.0, "e": None, "f": 0, "g": [None], "h": {"x": None}},
    {"a": None, "b": "", "c": "x", "d": 1, "e": True, "f": 1.0, "g": [0, False], "h": {}},
    {"a": None, "b": None, "c": None, "d": None, "e": None, "f": None, "g": None, "h": None},
    {"a": "", "b": "", "c": "", "d": "", "e": "", "f": "", "g": "", "h": ""},
    {"h": None, "g": "", "f": 0, "e": False, "d": 0.0, "c": "x", "b": "", "a": None},
    {"only": None},
    {"only": ""},
    {"nested": {"a": None, "b": [{"c": ""}, {"c": None, "d": 0}]}},
]


class TestMemoryLayout:
    """Documents are held compactly, and that never shows in what is read back."""

    def test_null_and_empty_values_read_back_in_place_and_kind(self, data_dir: Path):
        """null, "", 0, false and 0.0 read back as themselves, in their places, whichever
        pattern of them a document has: committed, replayed, and from a snapshot."""
        expected = {f"k{n}": typed(doc) for n, doc in enumerate(FALSY_DOCS)}
        with TinyStore(data_dir) as writer, TinyStore(data_dir) as reader:
            with writer.transaction() as tx:
                for n, doc in enumerate(FALSY_DOCS):
                    tx.put(CONTACTS, f"k{n}", doc)
            reader.refresh()
            for store in (writer, reader):
                assert {key: typed(doc) for key, doc in store.all(CONTACTS)} == expected
            writer.compact()
        with TinyStore(data_dir) as reopened:
            assert {key: typed(doc) for key, doc in reopened.all(CONTACTS)} == expected
            assert {key: typed(reopened.get(CONTACTS, key)) for key in expected} == expected

    def test_equal_strings_are_one_object(self, data_dir: Path):
        """An address that documents name again and again is held once, also in the
        documents put after the store was loaded."""
        with TinyStore(data_dir) as store, store.transaction() as tx:
            tx.put(CONTACTS, fresh("ana@example.com"), {"email": fresh("ana@example.com")})
            for name in ("one", "two", "three", "four"):
                tx.put(ENROLMENTS, f"{name}/ana", {"contact": fresh("ana@example.com")})
        with TinyStore(data_dir) as store:
            with store.transaction() as tx:
                tx.put(MESSAGES, "m", {"contact": fresh("ana@example.com")})
            found = [
                *store.all(CONTACTS),
                ("email", store.get(CONTACTS, "ana@example.com")["email"]),  # type: ignore[index]
                *((key, doc["contact"]) for key, doc in store.all(ENROLMENTS)),
                ("m", store.get(MESSAGES, "m")["contact"]),  # type: ignore[index]
            ]
        first = found[0][0]
        assert all(value is first for _, value in found[1:])

    def test_equal_flat_lists_and_dicts_are_one_object(self):
        """Tags and custom fields equal to another document's are shared with it; lists
        of numbers are not (1, 1.0 and true are equal in Python, not in JSON)."""
        freezer = memory.Freezer()
        one = freezer.freeze({"tags": ["a", "b"], "fields": {"x": "y"}, "n": [1, 2]})
        two = freezer.freeze(
            {"tags": [fresh("a"), fresh("b")], "fields": {fresh("x"): fresh("y")}, "n": [1, 2]}
        )
        other = freezer.freeze({"tags": ["a", "b"], "fields": {"x": "y"}, "n": [True, 2.0]})
        assert one[0] is two[0] and one[1] is two[1]
        assert one[2] is not two[2]
        assert memory.thaw(other) == {"tags": ["a", "b"], "fields": {"x": "y"}, "n": [True, 2.0]}
        assert [type(v) for v in memory.thaw(other)["n"]] == [bool, float]

    def test_prune_keeps_only_what_several_places_hold(self):
        """After a prune, a value held in one place (a message id) is forgotten, one held in
        many (a state) is still found, and a value nothing holds any more is let go."""
        freezer = memory.Freezer()
        docs = [freezer.freeze({"id": f"<{n}@x>", "state": fresh("sent")}) for n in range(20)]
        gone = freezer.freeze({"id": fresh("<gone@x>"), "state": fresh("sent")})
        gone_id = gone[0]
        del gone
        freezer.prune()
        again = freezer.freeze({"id": fresh("<1@x>"), "state": fresh("sent")})
        assert again[1] is docs[0][1]
        assert again[0] == docs[1][0] and again[0] is not docs[1][0]
        assert freezer.share(fresh("<gone@x>")) is not gone_id

    def test_a_long_running_store_prunes_its_tables(
        self, store: TinyStore, monkeypatch: pytest.MonkeyPatch
    ):
        """Values of documents since replaced are not kept alive by the tables."""
        monkeypatch.setattr(memory, "_PRUNE_MIN", 64)
        for n in range(20):
            with store.transaction() as tx:
                for m in range(50):
                    tx.put(MESSAGES, f"m{m}", {"id": f"<{n}.{m}@x>"})
        assert len(store._memory.freezer._strings) < 4 * 64


class TestTransactions:
    """A transaction sees its own writes and is all or nothing."""

    def test_reads_inside_a_transaction_see_its_pending_writes(self, store: TinyStore):
        """get, all and count inside the block reflect the block's own puts and deletes."""
        with store.transaction() as tx:
            tx.put(CONTACTS, "a", {"v": 1})
            tx.put(CONTACTS, "b", {"v": 1})
        with store.transaction() as tx:
            tx.put(CONTACTS, "a", {"v": 2})
            tx.delete(CONTACTS, "b")
            tx.put(CONTACTS, "c", {"v": 3})
            assert tx.get(CONTACTS, "a") == {"v": 2}
            assert tx.get(CONTACTS, "b") is None
            assert list(tx.all(CONTACTS)) == [("a", {"v": 2}), ("c", {"v": 3})]
            assert tx.count(CONTACTS) == 2
            # Outside the transaction, only committed state is visible.
            assert store.get(CONTACTS, "a") == {"v": 1}
            assert store.count(CONTACTS) == 2
        assert contents(store, CONTACTS) == {CONTACTS: {"a": {"v": 2}, "c": {"v": 3}}}

    def test_exception_in_the_block_discards_every_change(self, store: TinyStore, data_dir: Path):
        """On an exception nothing is written and memory is unchanged; the error propagates."""
        put(store, CONTACTS, "a", {"v": 1})
        before = file_states(data_dir)
        with pytest.raises(RuntimeError, match="boom"), store.transaction() as tx:
            tx.put(CONTACTS, "a", {"v": 2})
            tx.put(CONTACTS, "b", {"v": 2})
            raise RuntimeError("boom")
        assert contents(store, CONTACTS) == {CONTACTS: {"a": {"v": 1}}}
        assert file_states(data_dir) == before
        with TinyStore(data_dir) as reopened:
            assert contents(reopened, CONTACTS) == {CONTACTS: {"a": {"v": 1}}}

    def test_lock_is_released_after_a_failed_transaction(self, store: TinyStore, data_dir: Path):
        """A failed transaction does not leave the store locked."""
        with pytest.raises(KeyError), store.transaction():
            raise KeyError("x")
        with TinyStore(data_dir, lock_timeout=0) as other:
            put(other, CONTACTS, "a", {})

    def test_nested_transaction_is_refused(self, store: TinyStore):
        """Opening a transaction inside another on the same store is a StoreError."""
        with pytest.raises(StoreError, match="nested"), store.transaction() as tx:
            tx.put(CONTACTS, "outer", {})
            with store.transaction():
                pass
        assert store.get(CONTACTS, "outer") is None

    def test_finished_transaction_cannot_be_used(self, store: TinyStore):
        """A transaction object used after its block raises StoreError."""
        with store.transaction() as tx:
            pass
        with pytest.raises(StoreError, match="over"):
            tx.put(CONTACTS, "late", {})

    def test_commit_appends_one_line_and_never_rewrites_the_snapshot(
        self, store: TinyStore, data_dir: Path
    ):
        """A flush costs what changed: one journal line per transaction, snapshot untouched."""
        put(store, CONTACTS, "first", {"v": 0})
        snapshot = journal.snapshot_path(data_dir, 1)
        before = file_states(data_dir)[snapshot.name]
        for n in range(3):
            with store.transaction() as tx:
                tx.put(MESSAGES, f"m{n}", {"n": n})
                tx.put(CONTACTS, "first", {"v": n})
        lines = journal_file(data_dir).read_bytes().splitlines()
        assert len(lines) == 4
        assert json.loads(lines[-1]) == {
            "c": lines[-1][6:14].decode(),  # the line's checksum (see TestJournalChecksums)
            "ops": [["messages", "m2", {"n": 2}], ["contacts", "first", {"v": 2}]],
        }
        assert file_states(data_dir)[snapshot.name] == before


class TestJournal:
    """Only a torn last line is forgiven; corruption elsewhere is reported with its place."""

    @pytest.mark.parametrize(
        "tail",
        [b'{"ops":[["contacts","b",{"v"', b'{"ops":[["contacts","b",{}]]}', b"\x00\x00\x00\n"],
        ids=["cut-mid-line", "no-newline-yet", "garbage-last-line"],
    )
    def test_torn_last_line_is_ignored_and_cut_by_the_next_commit(
        self, data_dir: Path, tail: bytes
    ):
        """A crash mid-append loses only that transaction; the next writer drops the tail."""
        with TinyStore(data_dir) as store:
            put(store, CONTACTS, "a", {"v": 1})
        with journal_file(data_dir).open("ab") as out:
            out.write(tail)
        with TinyStore(data_dir) as store:
            assert contents(store, CONTACTS) == {CONTACTS: {"a": {"v": 1}}}
            put(store, CONTACTS, "c", {"v": 3})
        assert tail not in journal_file(data_dir).read_bytes()
        with TinyStore(data_dir) as store:
            assert contents(store, CONTACTS) == {CONTACTS: {"a": {"v": 1}, "c": {"v": 3}}}

    @pytest.mark.parametrize(
        "bad",
        [b"not json\n", b'{"no":"ops"}\n', b'{"ops":[["contacts",1,{}]]}\n'],
        ids=["not-json", "no-ops", "bad-op"],
    )
    def test_bad_line_before_the_last_is_an_error_naming_file_and_line(
        self, data_dir: Path, bad: bytes
    ):
        """Corruption that a crash cannot cause is a StoreError with the file and line."""
        with TinyStore(data_dir) as store:
            put(store, CONTACTS, "a", {"v": 1})
        good = b'{"ops":[["contacts","b",{}]]}\n'
        with journal_file(data_dir).open("ab") as out:
            out.write(bad + good)
        with pytest.raises(StoreError) as caught:
            TinyStore(data_dir)
        assert (caught.value.file, caught.value.line) == (str(journal_file(data_dir)), 2)

    def test_refresh_reads_only_new_lines_and_skips_a_torn_tail(self, data_dir: Path):
        """Another instance catches up line by line, even across a torn tail cut by a writer."""
        with TinyStore(data_dir) as reader, TinyStore(data_dir) as writer:
            put(writer, CONTACTS, "a", {"v": 1})
            reader.refresh()
            assert reader.get(CONTACTS, "a") == {"v": 1}
            with journal_file(data_dir).open("ab") as out:
                out.write(b'{"ops":[["contacts","torn"')
            before = file_states(data_dir)
            reader.refresh()
            assert file_states(data_dir) == before  # refresh writes nothing
            put(writer, CONTACTS, "b", {"v": 2})
            reader.refresh()
            assert contents(reader, CONTACTS) == {CONTACTS: {"a": {"v": 1}, "b": {"v": 2}}}


class TestJournalChecksums:
    """Each line carries a CRC32 of itself: damage to a committed line is found, not used.

    A torn last line (a crash during its append) is still dropped, as an uncommitted
    write, but said so: in the log, and in ``toma status`` once a writer has cut it.
    """

    def _three_commits(self, data_dir: Path) -> bytes:
        with TinyStore(data_dir) as store:
            for n in range(3):
                put(store, CONTACTS, f"k{n}", {"v": 1000 + n})
        return journal_file(data_dir).read_bytes()

    def test_every_line_carries_a_crc32_of_its_operations(self, data_dir: Path) -> None:
        for line in self._three_commits(data_dir).splitlines():
            assert line.startswith(b'{"c":"')
            body = line[16:]
            assert int(line[6:14], 16) == zlib.crc32(body)
            assert json.loads(line)["c"] == line[6:14].decode()

    @pytest.mark.parametrize(
        ("old", "new"),
        [(b'"v":1001', b'"v":1007'), (b'"k1"', b'"k7"'), (b'"contacts"', b'"messages"')],
        ids=["value", "key", "table"],
    )
    def test_a_flipped_byte_in_a_committed_line_names_file_and_line(
        self, data_dir: Path, old: bytes, new: bytes
    ) -> None:
        """Still valid JSON, so without a checksum it was applied as if committed."""
        data = self._three_commits(data_dir)
        first, second, third = data.splitlines(keepends=True)
        assert old in second
        journal_file(data_dir).write_bytes(first + second.replace(old, new, 1) + third)
        with pytest.raises(StoreError, match="checksum") as caught:
            TinyStore(data_dir)
        assert (caught.value.file, caught.value.line) == (str(journal_file(data_dir)), 2)

    def test_a_damaged_checksum_prefix_is_not_taken_for_an_old_line(self, data_dir: Path) -> None:
        data = self._three_commits(data_dir)
        first, second, third = data.splitlines(keepends=True)
        journal_file(data_dir).write_bytes(first + second.replace(b'{"c"', b'{"d"', 1) + third)
        with pytest.raises(StoreError) as caught:
            TinyStore(data_dir)
        assert caught.value.line == 2

    def test_a_line_without_checksum_after_one_with_is_damage(self, data_dir: Path) -> None:
        data = self._three_commits(data_dir)
        first, second, third = data.splitlines(keepends=True)
        stripped = b"{" + second[16:]  # the checksum cut out: an old-format line
        journal_file(data_dir).write_bytes(first + stripped + third)
        with pytest.raises(StoreError, match="no checksum") as caught:
            TinyStore(data_dir)
        assert caught.value.line == 2

    def test_an_old_journal_without_checksums_still_loads_and_grows(self, data_dir: Path) -> None:
        """Journals written before checksums: accepted as before, then appended to."""
        with TinyStore(data_dir):
            pass
        journal_file(data_dir).write_bytes(
            b'{"ops":[["contacts","a",{"v":1}]]}\n{"ops":[["contacts","b",{"v":2}]]}\n'
        )
        with TinyStore(data_dir) as store:
            assert contents(store, CONTACTS) == {CONTACTS: {"a": {"v": 1}, "b": {"v": 2}}}
            put(store, CONTACTS, "c", {"v": 3})
        lines = journal_file(data_dir).read_bytes().splitlines()
        assert [line.startswith(b'{"c":"') for line in lines] == [False, False, True]
        with TinyStore(data_dir) as store:
            assert len(contents(store, CONTACTS)[CONTACTS]) == 3

    @pytest.mark.parametrize(
        "tail",
        [b'{"c":"00000000","ops":[["contacts","x"', b"\x00" * 40 + b"\n"],
        ids=["cut-mid-line", "garbage-last-line"],
    )
    def test_a_torn_last_line_is_dropped_logged_and_shown_in_status(
        self, data_dir: Path, tail: bytes, caplog: pytest.LogCaptureFixture
    ) -> None:
        from toma.reports.status import gather

        data = self._three_commits(data_dir)
        with journal_file(data_dir).open("ab") as out:
            out.write(tail)
        with caplog.at_level("WARNING", logger="toma"), TinyStore(data_dir) as store:
            assert len(contents(store, CONTACTS)[CONTACTS]) == 3
            [record] = [r for r in caplog.records if r.getMessage() == "store.journal_tail_dropped"]
            assert record.toma == {  # type: ignore[attr-defined]
                "file": str(journal_file(data_dir)),
                "offset": len(data),
                "bytes": len(tail),
                "line": 4,
            }
            put(store, CONTACTS, "after", {"v": 4})  # the writer cuts the tail
        # Logged once, though the writer's catch-up before its commit found it again.
        assert sum(r.getMessage() == "store.journal_tail_dropped" for r in caplog.records) == 1
        with TinyStore(data_dir) as store:
            lines = gather(store).lines()
        [shown] = [line for line in lines if "journal" in line.lower()]
        assert str(journal_file(data_dir)) in shown
        assert f"{len(tail)} bytes" in shown
        assert f"offset {len(data)}" in shown


def _fill(store: TinyStore, count: int, start: int = 0) -> None:
    with store.transaction() as tx:
        for n in range(start, start + count):
            tx.put(MESSAGES, f"m{n}", {"n": n, "body": "x" * 200})


class TestCompaction:
    """The snapshot is rewritten, atomically, only once the journal outgrows it."""

    def test_journal_larger_than_snapshot_starts_a_new_generation(self, data_dir: Path):
        """Past the threshold a commit writes snapshot g+1, and the old files go."""
        with TinyStore(data_dir, compact_min_bytes=4096) as store:
            _fill(store, 5)
            assert store.generation == 1  # journal still under the minimum
            _fill(store, 30, start=5)
            assert store.generation == 2
            assert sorted(p.name for p in data_dir.iterdir()) == ["snapshot-2.json", "store.lock"]
            _fill(store, 1, start=35)
            expected = contents(store)
        with TinyStore(data_dir) as reopened:
            assert contents(reopened) == expected
            assert reopened.count(MESSAGES) == 36

    def test_other_instance_reloads_after_compaction(self, data_dir: Path):
        """An instance at an old generation loads the new snapshot when it catches up."""
        with TinyStore(data_dir) as old, TinyStore(data_dir) as new:
            _fill(new, 3)
            old.refresh()
            new.compact()
            _fill(new, 2, start=3)
            put(old, CONTACTS, "a", {"v": 1})
            assert old.generation == new.generation == 2
            assert old.count(MESSAGES) == 5
            new.refresh()
            assert contents(new) == contents(old)

    @pytest.mark.parametrize(
        "crash_point",
        ["temp-file-written", "renamed", "old-journal-removed"],
    )
    def test_crash_during_compaction_leaves_a_consistent_store(
        self, data_dir: Path, tmp_path: Path, crash_point: str
    ):
        """Whatever step a compaction dies at, the store opens with every commit in it."""
        with TinyStore(data_dir) as store:
            _fill(store, 10)
            put(store, CONTACTS, "a", {"v": 1})
            expected = contents(store)
            saved = tmp_path / "saved"
            shutil.copytree(data_dir, saved)
            store.compact()
        new_snapshot = journal.snapshot_path(data_dir, 2)
        if crash_point == "temp-file-written":
            # Back to generation 1, with a half-written snapshot left behind.
            half = new_snapshot.read_bytes()[:100]
            shutil.rmtree(data_dir)
            shutil.copytree(saved, data_dir)
            (data_dir / "snapshot-2.json.x1y2.tmp").write_bytes(half)
        else:
            shutil.copy2(saved / "journal-1.jsonl", data_dir)
            if crash_point == "renamed":
                shutil.copy2(saved / "snapshot-1.json", data_dir)
        with TinyStore(data_dir) as store:
            assert contents(store) == expected
            put(store, SYNC, "inbox", {"uid": 1})
        names = sorted(p.name for p in data_dir.iterdir())
        generation = 1 if crash_point == "temp-file-written" else 2
        assert names == [f"journal-{generation}.jsonl", f"snapshot-{generation}.json", "store.lock"]


class TestChangeFeed:
    """changes_since names every write a reader has not seen yet, in order, or says reload."""

    def test_no_mark_means_read_everything(self, store: TinyStore):
        """A first call gives a mark and no list: the reader must read the whole store."""
        _mark, changes = store.changes_since(None)
        assert changes is None

    def test_each_put_and_delete_is_listed_in_order(self, store: TinyStore):
        """One entry per write that changed something, deletes flagged, in commit order."""
        mark, _ = store.changes_since(None)
        put(store, CONTACTS, "a", {"v": 1})
        with store.transaction() as tx:
            tx.put(MESSAGES, "m", {"n": 1})
            tx.delete(CONTACTS, "a")
            tx.delete(CONTACTS, "nobody")  # changes nothing, so not listed
        mark2, changes = store.changes_since(mark)
        assert changes == [
            (CONTACTS, "a", False),
            (MESSAGES, "m", False),
            (CONTACTS, "a", True),
        ]
        assert store.changes_since(mark2)[1] == []

    def test_a_failed_transaction_lists_nothing(self, store: TinyStore):
        """What was never committed was never seen."""
        mark, _ = store.changes_since(None)
        with pytest.raises(RuntimeError), store.transaction() as tx:
            tx.put(CONTACTS, "a", {})
            raise RuntimeError
        assert store.changes_since(mark)[1] == []

    def test_writes_of_another_instance_are_listed_once_caught_up(self, data_dir: Path):
        """Another process's commits join the feed when refresh replays them."""
        with TinyStore(data_dir) as reader, TinyStore(data_dir) as writer:
            mark, _ = reader.changes_since(None)
            put(writer, CONTACTS, "a", {"v": 1})
            assert reader.changes_since(mark)[1] == []
            reader.refresh()
            assert reader.changes_since(mark)[1] == [(CONTACTS, "a", False)]

    def test_own_compaction_keeps_the_feed(self, store: TinyStore):
        """Compacting changes only the store's own meta document; the marks stay good."""
        mark, _ = store.changes_since(None)
        put(store, CONTACTS, "a", {"v": 1})
        store.compact()
        assert store.changes_since(mark)[1] == [(CONTACTS, "a", False), (META, "store", False)]

    def test_snapshot_loaded_anew_starts_a_new_feed(self, data_dir: Path):
        """After another instance compacted, catching up reloads: old marks say reload."""
        with TinyStore(data_dir) as reader, TinyStore(data_dir) as writer:
            mark, _ = reader.changes_since(None)
            put(writer, CONTACTS, "a", {"v": 1})
            writer.compact()
            reader.refresh()
            new_mark, changes = reader.changes_since(mark)
            assert changes is None
            put(reader, CONTACTS, "b", {})
            assert reader.changes_since(new_mark)[1] == [(CONTACTS, "b", False)]

    def test_a_reader_too_far_behind_reads_everything(
        self, store: TinyStore, monkeypatch: pytest.MonkeyPatch
    ):
        """The feed keeps a bounded number of writes; an older mark says reload."""
        monkeypatch.setattr(memory, "_FEED_LIMIT", 8)
        old, _ = store.changes_since(None)
        with store.transaction() as tx:
            for n in range(6):
                tx.put(MESSAGES, f"m{n}", {})
        recent, _ = store.changes_since(None)
        with store.transaction() as tx:
            for n in range(6):
                tx.put(MESSAGES, f"m{n}", {"n": n})
        assert store.changes_since(old)[1] is None
        assert store.changes_since(recent)[1] == [(MESSAGES, f"m{n}", False) for n in range(6)]

    def test_a_mark_of_another_store_says_reload(self, tmp_path: Path):
        """Marks are only understood by the store that gave them."""
        with TinyStore(tmp_path / "a") as first, TinyStore(tmp_path / "b") as second:
            mark, _ = first.changes_since(None)
            assert second.changes_since(mark)[1] is None


class TestFiles:
    """Owner-only files in TinyDB's format, with a schema version that is checked."""

    def test_data_dir_is_0700_and_every_file_0600(self, data_dir: Path):
        """The store is readable by its owner only, including locks and new generations."""
        with TinyStore(data_dir, compact_min_bytes=0) as store:
            put(store, CONTACTS, "a", {"v": 1})
            store.compact()
            put(store, CONTACTS, "b", {"v": 2})
            with store.daemon_lock():
                pass
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data_dir.iterdir()}
        assert set(modes) >= {"snapshot-2.json", "journal-2.jsonl", "store.lock", "daemon.lock"}
        assert set(modes.values()) == {0o600}

    def test_snapshot_opens_with_tinydb(self, data_dir: Path):
        """The snapshot is a TinyDB database, each document carrying its key in _key."""
        with TinyStore(data_dir) as store:
            put(store, CONTACTS, "ana@example.com", {"first_name": "Ana"})
            store.compact()
        with TinyDB(journal.snapshot_path(data_dir, 2), access_mode="r") as db:
            assert db.table(CONTACTS).all() == [{"_key": "ana@example.com", "first_name": "Ana"}]
            assert db.table(META).all() == [
                {"_key": "store", "schema_version": SCHEMA_VERSION, "generation": 2}
            ]

    def test_snapshot_holds_one_document_per_line(self, data_dir: Path):
        """The snapshot is read a block of lines at a time, never as one giant object."""
        with TinyStore(data_dir) as store:
            with store.transaction() as tx:
                for n in range(3):
                    tx.put(CONTACTS, f"c{n}", {"n": n, "note": "line\nbreak"})
            store.compact()
        lines = journal.snapshot_path(data_dir, 2).read_bytes().splitlines()
        assert lines[:5] == [
            b"{",
            b'"contacts":{',
            b'"1":{"_key":"c0","n":0,"note":"line\\nbreak"},',
            b'"2":{"_key":"c1","n":1,"note":"line\\nbreak"},',
            b'"3":{"_key":"c2","n":2,"note":"line\\nbreak"}',
        ]
        assert lines[-1] == b"}"

    @pytest.mark.parametrize("indent", [None, 2], ids=["one-line", "indented"])
    def test_snapshot_in_another_layout_is_read_whole(self, data_dir: Path, indent: int | None):
        """A snapshot written by TinyDB itself (or an older toma) opens all the same."""
        with TinyStore(data_dir) as store:
            put(store, CONTACTS, "a", {"tags": ["x"], "fields": {"k": "v"}})
            put(store, MESSAGES, "m", {"n": 1})
            store.compact()
            expected = contents(store)
        snapshot = journal.snapshot_path(data_dir, 2)
        snapshot.write_text(json.dumps(json.loads(snapshot.read_bytes()), indent=indent))
        with TinyStore(data_dir) as reopened:
            assert contents(reopened) == expected
            reopened.compact()
        assert journal.snapshot_path(data_dir, 3).read_bytes().startswith(b'{\n"contacts":{\n')

    @pytest.mark.parametrize(
        ("line", "replacement"),
        [
            (3, b'"1":{"_key":"a","v":1},\n'),  # a stray comma before the table ends
            (3, b'"1":{"_key":"a","v":\n'),  # a document cut short
            (3, b'"1":{"_key":"a","v":1}\n"2":{"_key":"b","v":2}\n'),  # a comma missing
            (4, b"},\n}\n"),  # the database closed after a comma
        ],
        ids=["stray-comma", "cut-document", "missing-comma", "close-after-comma"],
    )
    def test_damaged_line_layout_is_an_error_naming_the_snapshot(
        self, data_dir: Path, line: int, replacement: bytes
    ):
        """Within the one-document-per-line layout, any damage is reported, not guessed at."""
        with TinyStore(data_dir) as store:
            put(store, CONTACTS, "a", {"v": 1})
            store.compact()
        snapshot = journal.snapshot_path(data_dir, 2)
        lines = snapshot.read_bytes().splitlines(keepends=True)
        lines[line - 1] = replacement
        snapshot.write_bytes(b"".join(lines))
        with pytest.raises(StoreError) as caught:
            TinyStore(data_dir)
        assert caught.value.file == str(snapshot)

    @pytest.mark.parametrize("layout", ["lines", "whole"])
    def test_a_document_nested_thousands_deep_is_an_error_naming_the_snapshot(
        self, data_dir: Path, layout: str
    ):
        """json raises RecursionError, not ValueError, on 100,000 nested lists."""
        with TinyStore(data_dir) as store:
            put(store, CONTACTS, "a", {"v": 1})
            store.compact()
        snapshot = journal.snapshot_path(data_dir, 2)
        deep = b"[" * 100_000 + b"]" * 100_000
        data = snapshot.read_bytes().replace(b'"v":1', b'"v":' + deep)
        snapshot.write_bytes(data if layout == "lines" else data.replace(b"\n", b""))
        with pytest.raises(StoreError, match="nested too deeply") as caught:
            TinyStore(data_dir)
        assert caught.value.file == str(snapshot)

    def test_a_journal_line_nested_thousands_deep_is_damage(self, data_dir: Path):
        with TinyStore(data_dir) as store:
            put(store, CONTACTS, "a", {"v": 1})
        deep = b"[" * 100_000 + b"]" * 100_000
        with journal_file(data_dir).open("ab") as out:
            out.write(journal.encode_commit([(CONTACTS, "b", b'{"v":' + deep + b"}")]))
            out.write(journal.encode_commit([(CONTACTS, "c", b"{}")]))
        with pytest.raises(StoreError, match="nested too deeply") as caught:
            TinyStore(data_dir)
        assert caught.value.line == 2

    def test_schema_version_is_readable(self, store: TinyStore):
        """The meta table tells which schema the store holds."""
        assert store.get(META, "store") == {"schema_version": SCHEMA_VERSION, "generation": 1}

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"schema_version": SCHEMA_VERSION + 1}, "newer"),
            ({"schema_version": "one"}, "no schema version"),
            ({"generation": 7}, "generation"),
        ],
        ids=["newer-version", "bad-version", "wrong-generation"],
    )
    def test_unusable_snapshot_meta_is_refused(
        self, data_dir: Path, change: dict[str, Any], message: str
    ):
        """A snapshot from a newer toma, or with broken meta, is a StoreError naming it."""
        TinyStore(data_dir).close()
        snapshot = journal.snapshot_path(data_dir, 1)
        tables = json.loads(snapshot.read_bytes())
        tables[META]["1"].update(change)
        snapshot.write_text(json.dumps(tables))
        with pytest.raises(StoreError, match=message) as caught:
            TinyStore(data_dir)
        assert caught.value.file == str(snapshot)

    @pytest.mark.parametrize(
        "content",
        [b"{not json", b"[]", b'{"contacts": {"1": {"email": "no key"}}}'],
        ids=["not-json", "not-a-database", "no-key"],
    )
    def test_unreadable_snapshot_is_an_error_naming_it(self, data_dir: Path, content: bytes):
        """A damaged snapshot is reported with its path, never silently emptied."""
        TinyStore(data_dir).close()
        snapshot = journal.snapshot_path(data_dir, 1)
        snapshot.write_bytes(content)
        with pytest.raises(StoreError) as caught:
            TinyStore(data_dir)
        assert caught.value.file == str(snapshot)

    def test_journal_without_snapshot_is_refused(self, data_dir: Path):
        """A journal alone means a lost snapshot: refuse rather than start empty."""
        with TinyStore(data_dir) as store:
            put(store, CONTACTS, "a", {})
        journal.snapshot_path(data_dir, 1).unlink()
        with pytest.raises(StoreError, match="no snapshot"):
            TinyStore(data_dir)

    def test_open_store_gives_a_working_store(self, data_dir: Path):
        """open_store is the one entry point the rest of toma uses."""
        store = open_store(data_dir)
        with store.transaction() as tx:
            tx.put(CONTACTS, "a", {"v": 1})
        store.close()
        with pytest.raises(StoreError, match="closed"):
            store.get(CONTACTS, "a")


HOLD_DAEMON_LOCK = """
    import sys
    from pathlib import Path
    from toma.store import TinyStore
    with TinyStore(Path(sys.argv[1])).daemon_lock():
        print("locked", flush=True)
        sys.stdin.read()
"""


class TestLocks:
    """One daemon per data directory; writers wait a bounded time for each other."""

    def test_second_daemon_lock_fails_while_another_process_holds_it(self, data_dir: Path):
        """daemon_lock in a second process raises StoreLocked naming the holder's pid."""
        TinyStore(data_dir).close()
        child = run_child(HOLD_DAEMON_LOCK, str(data_dir))
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "locked\n"
            with (
                TinyStore(data_dir) as store,
                pytest.raises(StoreLocked) as caught,
                store.daemon_lock(),
            ):
                pass
            assert str(child.pid) in caught.value.message
            assert caught.value.message == f"another toma run (pid {child.pid}) is using {data_dir}"
        finally:
            child.communicate(timeout=CHILD_TIMEOUT)
        with TinyStore(data_dir) as store, store.daemon_lock():
            assert (data_dir / "daemon.lock").read_text().strip() == str(os.getpid())

    def test_daemon_lock_is_exclusive_and_released_on_exit(self, store: TinyStore):
        """A second holder fails while the first holds it, and succeeds after."""
        with store.daemon_lock(), pytest.raises(StoreLocked), store.daemon_lock():
            pass
        with store.daemon_lock():
            pass

    def test_transaction_gives_up_after_the_timeout_naming_the_holder(self, data_dir: Path):
        """A writer waits a bounded time for store.lock, then raises StoreLocked."""
        store = TinyStore(data_dir, lock_timeout=0)
        fd = os.open(data_dir / "store.lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with (
                pytest.raises(StoreLocked, match=f"pid {os.getpid()}") as caught,
                store.transaction(),
            ):
                pass
            assert caught.value.file == str(data_dir / "store.lock")
        finally:
            os.close(fd)


VISIBILITY_CHILD = """
    import json, sys
    from pathlib import Path
    from toma.store import TinyStore
    store = TinyStore(Path(sys.argv[1]))
    with store.transaction() as tx:
        tx.put("contacts", "from-child", {"v": 1})
    print("written", flush=True)
    sys.stdin.readline()
    store.refresh()
    print(json.dumps(store.get("contacts", "from-parent")), flush=True)
"""

WRITE_LOOP_CHILD = """
    import sys
    from pathlib import Path
    from toma.store import TinyStore
    store = TinyStore(Path(sys.argv[1]))
    with store.transaction() as tx:
        # A snapshot big enough that writing one takes a while.
        for n in range(1000):
            tx.put("conversations", f"c{n}", {"n": n, "body": "x" * 1000})
    for n in range(3000):
        with store.transaction() as tx:
            tx.put("sync", "counter", {"n": n})
            tx.put("messages", f"m{n}", {"n": n, "body": "x" * 300})
        print(n, flush=True)
        if n % 10 == 9:
            store.compact()
"""

ATOMIC_WRITE_CHILD = """
    import json, sys
    from pathlib import Path
    from toma.durable import atomic_write
    path = Path(sys.argv[1])
    for n in range(3000):
        head = json.dumps({"n": n, "pad": ""})[:-2].encode()
        atomic_write(path, [head, *[b"x" * 65536] * 20, b'"}'])
        print(n, flush=True)
"""


def _kill_after(
    child: subprocess.Popen[str], lines: int, *, when_temp_in: Path | None = None
) -> int:
    """SIGKILL the child once it has reported ``lines`` steps (and, given a directory, once
    a temporary file shows up there); return the last step it reported before it died."""
    assert child.stdout is not None
    last = -1
    for _ in range(lines):
        text = child.stdout.readline()
        assert text, "the child ended before it was killed"
        last = int(text)
    if when_temp_in is not None:
        # Bounded polling for an event, not a wait for time: aim the kill at a rename.
        for _ in range(200_000):
            if any(p.name.endswith(".tmp") for p in when_temp_in.iterdir()):
                break
    child.send_signal(signal.SIGKILL)
    # Read to the end (the pipe ends with the child): on a busy machine it may have
    # gone on for a few steps before the kill.
    for text in child.stdout.read().splitlines(keepends=True):
        if text.endswith("\n"):
            last = int(text)
    child.communicate(timeout=CHILD_TIMEOUT)
    assert child.returncode == -signal.SIGKILL
    return last


def _assert_commits_whole(data_dir: Path, last: int) -> None:
    with TinyStore(data_dir) as store:
        counter = store.get(SYNC, "counter")
        assert counter is not None
        assert counter["n"] in (last, last + 1)
        assert store.count(MESSAGES) == counter["n"] + 1
        assert all(doc["n"] == int(key[1:]) for key, doc in store.all(MESSAGES))
        assert store.count(CONVERSATIONS) == 1000
        put(store, CONTACTS, "after", {})  # and it can still be written


class TestProcesses:
    """Processes see each other's commits, and a killed writer loses nothing committed."""

    def test_writes_are_visible_across_processes(self, data_dir: Path):
        """After refresh or a transaction, each process sees what the other committed."""
        with TinyStore(data_dir) as store:
            child = run_child(VISIBILITY_CHILD, str(data_dir))
            assert child.stdout is not None and child.stdin is not None
            assert child.stdout.readline() == "written\n"
            assert store.get(CONTACTS, "from-child") is None
            store.refresh()
            assert store.get(CONTACTS, "from-child") == {"v": 1}
            put(store, CONTACTS, "from-parent", {"v": 2})
            out, _ = child.communicate("go\n", timeout=CHILD_TIMEOUT)
            assert json.loads(out) == {"v": 2}

    @pytest.mark.parametrize("kill_after", [1, 7, 23])
    def test_sigkill_while_committing_keeps_every_reported_commit(
        self, data_dir: Path, kill_after: int
    ):
        """A writer killed between or during commits leaves a readable store holding
        every commit it reported, each one whole."""
        last = _kill_after(run_child(WRITE_LOOP_CHILD, str(data_dir)), kill_after)
        _assert_commits_whole(data_dir, last)

    def test_sigkill_while_compacting_keeps_every_commit(self, data_dir: Path):
        """A writer killed while writing a new snapshot leaves the old generation intact."""
        child = run_child(WRITE_LOOP_CHILD, str(data_dir))
        last = _kill_after(child, 10, when_temp_in=data_dir)
        _assert_commits_whole(data_dir, last)

    def test_sigkill_during_atomic_write_leaves_the_old_or_new_file(self, tmp_path: Path):
        """A file replaced by atomic_write is always one complete version, never a mix."""
        path = tmp_path / "state.json"
        last = _kill_after(run_child(ATOMIC_WRITE_CHILD, str(path)), 3, when_temp_in=tmp_path)
        assert json.loads(path.read_bytes())["n"] in (last, last + 1)


_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


def _typed(value: Any) -> Any:
    """``value`` with every type spelled out: 1 and 1.0 and True compare equal."""
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    return (type(value).__name__, value)


@given(st.dictionaries(st.text(max_size=6) | st.integers(), _values, max_size=6))
def test_a_put_document_is_what_its_json_reads_back_as(doc: dict[Any, Any]) -> None:
    """The shortcut for flat documents gives what decoding the JSON gives, types and all."""
    data, copy = snapshot.normalise_doc(doc)
    assert _typed(copy) == _typed(json.loads(data))
