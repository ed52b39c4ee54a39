"""init, check and preview: making and checking a project"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from toma import addressbook
from toma.cli import (
    Context,
    main,
    now_option,
    pass_context,
    resolve_now,
)

# --- init and check ----------------------------------------------------------


@main.command()
@click.argument("folder", default=".", type=click.Path(file_okay=False, path_type=Path))
@now_option
def init(folder: Path, now_text: str | None) -> None:
    """Create a working project in FOLDER: config, sequences, templates, sample contacts.

    \b
    Example:
        toma init my-project
    """
    from toma.scaffold import init_project

    config = init_project(folder, now=resolve_now(now_text))
    click.echo(
        f"Created a project in {folder} ({config.name}, sequences/, templates/, sample contacts)."
    )
    click.echo(f"Next: toma --config {folder / 'config.toml'} check")


@main.command()
@pass_context
def check(ctx: Context) -> None:
    """Validate the config, sequences and templates, rendering each for every contact.

    Lists every problem with where it is; exits 0 only when all is well.
    """
    from toma.checks import check_project

    report = check_project(ctx.config_path)
    for problem in report.problems:
        click.echo(f"error: {problem}", err=True)
    summary = (
        f"{report.sequences} sequences, {report.templates} templates, "
        f"{report.newsletters} newsletters, "
        f"{report.contacts} contacts, {report.renders} renders"
    )
    if report.ok:
        click.echo(f"All good: {summary}.")
        return
    click.echo(f"{len(report.problems)} problem(s) found ({summary}).", err=True)
    sys.exit(1)


# --- preview -----------------------------------------------------------------


@main.command()
@click.argument("template")
@click.option("--contact", "email", required=True, help="The contact to render it for.")
@now_option
@pass_context
def preview(ctx: Context, template: str, email: str, now_text: str | None) -> None:
    """Print the exact message TEMPLATE would send to a contact (RFC 5322).

    \b
    Example:
        toma preview acquaintance/nice-to-meet.md --contact mira@example.org
    """
    from toma.compose import Composer

    with ctx.store() as store:
        contact = addressbook.find(store, email)
    composer = Composer(ctx.config)
    built = composer.compose(template, contact, now=resolve_now(now_text))
    sys.stdout.buffer.write(built.data.replace(b"\r\n", b"\n"))
    sys.stdout.flush()
