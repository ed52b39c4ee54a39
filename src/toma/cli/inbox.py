"""toma inbox …, toma log"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from toma.cli import (
    Context,
    json_option,
    main,
    now_option,
    pass_context,
    print_json,
    resolve_now,
)
from toma.config import Config
from toma.store import Store
from toma.store.records import contacts as addressbook

# --- inbox and conversations ---------------------------------------------------


@main.group()
def inbox() -> None:
    """Read the inbox: replies, auto-replies, bounces, unsubscribe requests."""


@inbox.command("sync")
@now_option
@json_option
@pass_context
def inbox_sync(ctx: Context, now_text: str | None, as_json: bool = False) -> None:
    """One pass over the inbox (each sender's, with [[senders]]): log what came in and act on it."""
    from dataclasses import asdict

    from toma.config.senders import each_sender
    from toma.inbox.sync import source_for, sync

    config = ctx.config
    views = each_sender(config) if config.inbox.kind == "imap" else (config,)
    reports = []
    for seen_by in views:
        with ctx.store() as store:
            source = source_for(seen_by)
            try:
                report = sync(store, seen_by, source, now=resolve_now(now_text))
            finally:
                source.close()
        reports.append((seen_by.sender, report))
        if as_json:
            continue
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(report.by_kind.items()))
        click.echo(
            (f"{seen_by.sender}: " if seen_by.sender else "")
            + f"{report.recorded} recorded ({kinds or 'nothing new'}); {report.aside} kept aside, "
            f"{report.duplicates} already known."
        )
    if as_json:
        # One mailbox: its report, as before [[senders]]; several: one report per sender.
        if len(reports) == 1:
            print_json(asdict(reports[0][1]))
        else:
            print_json([{"sender": sender, **asdict(report)} for sender, report in reports])


@inbox.command("explain")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@json_option
@now_option
@pass_context
def inbox_explain(
    ctx: Context, files: tuple[Path, ...], as_json: bool, now_text: str | None
) -> None:
    """How toma reads the given .eml files, changing nothing.

    \b
    Example:
        toma inbox explain ~/Downloads/bounce.eml --json
    """
    from toma.reports.explain import explain_files

    config = _optional_config(ctx)
    with _optional_store(ctx, config) as store:
        rows = explain_files(files, config=config, reader=store, now=resolve_now(now_text))
    if as_json:
        print_json(rows)
        return
    for row in rows:
        click.echo(f"{row['file']}: {row['class']} ({row['reason']})")
        if row.get("unread"):
            click.echo(f"  not read: {row['unread']}")
        if row.get("contact"):
            click.echo(f"  contact: {row['contact']} (matched by {row['matched_by']})")
        if row["class"] == "bounce":
            hard = "hard" if row.get("hard") else "soft"
            click.echo(f"  {hard} bounce for {', '.join(row.get('recipients') or []) or '?'}")
        if row.get("back_on"):
            click.echo(f"  back on {row['back_on']}")
        if row.get("text"):
            for line in str(row["text"]).splitlines():
                click.echo(f"  | {line}")
        for problem in row.get("problems") or []:
            click.echo(f"  problem: {problem}")


def _optional_config(ctx: Context) -> Config | None:
    """The config if there is one: explaining a file needs no project."""
    if not ctx.config_path.exists():
        return None
    return ctx.config


@contextmanager
def _optional_store(ctx: Context, config: Config | None) -> Iterator[Store | None]:
    if config is None or not config.paths.data.exists():
        yield None
        return
    with ctx.store() as store:
        yield store


@main.command("log")
@click.argument("email")
@json_option
@pass_context
def log_command(ctx: Context, email: str, as_json: bool) -> None:
    """The whole conversation with one contact, both directions, in time order.

    Every time is in your zone ([owner] timezone), marked with its name.
    """
    from toma.reports.log import conversation
    from toma.timeutil import zone

    owner_zone = zone(ctx.config.owner.timezone)
    with ctx.store() as store:
        contact = addressbook.find(store, email)
        entries = conversation(store, contact.email, owner_zone)
    if as_json:
        print_json([entry.to_json() for entry in entries])
        return
    click.echo(f"{contact.name or contact.email} <{contact.email}> — {contact.status.value}")
    click.echo(f"Times in {ctx.config.owner.timezone}.")
    if not entries:
        click.echo("Nothing yet.")
    for entry in entries:
        click.echo("")
        for line in entry.lines(owner_zone):
            click.echo(line)
