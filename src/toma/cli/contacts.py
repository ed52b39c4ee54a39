"""toma contacts …"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

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
from toma.core.contacts import Contact, Status, make_contact
from toma.store.records import contacts as addressbook

# --- contacts ----------------------------------------------------------------


@main.group()
def contacts() -> None:
    """Add, import, list and look after contacts."""


def _parse_fields(pairs: tuple[str, ...]) -> dict[str, str]:
    fields = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r}: write KEY=VALUE", param_hint="--field")
        fields[key.strip()] = value
    return fields


@contacts.command("add")
@click.argument("email")
@click.option("--first-name", default="")
@click.option("--last-name", default="")
@click.option("--company", default="")
@click.option("--timezone", default="", help="IANA zone, such as Europe/Berlin.")
@click.option("--tag", "tags", multiple=True, help="A tag; repeat for more.")
@click.option(
    "--field",
    "fields",
    multiple=True,
    metavar="KEY=VALUE",
    help="A custom field, such as met_where=…; repeat for more.",
)
@now_option
@pass_context
def contacts_add(
    ctx: Context,
    email: str,
    first_name: str,
    last_name: str,
    company: str,
    timezone: str,
    tags: tuple[str, ...],
    fields: tuple[str, ...],
    now_text: str | None,
) -> None:
    """Add a contact, or update the one with this address.

    \b
    Example:
        toma contacts add mira@example.org --first-name Mira --tag met \\
            --field met_where="the Hamburg summit"
    """
    contact = make_contact(
        email,
        first_name=first_name,
        last_name=last_name,
        company=company,
        timezone=timezone,
        tags=tags,
        fields=_parse_fields(fields),
    )
    with ctx.store() as store:
        stored, created = addressbook.add(store, contact, now=resolve_now(now_text))
    click.echo(f"{'Added' if created else 'Updated'} {stored.email} ({stored.status.value}).")


@contacts.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@now_option
@json_option
@pass_context
def contacts_import(ctx: Context, file: Path, now_text: str | None, as_json: bool = False) -> None:
    """Import contacts from a .csv (with a header row) or a .vcf file.

    Bad rows are reported with their row number and skipped; the rest is
    imported. Unsubscribed and bounced contacts stay so; an address on the
    suppression list that is not stored (someone forgotten) is not imported.
    """
    with ctx.store() as store:
        report = addressbook.import_file(store, file, now=resolve_now(now_text))
    if as_json:
        print_json(
            {
                "file": report.file,
                "added": report.added,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "suppressed": [problem_json(p) for p in report.suppressed],
                "problems": [problem_json(p) for p in report.problems],
            }
        )
        sys.exit(1 if report.problems else 0)
    for problem in report.problems:
        click.echo(f"skipped: {problem}", err=True)
    for problem in report.suppressed:
        click.echo(f"suppressed: {problem}", err=True)
    suppressed = f", {len(report.suppressed)} suppressed" if report.suppressed else ""
    click.echo(
        f"{file}: {report.added} added, {report.updated} updated, "
        f"{report.unchanged} unchanged{suppressed}, {len(report.problems)} problem(s)."
    )
    if report.problems:
        sys.exit(1)


def contact_json(contact: Contact) -> dict[str, Any]:
    doc = contact.to_doc()
    return {"email": doc.pop("email"), "status": doc.pop("status"), "tags": doc.pop("tags"), **doc}


@contacts.command("list")
@click.option("--tag", "tags", multiple=True, help="Only contacts with this tag (repeatable).")
@click.option("--status", type=click.Choice([s.value for s in Status]), default=None)
@json_option
@pass_context
def contacts_list(ctx: Context, tags: tuple[str, ...], status: str | None, as_json: bool) -> None:
    """List contacts."""
    with ctx.store() as store:
        found = sorted(addressbook.all_contacts(store), key=lambda c: c.email)
    found = [
        c
        for c in found
        if all(c.has_tag(t.lower()) for t in tags) and (status is None or c.status.value == status)
    ]
    if as_json:
        print_json([contact_json(c) for c in found])
        return
    from toma.cli.tables import print_table

    print_table(
        ["email", "name", "company", "status", "tags"],
        [[c.email, c.name, c.company, c.status.value, " ".join(c.tags)] for c in found],
        empty="No contacts.",
    )


@contacts.command("show")
@click.argument("email")
@json_option
@pass_context
def contacts_show(ctx: Context, email: str, as_json: bool) -> None:
    """Show one contact with every field."""
    with ctx.store() as store:
        contact = addressbook.find(store, email)
    if as_json:
        print_json(contact_json(contact))
        return
    rows = [
        ("email", contact.email),
        ("name", contact.name),
        ("company", contact.company),
        ("timezone", contact.timezone or "(the owner's)"),
        ("owner", contact.owner or "(the default sender)"),
        ("status", contact.status.value),
        ("tags", " ".join(contact.tags)),
        ("added", contact.added_at),
    ]
    if contact.status_at:
        rows.append(("status since", f"{contact.status_at} {contact.status_reason}".strip()))
    rows.extend((key, value) for key, value in sorted(contact.fields.items()))
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")


@contacts.command("tag")
@click.argument("email")
@click.argument("tags", nargs=-1, required=True)
@pass_context
def contacts_tag(ctx: Context, email: str, tags: tuple[str, ...]) -> None:
    """Add tags to a contact."""
    with ctx.store() as store:
        contact = addressbook.retag(store, email, tags)
    click.echo(f"{contact.email}: {' '.join(contact.tags) or '(no tags)'}")


@contacts.command("untag")
@click.argument("email")
@click.argument("tags", nargs=-1, required=True)
@pass_context
def contacts_untag(ctx: Context, email: str, tags: tuple[str, ...]) -> None:
    """Remove tags from a contact."""
    with ctx.store() as store:
        contact = addressbook.retag(store, email, tags, remove=True)
    click.echo(f"{contact.email}: {' '.join(contact.tags) or '(no tags)'}")


@contacts.command("assign")
@click.argument("emails", nargs=-1, required=True)
@click.option("--to", "sender", required=True, help="The sender: its address or its name.")
@pass_context
def contacts_assign(ctx: Context, emails: tuple[str, ...], sender: str) -> None:
    """Give contacts to a sender: their mail goes out from it, their replies are read in
    its mailbox. The [owner]'s address gives them back to the default sender."""
    from toma.config.senders import resolve_sender

    owner = resolve_sender(ctx.config, sender)
    with ctx.store() as store:
        changed = addressbook.assign(store, emails, owner)
    for contact in changed:
        click.echo(f"{contact.email}: from {contact.owner or ctx.config.owner.email}")


