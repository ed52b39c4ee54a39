"""toma outbox list, toma outbox release"""

from __future__ import annotations

import getpass
import socket

import click

from toma.cli import Context, json_option, main, now_option, pass_context, print_json, resolve_now
from toma.core.outbox import MessageState


@main.group()
def outbox() -> None:
    """The messages toma means to send or has sent, each by its key.

    \b
    A crash while a message was being handed to the server leaves it
    unknown: it may or may not have gone, and it is never sent again on
    its own. Check with the person (or in your Sent folder), then:
        toma outbox list --state unknown
        toma outbox release sequence/keep/hello/mira@example.org
        toma outbox release --contact mira@example.org
    """


@outbox.command("list")
@click.option(
    "--state",
    type=click.Choice([state.value for state in MessageState]),
    help="Only messages in this state.",
)
@click.option("--contact", help="Only this contact's messages.")
@json_option
@pass_context
def outbox_list(ctx: Context, state: str | None, contact: str | None, as_json: bool) -> None:
    """The messages of the outbox, oldest change first, with their keys."""
    from toma.core.contacts import normalize_address
    from toma.store.records import outbox

    person = normalize_address(contact) if contact else None
    with ctx.store() as store:
        records = outbox.records(store, state=state, contact=person)
    records.sort(key=lambda r: (r.updated_at or r.due_at, r.key))
    if as_json:
        print_json(
            [
                {
                    "key": r.key,
                    "contact": r.contact,
                    "kind": r.kind,
                    "ref": r.ref,
                    "state": r.state.value,
                    "updated_at": r.to_doc()["updated_at"],
                    "detail": r.detail,
                    "released_at": r.to_doc()["released_at"],
                    "released_by": r.released_by or None,
                }
                for r in records
            ]
        )
        return
    if not records:
        click.echo("No messages.")
    for r in records:
        when = r.updated_at.isoformat() if r.updated_at else ""
        click.echo(f"{r.state.value:<8} {r.key}  {when}  {r.detail}".rstrip())


@outbox.command("release")
@click.argument("keys", nargs=-1)
@click.option(
    "--contact",
    "contacts",
    multiple=True,
    metavar="EMAIL",
    help="Release every unknown message of this contact (repeatable).",
)
@now_option
@pass_context
def outbox_release(
    ctx: Context, keys: tuple[str, ...], contacts: tuple[str, ...], now_text: str | None
) -> None:
    """Send unknown messages again, once you have checked they did not arrive.

    \b
    KEYS are the keys `toma outbox list --state unknown` shows. The next
    tick sends them; who released them and when stays in the record.
    Example:
        toma outbox release sequence/keep/hello/mira@example.org
    """
    from toma.store.records.outbox import release_unknown

    if not keys and not contacts:
        raise click.UsageError("name the messages: KEY… or --contact EMAIL")
    by = f"{getpass.getuser()}@{socket.gethostname()}"
    with ctx.store() as store:
        released = release_unknown(store, keys, contacts, now=resolve_now(now_text), by=by)
    if not released:
        click.echo("No unknown messages to release.")
    for record in released:
        click.echo(f"released {record.key}: the next tick sends it")
