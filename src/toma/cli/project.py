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
@click.option("--connect", is_flag=True,
              help="Also sign in to the SMTP and IMAP servers and try the Maildirs (sends "
                   "nothing).")
@pass_context
def check(ctx: Context, connect: bool) -> None:
    """Validate the config, sequences and templates, rendering each for every contact.

    Lists every problem with where it is; exits 0 only when all is well.

    \b
    With --connect it also signs in to the servers, sending nothing, and names
    the stage that failed: dns, tcp, tls, login, folder (or path, for a Maildir).
    Exit status: 0 all good; 1 problems in the files; 75 a server out of reach
    (may pass by itself); 78 a server refused us (name, certificate, login, folder).
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
    if connect:
        _check_connections(ctx, files_ok=report.ok)
    if report.ok:
        click.echo(f"All good: {summary}.")
        return
    click.echo(f"{len(report.problems)} problem(s) found ({summary}).", err=True)
    sys.exit(1)


def _check_connections(ctx: Context, *, files_ok: bool) -> None:
    """Print one line per server or Maildir; exit now when one failed (see toma.exits)."""
    from toma.connect import check_connections
    from toma.exits import worst

    probes = check_connections(ctx.config)
    for probe in probes:
        click.echo(probe.line(), err=not probe.ok)
    failed = [probe for probe in probes if not probe.ok]
    if failed:
        click.echo(f"{len(failed)} connection problem(s) found.", err=True)
        sys.exit(worst(probe.exit for probe in failed))


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
