"""Every store test runs against both backends: the embedded store and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.postgres import PgServer
from toma.store import Store, TinyStore
from toma.store.postgres import PgStore

Opener = Callable[[], Store]


@pytest.fixture(params=["embedded", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens a new handle on one fresh store (as another process would)."""
    opened: list[Store] = []
    if request.param == "embedded":

        def open_embedded() -> Store:
            opened.append(TinyStore(tmp_path / "data"))
            return opened[-1]

        yield open_embedded
    else:
        server: PgServer = request.getfixturevalue("pg_server")
        with server.database() as dsn:

            def open_postgres() -> Store:
                opened.append(PgStore(dsn, pool_size=2))
                return opened[-1]

            yield open_postgres
            for store in opened:
                store.close()
    for store in opened:
        store.close()


@pytest.fixture
def store(backend: Opener) -> Store:
    return backend()
