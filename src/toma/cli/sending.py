"""toma enroll, unenroll, plan, run, status"""

from __future__ import annotations

import sys
from dataclasses import asdict
from datetime import datetime

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
from toma.cli.invoices import ageing_lines
from toma.errors import TomaError
from toma.logs import configure as configure_logging
from toma.store.records import contacts as addressbook

# --- sequences: enrolment, plan, run, status ---------------------------------


@main.command()
@click.argument("email")
@click.argument("sequence")
@now_option
@json_option
@pass_context
def enroll(ctx: Context, email: str, sequence: str, now_text: str | None, as_json: bool) -> None:
    """Enrol a contact in SEQUENCE (a sequence's name) by hand."""
    from toma.project.sequences import read_sequences
    from toma.store.records.enrolments import enrol
    from toma.timeutil import iso

    files = read_sequences(ctx.config)
    if sequence not in files.sequences:
        for problem in files.problems:
            click.echo(f"problem: {problem}", err=True)
        known = ", ".join(sorted(files.sequences)) or "none"
        raise TomaError(
            f"no sequence named {sequence!r} (known: {known})", file=ctx.config.paths.sequences
        )
    with ctx.store() as store:
        contact = addressbook.find(store, email)
        enrolment = enrol(store, contact.email, sequence, now=resolve_now(now_text))
    if as_json:
        print_json(
            {
                "contact": enrolment.contact,
                "sequence": sequence,
                "enrolled_at": iso(enrolment.enrolled_at)
                if isinstance(enrolment.enrolled_at, datetime)
                else enrolment.enrolled_at,
            }
        )
        return
    click.echo(f"{enrolment.contact} is enrolled in {sequence} (since {enrolment.enrolled_at}).")


@main.command()
@click.argument("email")
@click.argument("sequence")
@pass_context
def unenroll(ctx: Context, email: str, sequence: str) -> None:
    """Stop a contact's enrolment in SEQUENCE; its tag will not enrol them again."""
    from toma.core.contacts import normalize_address
    from toma.store.records.enrolments import unenrol

    with ctx.store() as store:
        unenrol(store, normalize_address(email), sequence)
    click.echo(f"{normalize_address(email)} no longer receives {sequence}.")


@main.command()
@click.option("--days", default=14, show_default=True, help="How far ahead to look.")
@click.option("--ics", "as_ics", is_flag=True, help="Print iCalendar: one event per send.")
@now_option
@json_option
@pass_context
def plan(ctx: Context, days: int, as_ics: bool, now_text: str | None, as_json: bool) -> None:
    """What goes to whom, and when: a calendar of the coming days.

    Times are shown in the contact's zone and in yours. Tag-based enrolments
    that the next tick would make are included.
    """
    from datetime import timedelta

    from toma.reports.plan import upcoming

    now = resolve_now(now_text)
    with ctx.store() as store:
        rows = upcoming(store, ctx.config, now=now, until=now + timedelta(days=days))
    if as_json:
        print_json([row.to_json() for row in rows])
        return
    if as_ics:
        from toma.web.ics import plan_calendar

        sys.stdout.buffer.write(plan_calendar(rows, now=now))
        return
    from toma.cli.tables import print_table

    print_table(
        ["when (theirs)", "when (yours)", "contact", "kind", "ref", "note"],
        [[row.at_theirs, row.at_yours, row.contact, row.kind, row.ref, row.note] for row in rows],
        empty=f"Nothing planned in the next {days} days.",
    )


@main.command()
@click.option("--once", is_flag=True, help="One tick, then exit (for cron).")
@now_option
@json_option
@pass_context
def run(ctx: Context, once: bool, now_text: str | None, as_json: bool) -> None:
    """The daemon: tick on a schedule — plan, send, record.

    SIGTERM or Ctrl-C finishes the messages in flight, records them and exits.
    With --now (only with --once) the tick acts as if it were that moment.

    \b
    Exit status of --once (for cron):
      0   the tick did its work
      75  some of it waits for a server (unreachable, 4xx, timeout): retried next tick
      78  something needs you: a login refused, a certificate not trusted, a 5xx,
          a message in doubt, a broken config, sequence or template holding mail
      1   the tick could not start (an error it names)
    """
    from toma.daemon.worker import Worker
    from toma.ops.migrate import require_current
    from toma.sdnotify import Watchdog, notify
    from toma.timeutil import SystemClock

    if as_json:
        configure_logging(json_lines=True)
    if now_text and not once:
        raise click.UsageError("--now goes with --once: the daemon itself follows the clock")
    if once:
        _run_once(ctx, now_text, as_json=as_json)
        return
    config = ctx.config
    with ctx.store() as store, store.daemon_lock():
        require_current(store)
        worker = Worker(ctx.config_path, store)
        clock = SystemClock()
        worker.recover(resolve_now(now_text))
        # Open, locked, recovered and handling signals: what Type=notify waits for.
        every = config.daemon.tick_every.approx()
        status = f"READY=1\nSTATUS=ticking every {every.total_seconds():g} s"
        watchdog = Watchdog()
        if watchdog.enabled:
            worker.alive = watchdog.beat
        try:
            worker.run_forever(clock, every, started=lambda: notify(status))
        finally:
            notify("STOPPING=1")