def _status_command(name: str, status: Status, doc: str) -> None:
    @contacts.command(name, help=doc)
    @click.argument("email")
    @now_option
    @pass_context
    def command(ctx: Context, email: str, now_text: str | None) -> None:
        with ctx.store() as store:
            contact = addressbook.set_status(
                store, email, status, now=resolve_now(now_text), reason=f"toma contacts {name}"
            )
        click.echo(f"{contact.email} is {contact.status.value}.")


_status_command("pause", Status.PAUSED, "Send nothing to a contact until resumed.")
_status_command("resume", Status.ACTIVE, "Resume a paused (or fixed bounced) contact.")
_status_command(
    "unsubscribe",
    Status.UNSUBSCRIBED,
    "Unsubscribe a contact for good: nothing is sent to them again.",
)


@contacts.command("forget")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@now_option
@pass_context
def contacts_forget(ctx: Context, email: str, yes: bool, now_text: str | None) -> None:
    """Erase a contact and everything stored about them (history included).

    The address stays on the suppression list as a keyed hash, so that a later
    import or `contacts add` does not bring them back.
    """
    if not yes and sys.stdin.isatty():
        click.confirm(f"Erase {email} and all their history?", abort=True)
    with ctx.store() as store:
        removed = addressbook.forget(store, email, now=resolve_now(now_text))
        if hasattr(store, "compact"):
            # The journal still holds the erased records as they were written:
            # a new snapshot leaves them nowhere on disk (PostgreSQL: a VACUUM).
            store.compact()
    click.echo(
        f"Forgot {email} ({removed} records removed); the address stays on the suppression list."
    )
