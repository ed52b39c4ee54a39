"""`toma store copy`: the example project to PostgreSQL and back, losslessly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.postgres import PgServer
from toma.cli import main
from toma.store import CONTACTS, TABLES, Store, TinyStore
from toma.store.postgres import PgStore

NOW = "2026-11-25T10:00:00+00:00"
DSN_ENV = "TOMA_TEST_COPY_DSN"


def toma(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def everything(store: Store) -> dict[str, list[tuple[str, Any, list[str]]]]:
    """Every table in store order, each document with the order of its fields."""
    return {
        table: [
            (key, doc, list(doc))
            for key, doc in store.all(table)
            if (table, key) != ("meta", "store")
        ]
        for table in TABLES
    }


@pytest.fixture
def dsn(pg_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with pg_server.database() as found:
        monkeypatch.setenv(DSN_ENV, found)
        yield found


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The example project after a tick and an unsubscribe: every kind of record."""
    folder = tmp_path / "example"
    toma("init", str(folder), "--now", NOW)
    config = str(folder / "config.toml")
    toma("--config", config, "run", "--once", "--now", NOW)
    toma("--config", config, "contacts", "unsubscribe", "mira.keller@example.org")
    return folder


def test_the_example_project_goes_to_postgres_and_back_unchanged(
    example: Path, tmp_path: Path, dsn: str
):
    """embedded → PostgreSQL → embedded: every document, its fields' order and the
    tables' order survive, and the project runs on PostgreSQL as it did before."""
    toma("store", "copy", str(example / "var" / "data"), f"postgres:env:{DSN_ENV}")
    toma("store", "copy", f"postgres:env:{DSN_ENV}", str(tmp_path / "back"))
    with TinyStore(example / "var" / "data") as original:
        before = everything(original)
    assert sum(len(docs) for docs in before.values()) > 15
    with PgStore(dsn) as pg, TinyStore(tmp_path / "back") as back:
        assert everything(pg) == before
        assert everything(back) == before
    config = example / "config.toml"
    listed = toma("--config", str(config), "outbox", "list", "--json")
    with config.open("a", encoding="utf-8") as file:
        file.write(f'\n[store]\nkind = "postgres"\ndsn_env = "{DSN_ENV}"\n')
    assert toma("--config", str(config), "outbox", "list", "--json") == listed


def test_a_copy_into_a_store_that_is_not_empty_is_refused(tmp_path: Path, dsn: str):
    with PgStore(dsn) as pg, pg.transaction() as tx:
        tx.put(CONTACTS, "someone@example.org", {"email": "someone@example.org"})
    with TinyStore(tmp_path / "data") as store, store.transaction() as tx:
        tx.put(CONTACTS, "other@example.org", {"email": "other@example.org"})
    result = CliRunner().invoke(
        main, ["store", "copy", str(tmp_path / "data"), f"postgres:env:{DSN_ENV}"]
    )
    assert result.exit_code == 1
    assert "not empty (contacts)" in result.output
    with PgStore(dsn) as pg:
        assert [key for key, _doc in pg.all(CONTACTS)] == ["someone@example.org"]


def test_a_dsn_is_never_taken_from_the_command_line(tmp_path: Path, dsn: str):
    """A DSN holds a password, which must not show in `ps`: only env: or file: name it."""
    result = CliRunner().invoke(main, ["store", "copy", str(tmp_path / "d"), f"postgres:{dsn}"])
    assert result.exit_code == 1
    assert "postgres:env:VAR or postgres:file:PATH" in result.output