def _run_once(ctx: Context, now_text: str | None, *, as_json: bool = False) -> None:
    """One tick; the exit status tells cron what became of it (see :mod:`toma.exits`)."""
    from toma.daemon.worker import Worker
    from toma.errors import ConfigError
    from toma.exits import Exit
    from toma.ops.migrate import require_current

    try:
        ctx.config  # noqa: B018 - a config that cannot be read is the owner's to fix
        with ctx.store() as store, store.daemon_lock():
            require_current(store)
            worker = Worker(ctx.config_path, store)
            worker.recover(resolve_now(now_text))
            report = worker.run_once(resolve_now(now_text))
            for problem in report.problems:
                click.echo(f"problem: {problem}", err=True)
            for reason in report.needs_you:
                click.echo(f"needs you: {reason}", err=True)
            for reason in report.temporary:
                if reason not in report.problems:
                    click.echo(f"will retry: {reason}", err=True)
            if as_json:
                print_json({**asdict(report), "exit_code": int(report.exit_code())})
            else:
                click.echo(f"Tick at {report.now}: {report.summary()}.")
    except ConfigError as exc:
        click.echo(f"toma: {exc}", err=True)
        sys.exit(Exit.NEEDS_YOU)
    sys.exit(report.exit_code())


@main.command()
@now_option
@json_option
@pass_context
def status(ctx: Context, now_text: str | None, as_json: bool) -> None:
    """What the daemon did last, what is queued, what failed, what is unknown.

    \b
    Exit status (for a monitor):
      0   nothing needs attention
      75  messages wait for a retry, or the last tick could not reach a server
      78  something needs you: messages in doubt; messages failed or inbox mail
          set aside in the last 7 days; a torn journal line cut in the last 7 days;
          a last tick that needed you (a held sequence, a refused login …)
    """
    from toma.reports.status import gather
    from toma.store.records import invoices as billing
    from toma.store.records import newsletters as broadcast

    now = resolve_now(now_text)
    with ctx.store() as store:
        report = gather(store)
        ageing = billing.report(store, ctx.config, now=now)
        issues = [broadcast.figures(store, name) for name in report.newsletters]
    code, reasons = report.attention(now)
    if as_json:
        print_json(
            {
                **report.to_json(),
                "invoices": ageing.to_json(),
                "newsletters": issues,
                "attention": {"exit": int(code), "reasons": reasons},
            }
        )
        sys.exit(code)
    for line in report.lines():
        click.echo(line)
    for issue in issues:
        click.echo(
            f"Newsletter {issue['newsletter']}: {issue['sent']} sent, "
            f"{issue['failed']} failed, {issue['unknown']} unknown, "
            f"{issue['in_progress']} in progress; {issue['bounced']} bounced, "
            f"{issue['replies']} replies, {issue['unsubscribes']} unsubscribed since."
        )
    if ageing.rows:
        click.echo(f"Open invoices: {len(ageing.rows)} ({len(ageing.overdue)} overdue).")
        for line in ageing_lines(ageing):
            click.echo(f"  {line}")
    if reasons:
        click.echo(
            f"Attention ({'needs you' if code == 78 else 'will be retried'}): {'; '.join(reasons)}."
        )
    sys.exit(code)


@main.command()
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Where to listen (default: [dashboard] listen, else [unsubscribe] listen, "
    "127.0.0.1:8025).",
)
@click.option(
    "--hash-password",
    is_flag=True,
    help="Read a password from the terminal (or stdin), print its hash for "
    "[dashboard] password_env or password_file, and exit.",
)
@pass_context
def serve(ctx: Context, listen: str | None, hash_password: bool) -> None:
    """Serve the dashboard and the one-click unsubscribe links, without ticking.

    `toma run` serves them itself; under cron (`toma run --once`) nothing does,
    so start this beside it. It takes no lock: it runs alongside cron's ticks.
    The dashboard answers this machine only unless [dashboard] has a password
    hash or behind_proxy = true (README: "The dashboard"). For unsubscribe
    links, put it behind an HTTPS reverse proxy and set [unsubscribe] base_url
    to the public address (README: "Unsubscribe links under cron"). SIGTERM or
    Ctrl-C stops it.

    \b
    Example:
        toma serve --listen 127.0.0.1:8025
    """
    if hash_password:
        from toma.web.auth import hash_password as make_hash

        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        click.echo(make_hash(password))
        return
    from toma.config import parse_listen
    from toma.daemon.serving import serve as serve_endpoint
    from toma.timeutil import SystemClock

    address = None
    if listen:
        try:
            address = parse_listen(listen)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--listen") from None

    def ready(where: tuple[str, int]) -> None:
        base = ctx.config.unsubscribe.base_url
        here = f"http://{where[0]}:{where[1]}"
        if base:
            click.echo(
                f"Serving unsubscribe links on {here} (public: {base}) and the dashboard "
                f"at {here}/; Ctrl-C stops."
            )
        else:
            click.echo(f"Serving the dashboard at {here}/; Ctrl-C stops.")

    serve_endpoint(ctx.config, SystemClock(), listen=address, on_ready=ready)
