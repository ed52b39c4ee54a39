"""toma newsletter …"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import datetime
from typing import Any

import click

from toma import eventloop
from toma.cli import (
    Context,
    main,
    now_option,
    pass_context,
    resolve_now,
)
from toma.contacts import Contact
from toma.errors import TomaError
from toma.store import Store

# --- newsletters ---------------------------------------------------------------


@main.group()
def newsletter() -> None:
    """Newsletter issues: a proof to yourself, then the send."""


@newsletter.command("proof")
@click.argument("file")
@now_option
@pass_context
def newsletter_proof(ctx: Context, file: str, now_text: str | None) -> None:
    """Send one copy of an issue to yourself (the owner), as a recipient would see it."""
    from toma import broadcast
    from toma.compose import Composer
    from toma.transports import Envelope, transport_for
    from toma.unsubscribing import unsubscriber

    config = ctx.config
    issue = broadcast.load(config, file)
    owner = config.owner
    first, _, last = owner.name.partition(" ")
    me = Contact(email=owner.email, first_name=first, last_name=last, company="",
                 timezone=owner.timezone)
    composer = Composer(config, unsubscribe=unsubscriber(config))
    built = composer.compose(issue.name, me, now=resolve_now(now_text),
                             extra={"newsletter": issue.view()}, unsubscribe="footer",
                             templates=composer.newsletters,
                             headers={"X-Toma-Proof": f"{issue.name}; audience: {issue.audience}"})

    async def send() -> Any:
        async with transport_for(config) as transport:
            return await transport.send(Envelope(key=f"proof:{issue.name}",
                                                 sender=built.envelope_sender,
                                                 recipients=(owner.email,), data=built.data))

    result = eventloop.run(send())
    if result.outcome != "sent":
        raise TomaError(f"the proof did not go: {result.detail}", file=issue.file)
    click.echo(f"Proof of {issue.name} sent to {owner.email} ({built.subject!r}).")


@newsletter.command("send")
@click.argument("file")
@now_option
@pass_context
def newsletter_send(ctx: Context, file: str, now_text: str | None) -> None:
    """Send an issue to its audience: now, or from its send_at on.

    Each recipient gets it at most once: run the command again after an
    interruption and it goes on with those not reached yet. When send_at is
    ahead (or the daemon is running), the daemon sends it, in each
    recipient's window.
    """
    from zoneinfo import ZoneInfo

    from toma import broadcast
    from toma.errors import StoreLocked

    config = ctx.config
    issue = broadcast.load(config, file)
    now = resolve_now(now_text)
    start = issue.not_before(ZoneInfo(config.owner.timezone))
    with ctx.store() as store:
        if start is not None and start > now:
            broadcast.schedule(store, issue, now=now)
            click.echo(f"Scheduled {issue.name}: the daemon (`toma run`) sends it from "
                       f"{start.isoformat()} on, in each recipient's working hours.")
            return
        with ExitStack() as held:
            try:
                held.enter_context(store.daemon_lock())
            except StoreLocked:
                broadcast.schedule(store, issue, now=now)
                click.echo(f"The daemon is running: it sends {issue.name} from its next tick, "
                           "in each recipient's working hours.")
                return
            report = _send_issue(ctx, store, issue, now)
    figures = broadcast_figures(ctx, issue.name)
    click.echo(f"{issue.name}: {report.sent} sent now, {report.failed} failed, "
               f"{report.retrying} to retry, {report.unknown} unknown; "
               f"in all {figures['sent']} sent.")


def broadcast_figures(ctx: Context, name: str) -> dict[str, Any]:
    from toma import broadcast

    with ctx.store() as store:
        return broadcast.figures(store, name)


def _send_issue(ctx: Context, store: Store, issue: Any, now: datetime) -> Any:
    from toma.daemon import Worker
    from toma.progress import Progress

    worker = Worker(ctx.config_path, store, sync_inbox=False)
    worker.recover(now)
    with Progress(f"Sending {issue.name}") as progress, worker.signals():
        worker.progress = progress.advance

        async def run() -> Any:
            return await worker.send_newsletter(issue, now, on_start=progress.start)

        return eventloop.run(run())
