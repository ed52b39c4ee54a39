"""init, check and preview: making and checking a project"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from toma.cli import (
    Context,
    json_option,
    main,
    now_option,
    pass_context,
    print_json,
    problem_json,
    resolve_now,
)
from toma.store.records import contacts as addressbook

if TYPE_CHECKING:
    from toma.config import Config
    from toma.core.messages import WayOut
    from toma.core.newsletters import Newsletter
    from toma.project.checks import CheckReport

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
    from toma.project.init import init_project

    config = init_project(folder, now=resolve_now(now_text))
    click.echo(
        f"Created a project in {folder} ({config.name}, sequences/, templates/, sample contacts)."
    )
    click.echo(f"Next: toma --config {folder / 'config.toml'} check")


@main.command()
@click.option(
    "--connect",
    is_flag=True,
    help="Also sign in to the SMTP and IMAP servers and try the Maildirs (sends nothing).",
)
@json_option
@pass_context
def check(ctx: Context, connect: bool, as_json: bool = False) -> None:
    """Validate the config, sequences and templates, rendering each for every contact.

    Lists every problem with where it is; exits 0 only when all is well.

    \b
    With --connect it also signs in to the servers, sending nothing, and names
    the stage that failed: dns, tcp, tls, login, folder (or path, for a Maildir).
    Exit status: 0 all good; 1 problems in the files; 3 only warnings (a template
    reads like a pitch: it blocks nothing); 75 a server out of reach
    (may pass by itself); 78 a server refused us (name, certificate, login, folder).
    """
    from toma.project.checks import check_project

    report = check_project(ctx.config_path)
    if as_json:
        _check_json(ctx, report, connect=connect)
        return
    for problem in report.problems:
        click.echo(f"error: {problem}", err=True)
    for warning in report.warnings:
        click.echo(f"{'note' if warning.note else 'warning'}: {warning}", err=True)
    summary = (
        f"{report.sequences} sequences, {report.templates} templates, "
        f"{report.newsletters} newsletters, "
        f"{report.contacts} contacts, {report.renders} renders"
    )
    if connect:
        _check_connections(ctx, files_ok=report.ok)
    if report.ok and report.warned:
        from toma.exits import Exit

        warned = sum(1 for warning in report.warnings if not warning.note)
        click.echo(f"{warned} warning(s), nothing wrong ({summary}).", err=True)
        sys.exit(Exit.WARNINGS)
    if report.ok:
        click.echo(f"All good: {summary}.")
        return
    click.echo(f"{len(report.problems)} problem(s) found ({summary}).", err=True)
    sys.exit(1)


def _check_json(ctx: Context, report: CheckReport, *, connect: bool) -> None:
    """``check --json``: the figures, every problem, each connection; the same exit status."""
    from toma.exits import Exit, worst
    from toma.project.connect import check_connections

    probes = check_connections(ctx.config) if connect else []
    print_json(
        {
            "ok": report.ok and all(probe.ok for probe in probes),
            "sequences": report.sequences,
            "templates": report.templates,
            "newsletters": report.newsletters,
            "contacts": report.contacts,
            "renders": report.renders,
            "problems": [problem_json(problem) for problem in report.problems],
            "connections": [
                {
                    "what": probe.what,
                    "where": probe.where,
                    "stage": probe.stage,
                    "detail": probe.detail,
                    "ok": probe.ok,
                }
                for probe in probes
            ],
        }
    )
    failed = [probe.exit for probe in probes if not probe.ok]
    if failed:
        sys.exit(worst(failed))
    if not report.ok:
        sys.exit(Exit.ERROR)


def _check_connections(ctx: Context, *, files_ok: bool) -> None:
    """Print one line per server or Maildir; exit now when one failed (see toma.exits)."""
    from toma.exits import worst
    from toma.project.connect import check_connections

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
@click.option(
    "--sequence",
    "sequence_name",
    default=None,
    help="The sequence it is sent by, when several use the template.",
)
@now_option
@pass_context
def preview(
    ctx: Context, template: str, email: str, sequence_name: str | None, now_text: str | None
) -> None:
    """Print the exact message TEMPLATE would send to a contact (RFC 5322).

    TEMPLATE is a template (with the list headers and footer of the sequence that
    sends it, if it opts in) or a newsletter issue (always with them). Only the
    Message-ID and the Date differ from what is sent.

    \b
    Example:
        toma preview acquaintance/nice-to-meet.md --contact mira@example.org
        toma preview newsletters/2026-12-year-in-review.md --contact mira@example.org
    """
    from toma.config.senders import owner_key, sender_config
    from toma.daemon.builder import build_one
    from toma.mail.compose import Composer, Job
    from toma.mail.unsubscribe import unsubscriber

    with ctx.store() as store:
        contact = addressbook.find(store, email)
    # As the contact's own sender sends it (the default one when that sender is unknown).
    config = sender_config(ctx.config, owner_key(ctx.config, contact.owner) or "")
    now = resolve_now(now_text)
    issue = _newsletter(config, template)
    if issue is not None:
        job = Job(
            key="preview",
            template=issue.name,
            contact=contact.to_doc(),
            now=now,
            extra={"newsletter": issue.view()},
            newsletter=True,
        )
    else:
        job = Job(
            key="preview",
            template=template,
            contact=contact.to_doc(),
            now=now,
            unsubscribe=_way_out(config, template, sequence_name),
        )
    # Made as the send makes it: the same signer (read, or made as the first send
    # would make it, only when the message carries links), the same templates.
    needs_links = job.newsletter or job.unsubscribe != "none"
    composer = Composer(config, unsubscribe=unsubscriber(config) if needs_links else None)
    built = build_one(composer, job)
    sys.stdout.buffer.write(built.data.replace(b"\r\n", b"\n"))
    sys.stdout.flush()


def _newsletter(config: Config, name: str) -> Newsletter | None:
    """The issue ``name`` names (a path into the newsletters folder, or a name in it
    that is not a template), or None."""
    from toma.store.records import newsletters as broadcast

    folder = config.paths.newsletters.resolve()
    path = Path(name).expanduser()
    inside = path.exists() and path.resolve().is_relative_to(folder)
    if not inside and ((config.paths.templates / name).is_file() or not (folder / name).is_file()):
        return None
    return broadcast.load(config, str(path.resolve() if inside else folder / name))


def _way_out(config: Config, template: str, sequence_name: str | None) -> WayOut:
    """What the sequences that send ``template`` offer as a way out ("none" if none does)."""
    from toma.errors import TomaError
    from toma.project.sequences import load_sequences

    sequences, _problems = load_sequences(config.paths.sequences, windows=set(config.windows))
    if sequence_name is not None:
        sequence = sequences.get(sequence_name)
        if sequence is None:
            raise TomaError(f"no sequence {sequence_name!r} in {config.paths.sequences}")
        return sequence.unsubscribe
    using = {
        name: seq.unsubscribe
        for name, seq in sequences.items()
        if template in {step.template for step in seq.steps}
        or (seq.repeat is not None and seq.repeat.template == template)
    }
    ways = set(using.values())
    if len(ways) > 1:
        said = ", ".join(f"{name} (unsubscribe = {way!r})" for name, way in sorted(using.items()))
        raise TomaError(
            f"{template} is sent by sequences that differ in their way out: {said}; "
            "say which with --sequence"
        )
    return ways.pop() if ways else "none"
