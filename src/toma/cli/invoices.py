"""toma invoices …"""

from __future__ import annotations

import sys
from datetime import datetime
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
from toma.config import Config

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
def invoices_add(
    ctx: Context,
    number: str,
    email: str,
    amount: str,
    currency: str,
    issued: str | None,
    due: str | None,
    terms: str | None,
    delivered: tuple[str, ...],
    attachment: str | None,
    now_text: str | None,
) -> None:
    """Add an invoice; its reminders follow the config's stages.

    \b
    Example:
        toma invoices add 2026-031 --contact mira@example.org --amount 1234.50 \\
            --currency EUR --terms 30d --delivered "Pricing workshop, two days"
    """
    from toma.core.contacts import normalize_address
    from toma.core.invoices import make_invoice
    from toma.store.records import invoices as billing
    from toma.timeutil import parse_duration

    if due and terms:
        raise click.UsageError("give --due or --terms, not both")
    try:
        term = parse_duration(terms) if terms else (None if due else ctx.config.invoices.terms)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--terms") from None
    today = _owner_today(ctx.config, resolve_now(now_text))
    invoice = make_invoice(
        number,
        normalize_address(email),
        amount,
        currency,
        issued=issued or today,
        due=due,
        terms=term,
        delivered=delivered,
        attachment=attachment,
        today=today,
    )
    with ctx.store() as store:
        billing.add(store, invoice)
    click.echo(
        f"Added invoice {invoice.number}: {invoice.amount} {invoice.currency} "
        f"for {invoice.contact}, due {invoice.due}."
    )


def _owner_today(config: Config, now: datetime) -> Any:
    from zoneinfo import ZoneInfo

    return now.astimezone(ZoneInfo(config.owner.timezone)).date()


@invoices.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@now_option
@json_option
@pass_context
def invoices_import(ctx: Context, file: Path, now_text: str | None, as_json: bool = False) -> None:
    """Import invoices from a CSV file; bad rows are reported by row and skipped."""
    from toma.store.records import invoices as billing

    with ctx.store() as store:
        report = billing.import_file(
            store, file, ctx.config, today=_owner_today(ctx.config, resolve_now(now_text))
        )
    if as_json:
        print_json(
            {
                "file": report.file,
                "added": report.added,
                "existing": report.existing,
                "problems": [problem_json(p) for p in report.problems],
            }
        )
        sys.exit(1 if report.problems else 0)
    for problem in report.problems:
        click.echo(f"skipped: {problem}", err=True)
    click.echo(
        f"{file}: {report.added} added, {report.existing} already known, "
        f"{len(report.problems)} problem(s)."
    )
    if report.problems:
        sys.exit(1)


@invoices.command("list")
@json_option
@now_option
@pass_context
def invoices_list(ctx: Context, as_json: bool, now_text: str | None) -> None:
    """Open invoices by age, totals per currency, and the next reminder of each."""
    from toma.core.money import format_money
    from toma.store.records import invoices as billing

    now = resolve_now(now_text)
    with ctx.store() as store:
        report = billing.report(store, ctx.config, now=now)
        settled = [i for i in billing.all_invoices(store) if i.status != "open"]
    if as_json:
        data = report.to_json()
        data["settled"] = [i.to_doc() for i in settled]
        print_json(data)
        return
    from toma.cli.tables import print_table

    print_table(
        ["number", "contact", "amount", "due", "overdue", "bucket", "next reminder"],
        [
            [
                r.number,
                r.contact,
                format_money(r.amount, r.currency),
                r.due.isoformat(),
                f"{r.days_overdue}d" if r.days_overdue > 0 else "",
                r.bucket,
                _next(r, now),
            ]
            for r in report.rows
        ],
        empty="No open invoices.",
    )
    for line in ageing_lines(report):
        click.echo(line)
    if settled:
        click.echo(f"Settled: {', '.join(f'{i.number} ({i.status})' for i in settled)}")


def _next(row: Any, now: datetime) -> str:
    """The next reminder as ``toma plan`` has it (the same planner), and a pause still ahead."""
    upcoming = row.next_reminder
    if upcoming is None:
        return ""
    text = f"{upcoming.stage} {upcoming.local_send_at().strftime('%Y-%m-%d %H:%M')}"
    if row.paused_until is not None and row.paused_until > now:
        text += f" (paused until {row.paused_until.date().isoformat()})"
    return text


def ageing_lines(report: Any) -> list[str]:
    from toma.core.ageing import BUCKETS
    from toma.core.money import format_money

    lines = []
    for currency in sorted(report.totals):
        parts = [
            f"{bucket}: {format_money(report.total(currency, bucket), currency)}"
            for bucket in BUCKETS
            if report.total(currency, bucket)
        ]
        lines.append(
            f"Open {currency} {format_money(report.total(currency), currency)} — "
            + "; ".join(parts)
        )
    return lines


@invoices.command("show")
@click.argument("number")
@json_option
@now_option
@pass_context
def invoices_show(ctx: Context, number: str, as_json: bool, now_text: str | None) -> None:
    """One invoice and every message about it: what went out and what came back on its thread.

    Times are in your zone ([owner] timezone).
    """
    from toma.core.money import format_money
    from toma.reports.log import about_invoice
    from toma.store.records import invoices as billing
    from toma.store.records import outbox
    from toma.timeutil import zone

    owner_zone = zone(ctx.config.owner.timezone)
    with ctx.store() as store:
        invoice = billing.find(store, number)
        messages = [record.to_doc() for record in outbox.of_invoice(store, invoice.number)]
        thread = about_invoice(store, invoice.number, invoice.contact, owner_zone)
    if as_json:
        print_json(
            {
                **invoice.to_doc(),
                "messages": messages,
                "thread": [entry.to_json() for entry in thread],
            }
        )
        return
    click.echo(f"Invoice {invoice.number} — {invoice.status.value}")
    click.echo(
        f"  {format_money(invoice.amount, invoice.currency)} for {invoice.contact}, "
        f"issued {invoice.issued}, due {invoice.due}"
        + (f", paid {invoice.paid_on}" if invoice.paid_on else "")
    )
    for line in invoice.delivered:
        click.echo(f"  · {line}")
    if thread:
        click.echo(f"Every message about it (times in {ctx.config.owner.timezone}):")
    for entry in thread:
        for line in entry.lines(owner_zone):
            click.echo(f"  {line}")
    if invoice.paused_until is not None and invoice.paused_until > resolve_now(now_text):
        click.echo(
            f"Reminders paused until "
            f"{invoice.paused_until.astimezone(owner_zone).strftime('%Y-%m-%d %H:%M %Z')}"
            " (a reply on its thread)."
        )


@invoices.command("paid")
@click.argument("number")
@click.option("--on", "paid_on", help="YYYY-MM-DD (default: today).")
@now_option
@pass_context
def invoices_paid(ctx: Context, number: str, paid_on: str | None, now_text: str | None) -> None:
    """Mark an invoice paid: reminders stop at once and a thank-you goes."""
    from toma.store.records import invoices as billing
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
    from toma.store.records import invoices as billing

    with ctx.store() as store:
        invoice = billing.settle(store, number, paid_on=None, now=resolve_now(now_text))
    click.echo(f"Invoice {invoice.number} is void.")
