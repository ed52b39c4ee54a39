"""toma store copy"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

import click

from toma.cli import Context, json_option, main, pass_context, print_json
from toma.errors import TomaError
from toma.store import Store, TinyStore

SPEC_HELP = (
    "A store is a data directory (the embedded store), or PostgreSQL as "
    "postgres:env:VAR (the DSN in the environment variable VAR) or "
    "postgres:file:PATH (the DSN in a file): never the DSN itself, which holds a password."
)


def open_spec(spec: str) -> Store:
    """The store a command-line argument names (see :data:`SPEC_HELP`)."""
    if spec.startswith("postgres:"):
        from toma.store.postgres import PgStore

        where = spec.removeprefix("postgres:")
        if where.startswith("env:"):
            dsn = os.environ.get(where.removeprefix("env:"))
            if dsn is None:
                raise TomaError(f"the environment variable {where.removeprefix('env:')} is not set")
        elif where.startswith("file:"):
            path = Path(where.removeprefix("file:"))
            try:
                dsn = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise TomaError(f"cannot read the DSN file: {exc.strerror}", file=path) from None
        else:
            raise TomaError(f"{spec!r}: write postgres:env:VAR or postgres:file:PATH")
        return PgStore(dsn)
    return TinyStore(Path(spec))


@main.group()
def store() -> None:
    """The store itself: moving it between the embedded store and PostgreSQL.

    \b
    To move a project to PostgreSQL (stop the daemon first):
        toma store copy var/data postgres:env:TOMA_DSN
    and set [store] kind = "postgres", dsn_env = "TOMA_DSN" in config.toml.
    Back, as a backup:
        toma store copy postgres:env:TOMA_DSN backup/data
    """


@store.command("copy")
@click.argument("source")
@click.argument("destination")
@json_option
@pass_context
def store_copy(ctx: Context, source: str, destination: str, as_json: bool) -> None:
    """Copy the whole store SOURCE into the empty store DESTINATION, and verify it.

    Every table is compared afterwards by its count of documents and a checksum
    of their contents; any difference is an error. SOURCE and DESTINATION are
    data directories or postgres:env:VAR / postgres:file:PATH.
    """
    from toma.store.copy import copy_store

    del ctx  # the stores are named on the command line, not by config.toml
    with ExitStack() as held:
        stores = []
        for spec in (source, destination):
            opened = open_spec(spec)
            held.callback(opened.close)
            if isinstance(opened, TinyStore):
                # No daemon may write to a data directory while it is copied.
                held.enter_context(opened.daemon_lock())
            stores.append(opened)
        prints = copy_store(stores[0], stores[1])
    if as_json:
        print_json({table: vars(found) for table, found in prints.items()})
        return
    for table, found in prints.items():
        click.echo(f"{table:<14} {found.count:>9}  sha256-sum {found.checksum[:16]}…")
    click.echo(f"Copied and verified {sum(f.count for f in prints.values())} documents.")
