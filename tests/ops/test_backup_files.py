"""Backups from outside are hostile; restores never write over a store; export and migrate."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from toma.core.contacts import make_contact
from toma.errors import StoreError
from toma.ops.backup import backup, read_backup, restore, unpack
from toma.ops.export import rows, safe_cell, to_csv
from toma.ops.migrate import migrate, pending, require_current
from toma.store import CONTACTS, SCHEMA_VERSION
from toma.store.embedded.tinydb import TinyStore

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def a_store(folder: Path, names: tuple[str, ...] = ("ada",)) -> TinyStore:
    store = TinyStore(folder)
    with store.transaction() as tx:
        for name in names:
            contact = make_contact(f"{name}@example.org", first_name=name, added_at=NOW.isoformat())
            tx.put(CONTACTS, contact.email, contact.to_doc())
    (folder / "unsubscribe.key").write_bytes(b"k" * 32)
    return store


def rewrite(
    archive: Path, out: Path, change: dict[str, bytes | None], extra: list[tarfile.TarInfo]
) -> None:
    """A copy of ``archive`` with members replaced (None: removed) and ``extra`` added."""
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        for member in src:
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name in change:
                if change[member.name] is None:
                    continue
                data = change[member.name]  # type: ignore[assignment]
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
        for member in extra:
            dst.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    store = a_store(tmp_path / "data", ("ada", "bo"))
    path = tmp_path / "b.tar.gz"
    backup(store, path, now=NOW, version="test")
    return path


def test_a_backup_round_trips_every_file_and_the_key(tmp_path: Path, archive: Path) -> None:
    info = restore(archive, tmp_path / "restored", now=NOW)
    assert set(info.files) >= {"unsubscribe.key"}
    assert (tmp_path / "restored" / "unsubscribe.key").read_bytes() == b"k" * 32
    assert (tmp_path / "restored").stat().st_mode & 0o777 == 0o700
    with TinyStore(tmp_path / "restored") as store:
        assert sorted(k for k, _ in store.all(CONTACTS)) == ["ada@example.org", "bo@example.org"]


def test_a_backup_leaves_out_locks_and_unfinished_files(tmp_path: Path) -> None:
    store = a_store(tmp_path / "data")
    (tmp_path / "data" / "snapshot-9.json.tmp").write_text("half")
    backup(store, tmp_path / "b.tar.gz", now=NOW, version="test")
    info, files = read_backup(tmp_path / "b.tar.gz")
    assert not [n for n in files if n.endswith((".lock", ".tmp"))]
    assert info.schema_version == SCHEMA_VERSION


def test_a_backup_holds_the_journal_up_to_its_last_commit_only(tmp_path: Path) -> None:
    store = a_store(tmp_path / "data")
    journal = next((tmp_path / "data").glob("journal-*.jsonl"))
    with journal.open("ab") as handle:
        handle.write(b'{"c":"00000000","ops":[["contacts","x"')  # a torn, uncommitted write
    store.refresh()
    backup(store, tmp_path / "b.tar.gz", now=NOW, version="test")
    _info, files = read_backup(tmp_path / "b.tar.gz")
    assert files[journal.name].endswith(b"\n")
    assert not files[journal.name].endswith(b'"x"')


def test_restore_refuses_a_data_directory_that_holds_anything(
    tmp_path: Path, archive: Path
) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "snapshot-1.json").write_text("{}")
    with pytest.raises(StoreError, match="not empty"):
        restore(archive, target, now=NOW)
    assert (target / "snapshot-1.json").read_text() == "{}"


@pytest.mark.parametrize(
    "name",
    ["data/../../escape", "/etc/evil", "data/sub/file", "data/.hidden", "other/file", "data/"],
)
def test_restore_refuses_members_outside_the_data_directory(
    tmp_path: Path, archive: Path, name: str
) -> None:
    member = tarfile.TarInfo(name)
    member.size = 1
    bad = tmp_path / "bad.tar.gz"
    rewrite(archive, bad, {}, [member])
    with pytest.raises(StoreError, match=r"refused|not a plain file"):
        restore(bad, tmp_path / "restored", now=NOW)
    assert not (tmp_path / "restored").exists()
    assert not (tmp_path.parent / "escape").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE])
def test_restore_refuses_links_and_directories(tmp_path: Path, archive: Path, kind: bytes) -> None:
    member = tarfile.TarInfo("data/unsubscribe2.key")
    member.type = kind
    member.linkname = "/etc/passwd"
    bad = tmp_path / "bad.tar.gz"
    rewrite(archive, bad, {}, [member])
    with pytest.raises(StoreError, match="not a plain file"):
        restore(bad, tmp_path / "restored", now=NOW)


def test_an_archive_larger_than_the_limit_is_refused_before_it_fills_the_disk(
    tmp_path: Path, archive: Path
) -> None:
    folder = tmp_path / "staging"
    folder.mkdir()
    with pytest.raises(StoreError, match="larger than any store"):
        unpack(archive, folder, limit=40)
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 40


def test_restore_refuses_a_file_changed_after_the_backup(tmp_path: Path, archive: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    rewrite(archive, bad, {"data/unsubscribe.key": b"z" * 32}, [])
    with pytest.raises(StoreError, match="damaged"):
        restore(bad, tmp_path / "restored", now=NOW)
    assert not (tmp_path / "restored").exists()


def test_restore_refuses_a_file_the_manifest_does_not_list(tmp_path: Path, archive: Path) -> None:
    member = tarfile.TarInfo("data/planted.json")
    member.size = 3
    bad = tmp_path / "bad.tar.gz"
    rewrite(archive, bad, {}, [member])
    with pytest.raises(StoreError, match="extra"):
        restore(bad, tmp_path / "restored", now=NOW)


def test_restore_refuses_what_is_not_a_backup(tmp_path: Path, archive: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(StoreError, match="not a readable toma backup"):
        restore(junk, tmp_path / "restored", now=NOW)
    no_manifest = tmp_path / "nomanifest.tar.gz"
    rewrite(archive, no_manifest, {"manifest.json": None}, [])
    with pytest.raises(StoreError, match=r"manifest\.json"):
        restore(no_manifest, tmp_path / "restored", now=NOW)


def test_a_backup_that_does_not_open_as_a_store_is_not_moved_into_place(
    tmp_path: Path, archive: Path
) -> None:
    _info, files = read_backup(archive)
    name = next(n for n in files if n.startswith("snapshot-"))
    damaged = b'{"contacts": {"1": {"_key": "ada'
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    manifest["files"][name]["sha256"] = hashlib.sha256(damaged).hexdigest()
    bad = tmp_path / "bad.tar.gz"
    rewrite(
        archive,
        bad,
        {f"data/{name}": damaged, "manifest.json": json.dumps(manifest).encode()},
        [],
    )
    with pytest.raises(StoreError):
        restore(bad, tmp_path / "restored", now=NOW)
    assert not (tmp_path / "restored").exists()
    assert not list(tmp_path.glob(".restored.restore-*"))


# -- export ----------------------------------------------------------------------------


@pytest.mark.parametrize("attack", ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tx"])
def test_a_csv_cell_that_a_spreadsheet_would_run_stays_text(attack: str) -> None:
    text = to_csv([{"key": "a", "first_name": attack}])
    [_header, row] = list(csv.reader(io.StringIO(text)))
    assert row[1] == "'" + attack


def test_csv_columns_are_every_field_and_nested_values_are_json(tmp_path: Path) -> None:
    store = a_store(tmp_path / "data", ("ada",))
    documents = rows(store, CONTACTS)
    table = list(csv.DictReader(io.StringIO(to_csv(documents))))
    assert table[0]["key"] == "ada@example.org"
    assert table[0]["first_name"] == "ada"
    assert json.loads(table[0]["tags"]) == documents[0]["tags"]
    assert safe_cell(3) == "3"
    assert safe_cell(None) == ""


# -- migrate ---------------------------------------------------------------------------


def test_the_current_schema_has_nothing_to_migrate(tmp_path: Path) -> None:
    store = a_store(tmp_path / "data")
    assert pending(store.schema_version) == []
    assert migrate(store) == []
    require_current(store)


def test_a_migration_step_runs_once_and_raises_the_version_on_disk(tmp_path: Path) -> None:
    store = a_store(tmp_path / "data")
    seen: list[str] = []

    def add_field(tx: object) -> None:
        for key, doc in list(tx.all(CONTACTS)):  # type: ignore[attr-defined]
            seen.append(key)
            tx.put(CONTACTS, key, {**doc, "fields": {**doc.get("fields", {}), "m": "1"}})  # type: ignore[attr-defined]

    target = SCHEMA_VERSION + 1
    with pytest.raises(StoreError, match="run `toma migrate`"):
        require_current(store, target)
    assert migrate(store, target=target, migrations={SCHEMA_VERSION: add_field}) == [target]
    assert seen == ["ada@example.org"]
    assert store.schema_version == target
    assert migrate(store, target=target, migrations={SCHEMA_VERSION: add_field}) == []
    # Written by a newer toma than this one: refused when opened, with what to do.
    with pytest.raises(StoreError, match="newer than this toma"):
        TinyStore(tmp_path / "data")


def test_a_compaction_keeps_the_schema_version_of_the_data(tmp_path: Path) -> None:
    store = a_store(tmp_path / "data")
    store.compact()
    assert store.schema_version == SCHEMA_VERSION


def test_a_missing_step_is_refused(tmp_path: Path) -> None:
    store = a_store(tmp_path / "data")
    with pytest.raises(StoreError, match="no migration from schema version"):
        migrate(store, target=SCHEMA_VERSION + 1, migrations={})
    assert store.schema_version == SCHEMA_VERSION
