"""toma newsletter …"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from datetime import datetime
from typing import Any

import click

from toma import eventloop
from toma.cli import (
    Context,
    json_option,
    main,
    now_option,
    pass_context,
    print_json,
    resolve_now,
)
from toma.core.contacts import Contact
from toma.errors import TomaError
from toma.store import Store

# --- newsletters ---------------------------------------------------------------


@main.group()
def newsletter() -> None:
    """Newsletter issues: a proof to yourself, then the send."""


@newsletter.command("proof")
@click.argument("file")
@now_option
@json_option
@pass_context
def newsletter_proof(ctx: Context, file: str, now_text: str | None, as_json: bool = False) -> None:
    """Send one copy of an issue to yourself (the owner), as a recipient would see it."""
    from toma.mail.compose import Composer
    from toma.mail.unsubscribe import unsubscriber
    from toma.store.records import newsletters as broadcast
    from toma.transports import Envelope, transport_for

    config = ctx.config
    issue = broadcast.load(config, file)
    owner = config.owner
    first, _, last = owner.name.partition(" ")
    me = Contact(
        email=owner.email, first_name=first, last_name=last, company="", timezone=owner.timezone
    )
    composer = Composer(config, unsubscribe=unsubscriber(config))
    built = composer.compose(
        issue.name,
        me,
        now=resolve_now(now_text),
        extra={"newsletter": issue.view()},
        unsubscribe="footer",
        templates=composer.newsletters,
        headers={"X-Toma-Proof": f"{issue.name}; audience: {issue.audience}"},
    )

    async def send() -> Any:
        async with transport_for(config) as transport:
            return await transport.send(
                Envelope(
                    key=f"proof:{issue.name}",
                    sender=built.envelope_sender,
                    recipients=(owner.email,),
                    data=built.data,
                )
            )

    result = eventloop.run(send())
    if result.outcome != "sent":
        raise TomaError(f"the proof did not go: {result.detail}", file=issue.file)
    if as_json:
        print_json({"issue": issue.name, "to": owner.email, "subject": built.subject, "sent": True})
        return
    click.echo(f"Proof of {issue.name} sent to {owner.email} ({built.subject!r}).")


@newsletter.command("send")
@click.argument("file")
@now_option
@click.option(
    "--dry-run", is_flag=True, help="List who would get it and when (in their zone); send nothing."
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@json_option
@pass_context
def newsletter_send(
    ctx: Context, file: str, now_text: str | None, dry_run: bool, yes: bool, as_json: bool = False
) -> None:
    """Send an issue to its audience: from now (or send_at), in each recipient's window.

    Those whose working hours are open now get it now; the others get it from
    the daemon (`toma run`, or cron's `toma run --once`) when their window
    opens. On a terminal it first says how many get it now and how many
    later, and asks; --yes skips the question (and is needed when not on a
    terminal). Each recipient gets it at most once: run the command again
    after an interruption and it goes on with those not reached yet.

    \b
    Example:
        toma newsletter send newsletters/2026-12-year-in-review.md --dry-run
    """
    from zoneinfo import ZoneInfo

    from toma.errors import StoreLocked
    from toma.store.records import newsletters as broadcast

    config = ctx.config
    issue = broadcast.load(config, file)
    now = resolve_now(now_text)
    start = issue.not_before(ZoneInfo(config.owner.timezone))
    with ctx.store() as store:
        timings = _timetable(store, config, issue, now)
        if dry_run and as_json:
            print_json({"issue": issue.name, "recipients": _timetable_json(timings, now)})
            return
        if dry_run:
            _print_timetable(timings, now, config.owner.timezone)
            return
        if not timings:
            if as_json:
                print_json({"issue": issue.name, "outcome": "nobody_left"})
                return
            click.echo(f"{issue.name}: nobody is left to send it to.")
            return
        _confirm(issue.name, timings, now, yes=yes)
        if start is not None and start > now:
            broadcast.schedule(store, issue, now=now)
            if as_json:
                print_json({"issue": issue.name, "outcome": "scheduled", "from": start})
                return
            click.echo(
                f"Scheduled {issue.name}: the daemon (`toma run`) sends it from "
                f"{start.isoformat()} on, in each recipient's working hours."
            )
            return
        later = sum(1 for t in timings if not t.now(now))
        with ExitStack() as held:
            try:
                held.enter_context(store.daemon_lock())
            except StoreLocked:
                broadcast.schedule(store, issue, now=now)
                if as_json:
                    print_json({"issue": issue.name, "outcome": "handed_to_daemon"})
                    return
                click.echo(
                    f"The daemon is running: it sends {issue.name} from its next tick, "
                    "in each recipient's working hours."
                )
                return
            if later:
                # The daemon's ticks take the rest, each as their window opens.
                broadcast.schedule(store, issue, now=now)
            report = _send_issue(ctx, store, issue, now)
    figures = broadcast_figures(ctx, issue.name)
    if as_json:
        print_json(
            {
                "issue": issue.name,
                "outcome": "sent",
                "sent": report.sent,
                "failed": report.failed,
                "retrying": report.retrying,
                "unknown": report.unknown,
                "later": later,
                "sent_in_all": figures["sent"],
                "exit_code": int(report.exit_code()),
            }
        )
        sys.exit(report.exit_code())
    queued = (
        f" {later} wait for their working hours: `toma run` (or cron's `toma run "
        "--once`) sends them as each window opens."
        if later
        else ""
    )
    click.echo(
        f"{issue.name}: {report.sent} sent now, {report.failed} failed, "
        f"{report.retrying} to retry, {report.unknown} unknown; "
        f"in all {figures['sent']} sent.{queued}"
    )
    sys.exit(report.exit_code())


def _timetable(store: Store, config: Any, issue: Any, now: datetime) -> list[Any]:
    from toma.store.records import contacts as addressbook
    from toma.store.records import newsletters as broadcast
    from toma.store.records import outbox

    contacts = list(addressbook.all_contacts(store))
    history = outbox.of_issue(store, issue.name)
    return broadcast.timetable(issue, config, contacts, history, now=now)


def _confirm(name: str, timings: list[Any], now: datetime, *, yes: bool) -> None:
    """Say how many get it, now and later, and ask; refuse off a terminal without --yes."""
    soon = sum(1 for t in timings if t.now(now))
    said = (
        f"{name} goes to {len(timings)} recipient(s): {soon} now, "
        f"{len(timings) - soon} later, in their working hours"
    )
    if yes:
        return
    if not sys.stdin.isatty():
        raise TomaError(
            f"{said}. Not on a terminal, so nobody can confirm: add --yes to send, "
            "or --dry-run to see who gets it when"
        )
    if not click.confirm(f"{said}. Send?", default=False):
        raise TomaError("nothing sent")


def _timetable_json(timings: list[Any], now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "contact": t.contact.email,
            "at": t.at.isoformat(),
            "zone": t.zone.key,
            "now": bool(t.now(now)),
        }
        for t in timings
    ]


def _print_timetable(timings: list[Any], now: datetime, owner_zone: str) -> None:
    from zoneinfo import ZoneInfo

    from toma.cli.tables import print_table

    mine = ZoneInfo(owner_zone)
    soon = sum(1 for t in timings if t.now(now))
    print_table(
        ["contact", "when (theirs)", "zone", "when (yours)", "goes"],
        [
            [
                t.contact.email,
                t.at.astimezone(t.zone).strftime("%a %Y-%m-%d %H:%M"),
                t.zone.key,
                t.at.astimezone(mine).strftime("%a %Y-%m-%d %H:%M"),
                "now" if t.now(now) else "later",
            ]
            for t in timings
        ],
        empty="Nobody is left to send it to.",
    )
    click.echo(
        f"Dry run: {len(timings)} recipient(s), {soon} now, {len(timings) - soon} "
        "later; nothing sent."
    )


def broadcast_figures(ctx: Context, name: str) -> dict[str, Any]:
    from toma.store.records import newsletters as broadcast

    with ctx.store() as store:
        return broadcast.figures(store, name)


def _send_issue(ctx: Context, store: Store, issue: Any, now: datetime) -> Any:
    from toma.cli.progress import Progress
    from toma.daemon.worker import Worker

    worker = Worker(ctx.config_path, store, sync_inbox=False)
    worker.recover(now)
    with Progress(f"Sending {issue.name}") as progress, worker.signals():
        worker.progress = progress.advance

        async def run() -> Any:
            return await worker.send_newsletter(issue, now, on_start=progress.start)

        return eventloop.run(run())
