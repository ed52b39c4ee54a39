"""The ``toma`` command line: parse, call the library, print.

Each command is a few lines over a library function. A :class:`TomaError`
becomes one or two lines on stderr and exit status 1 (2 for usage errors,
which click handles); lists and reports take ``--json``.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from toma import addressbook
from toma.config import Config, find_config, load_config
from toma.contacts import Contact, Status, make_contact
from toma.errors import TomaError
from toma.logs import configure as configure_logging
from toma.store import Store, open_store
from toma.timeutil import parse_moment

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    """What every command may need, loaded on first use."""

    def __init__(self, config_option: str | None) -> None:
        self.config_path = find_config(config_option)
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    @contextmanager
    def store(self) -> Iterator[Store]:
        store = open_store(self.config.paths.data)
        try:
            yield store
        finally:
            store.close()


pass_context = click.make_pass_decorator(Context)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(func)


def now_option(func: F) -> F:
    return click.option(
        "--now",
        "now_text",
        metavar="ISO",
        help="Act as if it were this moment (ISO 8601 with a UTC offset).",
    )(func)


def resolve_now(now_text: str | None) -> datetime:
    return parse_moment(now_text) if now_text else datetime.now(UTC)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def fail_on_toma_error(func: F) -> F:
    """Turn a TomaError into one or two lines and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except TomaError as exc:
            click.echo(f"toma: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


class TomaGroup(click.Group):
    """A group whose every command reports TomaError briefly."""

    def command(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> Callable[[Callable[..., Any]], click.Command]:
        decorator = super().command(*args, **kwargs)

        def wrap(func: Callable[..., Any]) -> click.Command:
            command: click.Command = decorator(fail_on_toma_error(func))
            return command

        return wrap

    def group(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> Callable[[Callable[..., Any]], click.Group]:
        kwargs.setdefault("cls", TomaGroup)
        decorator: Callable[[Callable[..., Any]], click.Group] = super().group(*args, **kwargs)
        return decorator


@click.group(cls=TomaGroup)
@click.option(
    "--config",
    "config_option",
    metavar="PATH",
    envvar="TOMA_CONFIG",
    help="The project's config.toml (else $TOMA_CONFIG, else ./config.toml).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debugging detail.")
@click.version_option(package_name="toma")
@click.pass_context
def main(ctx: click.Context, config_option: str | None, verbose: bool) -> None:
    """toma keeps you in touch with the people you already know.

    \b
    Start with:
        toma init my-project && cd my-project && toma check
    """
    configure_logging(verbose=verbose)
    ctx.obj = Context(config_option)


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
@pass_context
def contacts_import(ctx: Context, file: Path, now_text: str | None) -> None:
    """Import contacts from a .csv (with a header row) or a .vcf file.

    Bad rows are reported with their row number and skipped; the rest is
    imported. Unsubscribed and bounced contacts stay so.
    """
    with ctx.store() as store:
        report = addressbook.import_file(store, file, now=resolve_now(now_text))
    for problem in report.problems:
        click.echo(f"skipped: {problem}", err=True)
    click.echo(
        f"{file}: {report.added} added, {report.updated} updated, "
        f"{report.unchanged} unchanged, {len(report.problems)} problem(s)."
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
    from toma.tables import print_table

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
@pass_context
def contacts_forget(ctx: Context, email: str, yes: bool) -> None:
    """Erase a contact and everything stored about them (history included)."""
    if not yes and sys.stdin.isatty():
        click.confirm(f"Erase {email} and all their history?", abort=True)
    with ctx.store() as store:
        removed = addressbook.forget(store, email)
    click.echo(f"Forgot {email} ({removed} records removed).")


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


# --- sequences: enrolment, plan, run, status ---------------------------------


@main.command()
@click.argument("email")
@click.argument("sequence")
@now_option
@pass_context
def enroll(ctx: Context, email: str, sequence: str, now_text: str | None) -> None:
    """Enrol a contact in SEQUENCE (a sequence's name) by hand."""
    from toma.daemon import enrol
    from toma.planning import read_sequences

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
    click.echo(f"{enrolment.contact} is enrolled in {sequence} (since {enrolment.enrolled_at}).")


@main.command()
@click.argument("email")
@click.argument("sequence")
@pass_context
def unenroll(ctx: Context, email: str, sequence: str) -> None:
    """Stop a contact's enrolment in SEQUENCE; its tag will not enrol them again."""
    from toma.contacts import normalize_address
    from toma.daemon import unenrol

    with ctx.store() as store:
        unenrol(store, normalize_address(email), sequence)
    click.echo(f"{normalize_address(email)} no longer receives {sequence}.")


@main.command()
@click.option("--days", default=14, show_default=True, help="How far ahead to look.")
@now_option
@json_option
@pass_context
def plan(ctx: Context, days: int, now_text: str | None, as_json: bool) -> None:
    """What goes to whom, and when: a calendar of the coming days.

    Times are shown in the contact's zone and in yours. Tag-based enrolments
    that the next tick would make are included.
    """
    from datetime import timedelta

    from toma.calendar import upcoming

    now = resolve_now(now_text)
    with ctx.store() as store:
        rows = upcoming(store, ctx.config, now=now, until=now + timedelta(days=days))
    if as_json:
        print_json([row.to_json() for row in rows])
        return
    from toma.tables import print_table

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
    """
    from toma.daemon import Worker
    from toma.timeutil import SystemClock

    if as_json:
        configure_logging(json_lines=True)
    if now_text and not once:
        raise click.UsageError("--now goes with --once: the daemon itself follows the clock")
    config = ctx.config
    with ctx.store() as store, store.daemon_lock():
        worker = Worker(ctx.config_path, store)
        clock = SystemClock()
        worker.recover(resolve_now(now_text))
        if once:
            report = worker.run_once(resolve_now(now_text))
            for problem in report.problems:
                click.echo(f"problem: {problem}", err=True)
            click.echo(f"Tick at {report.now}: {report.summary()}.")
            return
        worker.run_forever(clock, config.daemon.tick_every.approx())


@main.command()
@json_option
@pass_context
def status(ctx: Context, as_json: bool) -> None:
    """What the daemon did last, what is queued, what failed, what is unknown."""
    from toma import billing, broadcast
    from toma.status import gather

    with ctx.store() as store:
        report = gather(store)
        ageing = billing.report(store, ctx.config, now=datetime.now(UTC))
        issues = [broadcast.figures(store, name) for name in report.newsletters]
    if as_json:
        print_json({**report.to_json(), "invoices": ageing.to_json(), "newsletters": issues})
        return
    for line in report.lines():
        click.echo(line)
    for issue in issues:
        click.echo(f"Newsletter {issue['newsletter']}: {issue['sent']} sent, "
                   f"{issue['failed']} failed, {issue['unknown']} unknown, "
                   f"{issue['in_progress']} in progress; {issue['bounced']} bounced, "
                   f"{issue['replies']} replies, {issue['unsubscribes']} unsubscribed since.")
    if ageing.rows:
        click.echo(f"Open invoices: {len(ageing.rows)} ({len(ageing.overdue)} overdue).")
        for line in _ageing_lines(ageing):
            click.echo(f"  {line}")


# --- inbox and conversations ---------------------------------------------------


@main.group()
def inbox() -> None:
    """Read the inbox: replies, auto-replies, bounces, unsubscribe requests."""


@inbox.command("sync")
@now_option
@pass_context
def inbox_sync(ctx: Context, now_text: str | None) -> None:
    """One pass over the inbox: log what came in and act on it."""
    from toma.inbox.sync import source_for, sync

    with ctx.store() as store:
        source = source_for(ctx.config)
        try:
            report = sync(store, ctx.config, source, now=resolve_now(now_text))
        finally:
            source.close()
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(report.by_kind.items())) or "nothing new"
    click.echo(f"{report.recorded} recorded ({kinds}); {report.aside} kept aside, "
               f"{report.duplicates} already known.")


@inbox.command("explain")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@now_option
@pass_context
def inbox_explain(ctx: Context, files: tuple[Path, ...], as_json: bool,
                  now_text: str | None) -> None:
    """How toma reads the given .eml files, changing nothing.

    \b
    Example:
        toma inbox explain ~/Downloads/bounce.eml --json
    """
    from toma.explain import explain_files

    config = _optional_config(ctx)
    with _optional_store(ctx, config) as store:
        rows = explain_files(files, config=config, reader=store, now=resolve_now(now_text))
    if as_json:
        print_json(rows)
        return
    for row in rows:
        click.echo(f"{row['file']}: {row['class']} ({row['reason']})")
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
    """The whole conversation with one contact, both directions, in time order."""
    from toma.conversation import conversation

    with ctx.store() as store:
        contact = addressbook.find(store, email)
        entries = conversation(store, contact.email)
    if as_json:
        print_json([entry.to_json() for entry in entries])
        return
    click.echo(f"{contact.name or contact.email} <{contact.email}> — {contact.status.value}")
    if not entries:
        click.echo("Nothing yet.")
    for entry in entries:
        click.echo("")
        for line in entry.lines():
            click.echo(line)


# --- invoices ------------------------------------------------------------------


@main.group()
def invoices() -> None:
    """Invoices: add, import, list; mark paid or void. Reminders go by themselves."""


@invoices.command("add")
@click.argument("number")
@click.option("--contact", "email", required=True)
@click.option("--amount", required=True, help="Such as 1234.50 (a dot for decimals).")
@click.option("--currency", required=True, help="ISO 4217, such as EUR.")
@click.option("--issued", help="YYYY-MM-DD (default: today).")
@click.option("--due", help="YYYY-MM-DD.")
@click.option("--terms", help="Payment terms such as 30d (default from the config).")
@click.option("--delivered", multiple=True, help="A line of what was delivered; repeatable.")
@click.option("--attachment", help="Path of the invoice PDF.")
@now_option
@pass_context
def invoices_add(ctx: Context, number: str, email: str, amount: str, currency: str,
                 issued: str | None, due: str | None, terms: str | None,
                 delivered: tuple[str, ...], attachment: str | None,
                 now_text: str | None) -> None:
    """Add an invoice; its reminders follow the config's stages.

    \b
    Example:
        toma invoices add 2026-031 --contact mira@example.org --amount 1234.50 \\
            --currency EUR --terms 30d --delivered "Pricing workshop, two days"
    """
    from toma import billing
    from toma.contacts import normalize_address
    from toma.invoices import make_invoice
    from toma.timeutil import parse_duration

    if due and terms:
        raise click.UsageError("give --due or --terms, not both")
    try:
        term = parse_duration(terms) if terms else (None if due else ctx.config.invoices.terms)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--terms") from None
    today = _owner_today(ctx.config, resolve_now(now_text))
    invoice = make_invoice(number, normalize_address(email), amount, currency,
                           issued=issued or today, due=due, terms=term, delivered=delivered,
                           attachment=attachment, today=today)
    with ctx.store() as store:
        billing.add(store, invoice)
    click.echo(f"Added invoice {invoice.number}: {invoice.amount} {invoice.currency} "
               f"for {invoice.contact}, due {invoice.due}.")


def _owner_today(config: Config, now: datetime) -> Any:
    from zoneinfo import ZoneInfo

    return now.astimezone(ZoneInfo(config.owner.timezone)).date()


@invoices.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@now_option
@pass_context
def invoices_import(ctx: Context, file: Path, now_text: str | None) -> None:
    """Import invoices from a CSV file; bad rows are reported by row and skipped."""
    from toma import billing

    with ctx.store() as store:
        report = billing.import_file(store, file, ctx.config,
                                     today=_owner_today(ctx.config, resolve_now(now_text)))
    for problem in report.problems:
        click.echo(f"skipped: {problem}", err=True)
    click.echo(f"{file}: {report.added} added, {report.existing} already known, "
               f"{len(report.problems)} problem(s).")
    if report.problems:
        sys.exit(1)


@invoices.command("list")
@json_option
@now_option
@pass_context
def invoices_list(ctx: Context, as_json: bool, now_text: str | None) -> None:
    """Open invoices by age, totals per currency, and the next reminder of each."""
    from toma import billing
    from toma.money import format_money

    with ctx.store() as store:
        report = billing.report(store, ctx.config, now=resolve_now(now_text))
        settled = [i for i in billing.all_invoices(store) if i.status != "open"]
    if as_json:
        data = report.to_json()
        data["settled"] = [i.to_doc() for i in settled]
        print_json(data)
        return
    from toma.tables import print_table

    print_table(
        ["number", "contact", "amount", "due", "overdue", "bucket", "next reminder"],
        [[r.number, r.contact, format_money(r.amount, r.currency), r.due.isoformat(),
          f"{r.days_overdue}d" if r.days_overdue > 0 else "",
          r.bucket, _next(r)] for r in report.rows],
        empty="No open invoices.",
    )
    for line in _ageing_lines(report):
        click.echo(line)
    if settled:
        click.echo(f"Settled: {', '.join(f'{i.number} ({i.status})' for i in settled)}")


def _next(row: Any) -> str:
    if row.paused_until:
        return f"paused until {row.paused_until.date().isoformat()}"
    upcoming = row.next_reminder
    if upcoming is None:
        return ""
    return f"{upcoming.stage} {upcoming.local_send_at().strftime('%Y-%m-%d %H:%M')}"


def _ageing_lines(report: Any) -> list[str]:
    from toma.ageing import BUCKETS
    from toma.money import format_money

    lines = []
    for currency in sorted(report.totals):
        parts = [f"{bucket}: {format_money(report.total(currency, bucket), currency)}"
                 for bucket in BUCKETS if report.total(currency, bucket)]
        lines.append(f"Open {currency} {format_money(report.total(currency), currency)} — "
                     + "; ".join(parts))
    return lines


@invoices.command("show")
@click.argument("number")
@json_option
@pass_context
def invoices_show(ctx: Context, number: str, as_json: bool) -> None:
    """One invoice and every message about it."""
    from toma import billing
    from toma.invoices import split_key
    from toma.money import format_money
    from toma.store import MESSAGES

    with ctx.store() as store:
        invoice = billing.find(store, number)
        messages = [doc for key, doc in store.all(MESSAGES)
                    if doc.get("kind") == "invoice" and (split_key(key) or ("",))[0]
                    == invoice.number]
    if as_json:
        print_json({**invoice.to_doc(), "messages": messages})
        return
    click.echo(f"Invoice {invoice.number} — {invoice.status.value}")
    click.echo(f"  {format_money(invoice.amount, invoice.currency)} for {invoice.contact}, "
               f"issued {invoice.issued}, due {invoice.due}"
               + (f", paid {invoice.paid_on}" if invoice.paid_on else ""))
    for line in invoice.delivered:
        click.echo(f"  · {line}")
    for doc in sorted(messages, key=lambda d: d.get("updated_at") or ""):
        when = (doc.get("sent_at") or doc.get("updated_at") or "")[:16].replace("T", " ")
        click.echo(f"  {when}  {doc.get('ref')}  {doc.get('state')}  {doc.get('detail') or ''}"
                   .rstrip())


@invoices.command("paid")
@click.argument("number")
@click.option("--on", "paid_on", help="YYYY-MM-DD (default: today).")
@now_option
@pass_context
def invoices_paid(ctx: Context, number: str, paid_on: str | None, now_text: str | None) -> None:
    """Mark an invoice paid: reminders stop at once and a thank-you goes."""
    from toma import billing
    from toma.timeutil import parse_date

    now = resolve_now(now_text)
    day = parse_date(paid_on) if paid_on else _owner_today(ctx.config, now)
    with ctx.store() as store:
        invoice = billing.settle(store, number, paid_on=day, now=now)
    thanks = " A thank-you will go out." if ctx.config.invoices.thank_you else ""
    click.echo(f"Invoice {invoice.number} is paid ({day}).{thanks}")


@invoices.command("void")
@click.argument("number")
@now_option
@pass_context
def invoices_void(ctx: Context, number: str, now_text: str | None) -> None:
    """Void an invoice: its reminders stop, silently."""
    from toma import billing

    with ctx.store() as store:
        invoice = billing.settle(store, number, paid_on=None, now=resolve_now(now_text))
    click.echo(f"Invoice {invoice.number} is void.")


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
    import asyncio

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
                             extra={"newsletter": issue.view()}, list_unsubscribe=True,
                             templates=composer.newsletters,
                             headers={"X-Toma-Proof": f"{issue.name}; audience: {issue.audience}"})

    async def send() -> Any:
        async with transport_for(config) as transport:
            return await transport.send(Envelope(key=f"proof:{issue.name}",
                                                 sender=built.envelope_sender,
                                                 recipients=(owner.email,), data=built.data))

    result = asyncio.run(send())
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
    import asyncio

    from toma.daemon import Worker
    from toma.progress import Progress

    worker = Worker(ctx.config_path, store, sync_inbox=False)
    worker.recover(now)
    with Progress(f"Sending {issue.name}") as progress, worker.signals():
        worker.progress = progress.advance

        async def run() -> Any:
            return await worker.send_newsletter(issue, now, on_start=progress.start)

        return asyncio.run(run())
