"""The ageing report: open invoices by days past due, totals per currency.

**Ageing.** :func:`ageing` sorts the open invoices by days past due into the
buckets of :data:`BUCKETS`, totals each bucket per currency (amounts in
different currencies are never added together), and names each invoice's
next reminder from a plan the caller made.

The reminders themselves are planned by :mod:`toma.core.reminders`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from toma.core.invoices import Invoice, InvoiceStatus
from toma.core.reminders import PlannedReminder

NOT_YET_DUE = "not yet due"
BUCKETS: tuple[str, ...] = (NOT_YET_DUE, "1–30", "31–60", "61–90", "90+")


def bucket_of(days_overdue: int) -> str:
    """The ageing bucket of an invoice ``days_overdue`` days past its due date."""
    if days_overdue <= 0:
        return NOT_YET_DUE
    if days_overdue <= 30:
        return BUCKETS[1]
    if days_overdue <= 60:
        return BUCKETS[2]
    if days_overdue <= 90:
        return BUCKETS[3]
    return BUCKETS[4]


@dataclass(frozen=True, slots=True)
class AgeingRow:
    number: str
    contact: str
    amount: Decimal
    currency: str
    issued: date
    due: date
    days_overdue: int
    bucket: str
    next_reminder: PlannedReminder | None = None
    paused_until: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        upcoming = self.next_reminder
        return {
            "number": self.number,
            "contact": self.contact,
            "amount": str(self.amount),
            "currency": self.currency,
            "issued": self.issued.isoformat(),
            "due": self.due.isoformat(),
            "days_overdue": self.days_overdue,
            "bucket": self.bucket,
            "next_reminder": (
                {
                    "stage": upcoming.stage,
                    "at": upcoming.local_send_at().isoformat(timespec="seconds"),
                }
                if upcoming is not None
                else None
            ),
            "paused_until": self.paused_until.isoformat() if self.paused_until else None,
        }


@dataclass(frozen=True, slots=True)
class Ageing:
    """Open invoices by days past due: rows, and totals per currency per bucket."""

    today: date
    rows: tuple[AgeingRow, ...]
    # currency -> bucket -> total; every bucket is present for a currency that is.
    totals: Mapping[str, Mapping[str, Decimal]]

    def total(self, currency: str, bucket: str | None = None) -> Decimal:
        """All open ``currency`` (in ``bucket``, if named); zero if there is none."""
        by_bucket = self.totals.get(currency, {})
        if bucket is not None:
            return by_bucket.get(bucket, Decimal(0))
        return sum(by_bucket.values(), Decimal(0))

    @property
    def overdue(self) -> tuple[AgeingRow, ...]:
        return tuple(row for row in self.rows if row.days_overdue > 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "today": self.today.isoformat(),
            "buckets": list(BUCKETS),
            "totals": {
                currency: {bucket: str(total) for bucket, total in by_bucket.items()}
                for currency, by_bucket in self.totals.items()
            },
            "rows": [row.to_json() for row in self.rows],
        }


def ageing(
    invoices: Iterable[Invoice], today: date, *, plan: Iterable[PlannedReminder] = ()
) -> Ageing:
    """The ageing report of the open invoices on ``today`` (paid and void ones are settled).

    ``plan`` is what :func:`plan_reminders` planned (with an ``until``): each
    row names its invoice's next reminder from it. Rows are ordered most
    overdue first, then by number.
    """
    upcoming: dict[str, PlannedReminder] = {}
    for reminder in plan:
        if reminder.skipped or reminder.thank_you:
            continue
        found = upcoming.get(reminder.number)
        if found is None or reminder.send_at < found.send_at:
            upcoming[reminder.number] = reminder
    rows: list[AgeingRow] = []
    totals: dict[str, dict[str, Decimal]] = {}
    for invoice in invoices:
        if invoice.status != InvoiceStatus.OPEN:
            continue
        days = invoice.days_overdue(today)
        bucket = bucket_of(days)
        rows.append(
            AgeingRow(
                number=invoice.number,
                contact=invoice.contact,
                amount=invoice.amount,
                currency=invoice.currency,
                issued=invoice.issued,
                due=invoice.due,
                days_overdue=days,
                bucket=bucket,
                next_reminder=upcoming.get(invoice.number),
                paused_until=invoice.paused_until,
            )
        )
        by_bucket = totals.get(invoice.currency)
        if by_bucket is None:
            by_bucket = totals[invoice.currency] = dict.fromkeys(BUCKETS, Decimal(0))
        by_bucket[bucket] += invoice.amount
    rows.sort(key=lambda row: (-row.days_overdue, row.due, row.number))
    return Ageing(today=today, rows=tuple(rows), totals=dict(sorted(totals.items())))
