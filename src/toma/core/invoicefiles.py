"""Invoices from a CSV file, as an accounting program or a spreadsheet writes it (pure).

The rows are read by :mod:`toma.core.spreadsheet`; this module says what a row
means. Columns: number, contact (an email), amount, currency, issued, due or
terms, delivered ("|" or ";" between lines), attachment, and optionally note,
status, paid_on. Each bad row is an :class:`ImportProblem` naming its row and
line; the rest go on.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import date

from toma.core.invoices import Invoice, make_invoice
from toma.core.spreadsheet import read_table
from toma.errors import ImportProblem, TomaError
from toma.timeutil import Duration, parse_duration

_COLUMNS = (
    "number", "contact", "amount", "currency", "issued", "due", "terms",
    "delivered", "attachment", "note", "status", "paid_on",
)  # fmt: skip
_REQUIRED = ("number", "contact", "amount", "currency")
_COLUMN_ALIASES = {
    "invoice": "number",
    "invoice_number": "number",
    "no": "number",
    "email": "contact",
    "e_mail": "contact",
    "issue_date": "issued",
    "issued_on": "issued",
    "date": "issued",
    "due_date": "due",
    "due_on": "due",
    "payment_terms": "terms",
    "pdf": "attachment",
    "paid": "paid_on",
    "paid_date": "paid_on",
}


def column(header: str) -> str:
    """A header cell as a column name: "Invoice Number" -> number, "Due date" -> due."""
    key = re.sub(r"[\s-]+", "_", header.strip().lower())
    return _COLUMN_ALIASES.get(key, key)


def split_delivered(text: str) -> list[str]:
    """A delivered cell: lines separated by "|" or ";"."""
    return [part.strip() for part in re.split(r"[|;]", text) if part.strip()]


def parse_invoices_csv(
    text: str,
    *,
    file: str,
    default_terms: Duration,
    known_contacts: Collection[str],
    today: date | None = None,
) -> tuple[list[Invoice], list[ImportProblem]]:
    """Invoices from CSV text with a header row; bad rows are reported and skipped.

    A problem names its row (data rows count from 1, after the header) and the
    line in the file where the row starts. A file that cannot be read at all
    raises ImportProblem.
    """
    table = read_table(
        text, file=file, column=column, key="contact", example="number,contact,amount,currency"
    )
    for raw, name in zip(table.header, table.columns, strict=True):
        if name and name not in _COLUMNS:
            raise ImportProblem(
                f"unknown column {raw!r:.80} (the columns are {', '.join(_COLUMNS)})",
                file=file,
                line=table.first_line,
            )
    missing = [name for name in _REQUIRED if name not in table.columns]
    if missing:
        raise ImportProblem(f"no {', '.join(missing)} column", file=file, line=table.first_line)

    known = known_contacts if isinstance(known_contacts, (set, frozenset)) else set(known_contacts)
    invoices: list[Invoice] = []
    problems: list[ImportProblem] = list(table.problems)
    seen: dict[str, int] = {}
    for entry in table.rows:
        values, line, where, row = entry.values, entry.line, entry.where, entry.number
        email = values.get("contact", "")
        terms_text = values.get("terms", "")
        try:
            terms = (
                parse_duration(terms_text)
                if terms_text
                else (None if values.get("due") else default_terms)
            )
        except ValueError as exc:
            problems.append(ImportProblem(f"{where}: terms: {exc}", file=file, line=line))
            continue
        try:
            invoice = make_invoice(
                values.get("number", ""),
                email,
                values.get("amount", ""),
                values.get("currency", ""),
                issued=values.get("issued") or None,
                due=values.get("due") or None,
                terms=terms,
                delivered=split_delivered(values.get("delivered", "")),
                attachment=values.get("attachment") or None,
                note=values.get("note", ""),
                status=values.get("status", "") or "open",
                paid_on=values.get("paid_on") or None,
                today=today,
            )
        except TomaError as exc:
            problems.append(
                ImportProblem(
                    f"{where}: {exc.message}", file=file, line=line, contact=email or None
                )
            )
            continue
        if invoice.contact not in known:
            problems.append(
                ImportProblem(
                    f"{where}: {invoice.contact} is not a contact: add or import it first",
                    file=file,
                    line=line,
                    contact=invoice.contact,
                )
            )
            continue
        if invoice.number in seen:
            problems.append(
                ImportProblem(
                    f"{where}: invoice {invoice.number} is already on row {seen[invoice.number]}",
                    file=file,
                    line=line,
                    contact=invoice.contact,
                )
            )
            continue
        seen[invoice.number] = row
        invoices.append(invoice)
    problems.sort(key=lambda problem: problem.line or 0)
    return invoices, problems
