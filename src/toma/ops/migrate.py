"""Schema migrations: bring a store written by an older toma to this toma's schema.

The store's ``meta/store`` document names the schema version of its data
(:data:`toma.store.base.SCHEMA_VERSION` is this toma's). ``MIGRATIONS[v]``
turns data of version ``v`` into version ``v + 1`` inside one transaction;
then :meth:`~toma.store.embedded.tinydb.TinyStore.set_schema_version` writes a
snapshot that says ``v + 1``. A crash between the two leaves version ``v``
with the data already changed, and the step runs again: every step must be
harmless on data it has already changed.

A store newer than this toma is refused when it is opened; an older one is
refused by ``toma run`` (:func:`require_current`) until ``toma migrate`` ran,
which takes a backup first: the owner decides when, never the daemon.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from toma.errors import StoreError
from toma.store.base import SCHEMA_VERSION, Store, Transaction
from toma.store.embedded.tinydb import TinyStore

Migration = Callable[[Transaction], None]

# Version 1 is the first schema: nothing to migrate from yet.
MIGRATIONS: Mapping[int, Migration] = {}


def pending(version: int, target: int = SCHEMA_VERSION) -> list[int]:
    """The versions whose step must run to bring ``version`` to ``target``."""
    return list(range(version, target))


def require_current(store: Store, target: int = SCHEMA_VERSION) -> None:
    """Refuse to work on a store whose data has not been migrated yet."""
    if not isinstance(store, TinyStore):
        return  # another store keeps its own schema
    version = store.schema_version
    if version < target:
        raise StoreError(
            f"the data store has schema version {version}, this toma uses {target}: "
            "run `toma migrate` first (it takes a backup before it changes anything)",
            file=store.data_dir,
        )


def migrate(
    store: TinyStore,
    *,
    target: int = SCHEMA_VERSION,
    migrations: Mapping[int, Migration] = MIGRATIONS,
) -> list[int]:
    """Run each step from the store's version up to ``target``; the versions reached."""
    reached: list[int] = []
    for version in pending(store.schema_version, target):
        step = migrations.get(version)
        if step is None:
            raise StoreError(
                f"no migration from schema version {version} to {version + 1}",
                file=store.data_dir,
            )
        with store.transaction() as tx:
            step(tx)
        store.set_schema_version(version + 1)
        reached.append(version + 1)
    return reached
