"""toma backup, restore, export, migrate: the whole store at once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from toma.cli import Context, json_option, main, pass_context, print_json
from toma.errors import TomaError

DISTRIBUTION = "toma-mail"


def toma_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def _embedded(store: object) -> object:
    from toma.store.embedded.tinydb import TinyStore

    if not isinstance(store, TinyStore):
        raise TomaError(
            "toma backup, restore and migrate work on the embedded store; "
            "back up a PostgreSQL store with pg_dump"
        )
    return store


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@pass_context
def backup(ctx: Context, file: Path, as_json: bool) -> None:
    """Write the whole data directory to FILE (a .tar.gz), safely while the daemon runs.

    It holds the store, the journal up to its last commit and unsubscribe.key,
    without which the unsubscribe links already sent stop working.
    """
    from toma.ops.backup import backup as write_backup
    from toma.store.embedded.tinydb import TinyStore

    with ctx.store() as store:
        _embedded(store)
        assert isinstance(store, TinyStore)  # noqa: S101 - checked by _embedded
        info = write_backup(store, file, now=datetime.now(UTC), version=toma_version())
    if as_json:
        print_json(info.to_json())
        return
    size = sum(int(f["size"]) for f in info.files.values())
    click.echo(
        f"Backed up {len(info.files)} files ({size} bytes, schema {info.schema_version}) "
        f"to {info.file}."
    )


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@pass_context
def restore(ctx: Context, file: Path, as_json: bool) -> None:
    """Restore a backup FILE as this project's data directory, which must be empty or absent."""
    from toma.ops.backup import restore as unpack

    info = unpack(file, ctx.config.paths.data, now=datetime.now(UTC))
    if as_json:
        print_json(info.to_json())
        return
    click.echo(f"Restored the backup of {info.created} into {info.file}.")
    click.echo("Messages sent after that backup are not known to it: check `toma status`.")


@main.command("export")
@click.option(
    "--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True
)
@click.option(
    "--table",
    "tables",
    multiple=True,
    type=click.Choice(["contacts", "conversations", "invoices"]),
    help="Only this table (repeatable); all three by default.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="A file (JSON) or a folder (CSV: one TABLE.csv each); JSON goes to stdout without it.",
)
@pass_context
def export_command(ctx: Context, fmt: str, tables: tuple[str, ...], output: Path | None) -> None:
    """Contacts, conversations and invoices as JSON or CSV, for a spreadsheet or another tool."""
    import json

    from toma.ops.export import EXPORTABLE, export_all, to_csv

    chosen = tables or EXPORTABLE
    with ctx.store() as store:
        data = export_all(store, chosen)
    if fmt == "json":
        text = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
        if output is None:
            click.echo(text, nl=False)
        else:
            output.write_text(text, encoding="utf-8")
        return
    if output is None:
        raise click.UsageError("--format csv writes one file per table: give --output FOLDER")
    output.mkdir(parents=True, exist_ok=True)
    for table, documents in data.items():
        (output / f"{table}.csv").write_text(to_csv(documents), encoding="utf-8", newline="")
    click.echo(f"Wrote {', '.join(f'{t}.csv' for t in data)} to {output}.")


@main.command()
@json_option
@pass_context
def migrate(ctx: Context, as_json: bool) -> None:
    """Bring the data store to this toma's schema; takes a backup first. Stop the daemon."""
    from toma.ops import migrate as migrations
    from toma.ops.backup import backup as write_backup
    from toma.store.base import SCHEMA_VERSION
    from toma.store.embedded.tinydb import TinyStore

    with ctx.store() as store, store.daemon_lock():
        _embedded(store)
        assert isinstance(store, TinyStore)  # noqa: S101 - checked by _embedded
        before = store.schema_version
        saved = None
        if migrations.pending(before):
            now = datetime.now(UTC)
            folder = store.data_dir.parent / "backups"
            folder.mkdir(mode=0o700, exist_ok=True)
            target = folder / f"before-migrate-{now:%Y%m%dT%H%M%SZ}.tar.gz"
            saved = write_backup(store, target, now=now, version=toma_version()).file
        reached = migrations.migrate(store)
    result = {
        "from": before,
        "to": reached[-1] if reached else before,
        "current": SCHEMA_VERSION,
        "steps": reached,
        "backup": str(saved) if saved else None,
    }
    if as_json:
        print_json(result)
    elif reached:
        click.echo(f"Migrated the store from schema {before} to {reached[-1]} (backup: {saved}).")
    else:
        click.echo(f"The store is at schema {before}, this toma's: nothing to migrate.")
