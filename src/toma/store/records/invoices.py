"""The invoices table: adding, importing, paying, voiding, and what is due.

Each operation is one store transaction. The rules — stages, pauses, bursts,
thank-yous, ageing — are pure and live in :mod:`toma.core.invoices` and
:mod:`toma.core.ageing`; this module applies them to what is stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from toma.config import Config
from toma.core.ageing import Ageing, ageing
from toma.core.contacts import Contact
from toma.core.invoicefiles import parse_invoices_csv
from toma.core.invoices import Invoice, InvoiceError, mark_paid, mark_void
from toma.core.outbox import MessageState, OutboxRecord, advance
from toma.core.reminders import PlannedReminder, plan_reminders, split_key
from toma.core.spreadsheet import decode
from toma.errors import ImportProblem, TomaError
from toma.store import CONTACTS, INVOICES, MESSAGES, Reader, Store
from toma.store.records import contacts as addressbook
from toma.store.records.query import matching


def all_invoices(reader: Reader) -> Iterator[Invoice]:
    for _key, doc in reader.all(INVOICES):
        yield Invoice.from_doc(doc)


def find(reader: Reader, number: str) -> Invoice:
    doc = reader.get(INVOICES, number.strip())
    if doc is None:
        raise InvoiceError(f"no invoice {number!r} (see `toma invoices list`)")
    return Invoice.from_doc(doc)


def add(store: Store, invoice: Invoice) -> Invoice:
    with store.transaction() as tx:
        if tx.get(CONTACTS, invoice.contact) is None:
            raise TomaError("no such contact: add the contact first", contact=invoice.contact)
        if tx.get(INVOICES, invoice.number) is not None:
            raise InvoiceError(f"invoice {invoice.number} exists already")
        tx.put(INVOICES, invoice.number, invoice.to_doc())
    return invoice


@dataclass(frozen=True)
class InvoiceImport:
    file: str
    added: int
    existing: int
    problems: tuple[ImportProblem, ...]


def import_file(store: Store, path: Path, config: Config, *, today: date) -> InvoiceImport:
    """Add every good row of a CSV file; an invoice number already stored is left as it is."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportProblem(f"cannot read: {exc.strerror}", file=str(path)) from None
    # As spreadsheets save it, like a contacts file: Excel's CSV UTF-8, Unicode Text or CSV.
    text, _encoding = decode(raw, file=str(path))
    added = existing = 0
    with store.transaction() as tx:
        known = addressbook.addresses(tx)
        invoices, problems = parse_invoices_csv(
            text,
            file=str(path),
            default_terms=config.invoices.terms,
            known_contacts=known,
            today=today,
        )
        for invoice in invoices:
            if tx.get(INVOICES, invoice.number) is not None:
                existing += 1
                continue
            tx.put(INVOICES, invoice.number, invoice.to_doc())
            added += 1
    return InvoiceImport(str(path), added, existing, tuple(problems))


def settle(store: Store, number: str, *, paid_on: date | None, now: datetime) -> Invoice:
    """Mark paid (``paid_on``) or void (``None``): reminders stop at once.

    A reminder waiting for a retry is given up, so nothing about this invoice
    but the thank-you goes out after this.
    """
    with store.transaction() as tx:
        invoice = find(tx, number)
        if invoice.status != "open":
            raise InvoiceError(f"invoice {invoice.number} is {invoice.status} already")
        invoice = mark_paid(invoice, paid_on) if paid_on else mark_void(invoice)
        tx.put(INVOICES, invoice.number, invoice.to_doc())
        for key, doc in list(matching(tx, MESSAGES, kind="invoice", state="planned")):
            found = split_key(key)
            if found and found[0] == invoice.number:
                record = advance(
                    OutboxRecord.from_doc(doc),
                    MessageState.SKIPPED,
                    at=now,
                    detail=f"invoice {invoice.status}",
                )
                tx.put(MESSAGES, key, record.to_doc())
    return invoice


def reminders(
    reader: Reader,
    config: Config,
    *,
    contacts: Mapping[str, Contact],
    history: Mapping[str, OutboxRecord],
    now: datetime,
    until: datetime | None = None,
    invoices: Iterable[Invoice] | None = None,
) -> list[PlannedReminder]:
    """The reminders and thank-yous due by ``until`` (or now), and the skips decided now;
    of ``invoices`` when the caller read them already, else of every invoice."""
    return plan_reminders(
        list(all_invoices(reader) if invoices is None else invoices),
        contacts,
        history,
        config.invoices.stages,
        now=now,
        until=until,
        thank_you=config.invoices.thank_you,
        window=config.windows["default"],
        default_tz=config.owner.timezone,
    )


def report(
    reader: Reader,
    config: Config,
    *,
    now: datetime,
    contacts: Mapping[str, Contact] | None = None,
) -> Ageing:
    """The ageing report on the owner's today, with the next reminder of each invoice.

    The next reminder comes from :func:`reminders`, the plan the daemon sends by
    and ``toma plan`` shows, so the three never disagree.
    """
    today = now.astimezone(ZoneInfo(config.owner.timezone)).date()
    if contacts is None:  # a caller that keeps them decoded passes them
        contacts = {contact.email: contact for contact in addressbook.all_contacts(reader)}
    history = {
        key: OutboxRecord.from_doc(doc) for key, doc in matching(reader, MESSAGES, kind="invoice")
    }
    coming = reminders(
        reader, config, contacts=contacts, history=history, now=now, until=now + timedelta(days=400)
    )
    return ageing(all_invoices(reader), today, plan=[r for r in coming if not r.skipped])


def of_contact(reader: Reader, contact: str) -> list[Invoice]:
    """``contact``'s invoices, in every state, newest first."""
    return sorted(
        (Invoice.from_doc(doc) for _key, doc in matching(reader, INVOICES, contact=contact)),
        key=lambda i: i.issued,
        reverse=True,
    )
