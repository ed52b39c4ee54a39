"""Invoices: the model, its changes, what templates see, and CSV import (pure).

Theory of operation
-------------------

An :class:`Invoice` is a value: what was billed, to whom, by when, and for
what work. It changes only through the functions here (:func:`mark_paid`,
:func:`mark_void`, :func:`reopen`, :func:`pause_reminders`,
:func:`with_thread`), each returning a new value. Nothing in this module reads
a clock, a disk or a network: dates, ``now`` and CSV text are handed in.

Money is exact (:mod:`toma.core.money`): a :class:`~decimal.Decimal` with exactly
its currency's ISO 4217 decimals, stored as a string. The reminder plan
lives in :mod:`toma.core.reminders`, the ageing report in :mod:`toma.core.ageing`.

**Who is reminded.** Invoice mail follows the contact's status:

- *active*: reminders and the thank-you;
- *unsubscribed*: reminders and the thank-you all the same. Unsubscribing
  stops keep-in-touch mail and newsletters; an invoice is a transaction the
  person entered into, not a marketing message;
- *bounced*: nothing: the address does not work, and more mail into it only
  harms the sender's reputation. The invoice stays in the ageing report, and
  the owner has to reach the person another way;
- *paused*: nothing: the owner put all automation for this person on hold
  (a dispute, a delicate moment), and an automated reminder is exactly what
  they asked not to happen;
- an address that is no contact: nothing; an import refuses such a row.

**Reminders** (details in :mod:`toma.core.reminders`): each stage of the policy at
most once per invoice, at the window's opening on the stage's day in the
contact's zone; only the latest due stage when several are due at once (no
bursts after an outage or a pause); nothing once paid or void; one thank-you
after payment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from toma.core.contacts import normalize_address
from toma.core.money import check_amount, clean_currency, format_day, format_money, parse_amount
from toma.errors import ContactError, TomaError
from toma.timeutil import Duration, parse_date, parse_moment

__all__ = [
    "Invoice",
    "InvoiceError",
    "InvoiceStatus",
    "clean_delivered",
    "clean_number",
    "invoice_view",
    "make_invoice",
    "mark_paid",
    "mark_void",
    "pause_reminders",
    "reopen",
    "with_thread",
]

MAX_DELIVERED_LINE = 300
_NUMBER = re.compile(r"^[A-Za-z0-9._/-]{1,64}\Z")


class InvoiceError(TomaError):
    """An invoice cannot be accepted as written, or cannot change as asked."""


class InvoiceStatus(StrEnum):
    OPEN = "open"
    PAID = "paid"
    VOID = "void"


@dataclass(frozen=True, slots=True)
class Invoice:
    number: str
    contact: str
    amount: Decimal
    currency: str
    issued: date
    due: date
    delivered: tuple[str, ...] = ()
    attachment: str | None = None
    status: InvoiceStatus = InvoiceStatus.OPEN
    paid_on: date | None = None
    paused_until: datetime | None = None
    thread_id: str | None = None
    note: str = ""

    def days_overdue(self, today: date) -> int:
        """Days past the due date on ``today`` (0 while not yet overdue)."""
        return max(0, (today - self.due).days)

    def to_doc(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "contact": self.contact,
            "amount": str(self.amount),  # a string: JSON numbers are floats to most readers
            "currency": self.currency,
            "issued": self.issued.isoformat(),
            "due": self.due.isoformat(),
            "delivered": list(self.delivered),
            "attachment": self.attachment,
            "status": self.status.value,
            "paid_on": self.paid_on.isoformat() if self.paid_on else None,
            "paused_until": (
                self.paused_until.astimezone(UTC).isoformat() if self.paused_until else None
            ),
            "thread_id": self.thread_id,
            "note": self.note,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Invoice:
        number = str(doc.get("number", "?"))
        try:
            paused = doc.get("paused_until")
            paid_on = doc.get("paid_on")
            return cls(
                number=number,
                contact=doc["contact"],
                amount=Decimal(str(doc["amount"])),
                currency=doc["currency"],
                issued=date.fromisoformat(doc["issued"]),
                due=date.fromisoformat(doc["due"]),
                delivered=tuple(doc.get("delivered") or ()),
                attachment=doc.get("attachment"),
                status=InvoiceStatus(doc.get("status", "open")),
                paid_on=date.fromisoformat(paid_on) if paid_on else None,
                paused_until=parse_moment(paused).astimezone(UTC) if paused else None,
                thread_id=doc.get("thread_id"),
                note=doc.get("note", ""),
            )
        except (KeyError, ValueError, TypeError, InvalidOperation, TomaError) as exc:
            raise InvoiceError(
                f"invoice {number!r} in the data store is unreadable: {exc}"
            ) from None


# --------------------------------------------------------------------------- making one


def clean_number(text: str) -> str:
    number = str(text).strip()
    if not number:
        raise InvoiceError("an invoice number is required")
    if len(number) > 64:
        raise InvoiceError(f"invoice number {number[:20]!r}… is longer than 64 characters")
    if not _NUMBER.match(number):
        raise InvoiceError(f"invoice number {number!r} may use only letters, digits and . _ / -")
    return number


def _day(value: date | str | None, what: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    if not str(value).strip():
        return None
    try:
        return parse_date(str(value))
    except TomaError as exc:
        raise InvoiceError(f"{what}: {exc.message}") from None


def _whole_days(terms: Duration) -> None:
    if terms.negative:
        raise InvoiceError(f"terms {str(terms)!r} cannot be negative")
    if terms.seconds % 86400:
        raise InvoiceError(f"terms {str(terms)!r} must be whole days (such as 30d, 2w, 1mo)")


def _add_terms(issued: date, terms: Duration) -> date:
    return terms.after(datetime.combine(issued, time(), UTC)).date()


def clean_delivered(lines: Iterable[str]) -> tuple[str, ...]:
    """What was delivered, as short single lines (a line break starts a new line)."""
    cleaned: list[str] = []
    for item in lines:
        for line in str(item).splitlines():
            text = " ".join(line.split())
            if not text:
                continue
            if len(text) > MAX_DELIVERED_LINE:
                raise InvoiceError(
                    f"a delivered line is longer than {MAX_DELIVERED_LINE} characters: "
                    f"{text[:40]!r}… (keep each line short: what, not how)"
                )
            cleaned.append(text)
    return tuple(cleaned)


def make_invoice(
    number: str,
    contact: str,
    amount: str | Decimal,
    currency: str,
    issued: date | str | None = None,
    due: date | str | None = None,
    terms: Duration | None = None,
    delivered: Iterable[str] = (),
    *,
    attachment: str | None = None,
    note: str = "",
    status: str = "open",
    paid_on: date | str | None = None,
    today: date | None = None,
) -> Invoice:
    """A validated invoice; :class:`InvoiceError` (or ``ContactError``) says what is wrong.

    ``issued`` defaults to ``today`` (the caller's date: this module reads no
    clock); ``due`` to ``issued + terms``. Given both, due and terms must agree.
    """
    clean = clean_number(number)
    try:
        address = normalize_address(contact)
    except ContactError as exc:
        raise InvoiceError(f"contact: {exc.message}") from None
    try:
        code = clean_currency(currency)
        value = (
            check_amount(amount, code)
            if isinstance(amount, Decimal)
            else parse_amount(amount, code)
        )
    except ValueError as exc:
        raise InvoiceError(str(exc)) from None
    issued_on = _day(issued, "issued") or today
    if issued_on is None:
        raise InvoiceError("an issue date is needed (YYYY-MM-DD)")
    due_on = _day(due, "due")
    if terms is not None:
        _whole_days(terms)
        by_terms = _add_terms(issued_on, terms)
        if due_on is not None and due_on != by_terms:
            raise InvoiceError(
                f"due {due_on.isoformat()} and terms {str(terms)!r} disagree "
                f"(terms make it {by_terms.isoformat()}): give one of them"
            )
        due_on = by_terms
    if due_on is None:
        raise InvoiceError("a due date or payment terms are needed (such as --terms 30d)")
    if due_on < issued_on:
        raise InvoiceError(
            f"due {due_on.isoformat()} is before the issue date {issued_on.isoformat()}"
        )
    try:
        state = InvoiceStatus(str(status).strip().lower() or "open")
    except ValueError:
        raise InvoiceError(f"status {status!r} must be open, paid or void") from None
    paid = _day(paid_on, "paid_on")
    if state is InvoiceStatus.PAID and paid is None:
        raise InvoiceError("a paid invoice needs the date it was paid (paid_on)")
    if state is not InvoiceStatus.PAID and paid is not None:
        raise InvoiceError(f"paid_on is given but the status is {state.value}")
    pdf = (attachment or "").strip() or None
    if pdf is not None:
        if any(ch in pdf for ch in "\r\n\0"):
            raise InvoiceError("attachment must be a single line (the path of a PDF)")
        if not pdf.lower().endswith(".pdf"):
            raise InvoiceError(f"attachment {pdf!r} is not a PDF (the path must end in .pdf)")
    return Invoice(
        number=clean,
        contact=address,
        amount=value,
        currency=code,
        issued=issued_on,
        due=due_on,
        delivered=clean_delivered(delivered),
        attachment=pdf,
        status=state,
        paid_on=paid,
        note=note.strip(),
    )


# --------------------------------------------------------------------------- changes


def mark_paid(invoice: Invoice, on: date) -> Invoice:
    """``invoice`` paid on ``on``: every reminder stops, a thank-you becomes due."""
    if invoice.status == InvoiceStatus.VOID:
        raise InvoiceError(f"invoice {invoice.number} is void: it cannot be paid")
    if invoice.status == InvoiceStatus.PAID:
        if invoice.paid_on == on:
            return invoice
        raise InvoiceError(
            f"invoice {invoice.number} is already paid (on {invoice.paid_on}); "
            "reopen it first to change the date"
        )
    return replace(invoice, status=InvoiceStatus.PAID, paid_on=on)


def mark_void(invoice: Invoice) -> Invoice:
    """``invoice`` cancelled: nothing more is ever sent about it."""
    if invoice.status == InvoiceStatus.PAID:
        raise InvoiceError(
            f"invoice {invoice.number} was paid on {invoice.paid_on}: a paid invoice "
            "is not voided (reopen it first if it was marked paid by mistake)"
        )
    return replace(invoice, status=InvoiceStatus.VOID)


def reopen(invoice: Invoice) -> Invoice:
    """``invoice`` open again (marked paid or void by mistake); sent stages stay sent."""
    return replace(invoice, status=InvoiceStatus.OPEN, paid_on=None)


def pause_reminders(invoice: Invoice, until: datetime) -> Invoice:
    """No reminder before ``until`` (a reply on the thread); a longer pause is kept."""
    if until.tzinfo is None:
        raise ValueError("pause_reminders() needs an aware datetime")
    moment = until.astimezone(UTC)
    if invoice.paused_until is not None and invoice.paused_until >= moment:
        return invoice
    return replace(invoice, paused_until=moment)


def with_thread(invoice: Invoice, message_id: str) -> Invoice:
    """Remember the first message about ``invoice``: the others answer it (In-Reply-To)."""
    return invoice if invoice.thread_id else replace(invoice, thread_id=message_id)


# --------------------------------------------------------------------------- templates


def invoice_view(
    invoice: Invoice, *, locale: str = "en", today: date | None = None
) -> dict[str, Any]:
    """What templates see as ``invoice``, written for a reader of ``locale``.

    ``today`` is the day the message is actually sent (or previewed), in the
    client's zone — not the day its stage was planned for: a reminder for the
    due date that the client's working hours push from Sunday to Monday must
    read "was due yesterday", not "is due today". From it come
    ``days_overdue`` (negative before the due date), ``days_until_due`` (0 once
    due), ``due_is_today``, ``overdue`` and ``today``; they are there only when
    ``today`` is given (this module reads no clock); a template that uses
    them without it fails in ``toma check``, never with a wrong number.
    Fields that do not apply (``paid_on`` of an open invoice) are absent, so a
    template must give a default. The owner's ``note`` is not shown.
    """
    try:
        view: dict[str, Any] = {
            "number": invoice.number,
            "amount": format_money(invoice.amount, invoice.currency, locale),
            "amount_plain": str(invoice.amount),
            "currency": invoice.currency,
            "issued": format_day(invoice.issued, locale),
            "due": format_day(invoice.due, locale),
            "issued_iso": invoice.issued.isoformat(),
            "due_iso": invoice.due.isoformat(),
            "delivered": list(invoice.delivered),
            "status": invoice.status.value,
        }
        if invoice.paid_on is not None:
            view["paid_on"] = format_day(invoice.paid_on, locale)
    except ValueError as exc:
        raise InvoiceError(f"invoice {invoice.number}: {exc}") from None
    view["due_weekday"] = format_weekday(invoice.due, locale)
    if today is not None:
        view["days_overdue"] = (today - invoice.due).days
        view["days_until_due"] = max(0, (invoice.due - today).days)
        view["due_is_today"] = today == invoice.due
        view["overdue"] = today > invoice.due
        view["today"] = format_day(today, locale)
    return view


_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def format_weekday(day: date, locale: str = "en") -> str:
    """The day of the week as a reader of ``locale`` names it: "Sunday", "Sonntag"."""
    try:
        from babel.core import UnknownLocaleError
        from babel.dates import format_date
    except ImportError:  # pragma: no cover - babel is optional; English then
        return _WEEKDAYS[day.weekday()]
    try:
        return str(format_date(day, "EEEE", locale=locale.replace("-", "_")))
    except (UnknownLocaleError, ValueError, LookupError):
        return _WEEKDAYS[day.weekday()]
