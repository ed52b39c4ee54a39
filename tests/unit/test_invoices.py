"""Invoices: the model, the reminder plan, ageing and CSV import — fixed moments, no clock."""

from __future__ import annotations

import csv
import io
import time as timer
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from toma.config import InvoiceStage, Owner, Window
from toma.core.ageing import BUCKETS, ageing
from toma.core.contactfiles import parse_csv
from toma.core.contacts import Contact, Status
from toma.core.invoicefiles import parse_invoices_csv
from toma.core.invoices import (
    Invoice,
    InvoiceError,
    InvoiceStatus,
    invoice_view,
    make_invoice,
    mark_paid,
    mark_void,
    pause_reminders,
    reopen,
    with_thread,
)
from toma.core.outbox import MessageState, OutboxRecord, advance
from toma.core.reminders import (
    PlannedReminder,
    number_of_ref,
    plan_reminders,
    reminder_key,
    split_key,
    stage_label,
    thank_you_key,
)
from toma.errors import ImportProblem, TomaError
from toma.mail.render import Templates, sender_view
from toma.timeutil import parse_duration

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
WEEKDAYS = Window("default", frozenset(range(5)), time(9, 1), time(16, 59))
SCAFFOLD = Path(__file__).resolve().parents[2] / "src" / "toma" / "project" / "starter"
ADA = "ada@example.com"
BOB = "bob@example.com"


def stages(*spec: str) -> tuple[InvoiceStage, ...]:
    return tuple(InvoiceStage(parse_duration(at, signed=True), f"invoices/{at}.md") for at in spec)


POLICY = stages("-3d", "0d", "+7d", "+14d", "+30d")
THANKS = "invoices/thank-you.md"


def at(tz: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=tz)  # type: ignore[misc]


def net30(contact: str = ADA, number: str = "INV-7", **changes: object) -> Invoice:
    """Issued Monday 2 March 2026, net 30: due Wednesday 1 April 2026."""
    invoice = make_invoice(
        number,
        contact,
        "1234.50",
        "EUR",
        issued=date(2026, 3, 2),
        terms=parse_duration("30d"),
        delivered=["Warehouse dashboard", "Two training sessions"],
    )
    return replace(invoice, **changes)  # type: ignore[arg-type]


def people(**zones: str) -> dict[str, Contact]:
    return {
        f"{name}@example.com": Contact(email=f"{name}@example.com", first_name=name.title(),
                                       timezone=tz)
        for name, tz in zones.items()
    }  # fmt: skip


# --------------------------------------------------------------------------- a daemon


@dataclass
class Run:
    """What a simulated daemon did: each send and skip with the tick it happened in."""

    sent: list[tuple[PlannedReminder, datetime]] = field(default_factory=list)
    skipped: list[tuple[PlannedReminder, datetime]] = field(default_factory=list)
    history: dict[str, OutboxRecord] = field(default_factory=dict)

    def stages(self) -> list[str]:
        return [reminder.stage for reminder, _ in self.sent]

    def local_times(self, tz: ZoneInfo) -> list[tuple[str, datetime]]:
        return [(r.stage, when.astimezone(tz).replace(tzinfo=None)) for r, when in self.sent]


def run_daemon(
    invoices: Callable[[datetime], list[Invoice]],
    contacts: dict[str, Contact],
    *,
    start: datetime,
    end: datetime,
    policy: tuple[InvoiceStage, ...] = POLICY,
    thank_you: str | None = THANKS,
    events: Iterable[datetime] = (),
    off: tuple[datetime, datetime] | None = None,
) -> Run:
    """Tick at every moment something is planned or happens, as the daemon would.

    ``invoices(now)`` is the invoice table at ``now``; ``off`` is an outage
    during which no tick runs.
    """
    run = Run()
    extra = sorted(e.astimezone(UTC) for e in events)
    now = start.astimezone(UTC)
    end = end.astimezone(UTC)
    for _ in range(1000):
        plan = plan_reminders(
            invoices(now), contacts, run.history, policy, now=now, until=end,
            thank_you=thank_you, window=WEEKDAYS, default_tz="Europe/Berlin",
        )  # fmt: skip
        for reminder in plan:
            if reminder.skipped:
                run.history[reminder.key] = reminder.to_record(at=now)
                run.skipped.append((reminder, now))
            elif reminder.send_at <= now:
                record = reminder.to_record(at=now, state=MessageState.SENDING)
                run.history[reminder.key] = advance(record, MessageState.SENT, at=now)
                run.sent.append((reminder, now))
        upcoming = [r.send_at for r in plan if not r.skipped and r.send_at > now]
        upcoming += [e for e in extra if e > now]
        if not upcoming:
            return run
        now = min(upcoming)
        if off is not None and off[0] <= now < off[1]:
            now = off[1].astimezone(UTC)
        if now > end:
            return run
    raise AssertionError("the daemon did not settle")


def fixed(*invoices: Invoice) -> Callable[[datetime], list[Invoice]]:
    return lambda _now: list(invoices)


def changing(invoice: Invoice, *changes: tuple[datetime, Callable[[Invoice], Invoice]]):
    def table(now: datetime) -> list[Invoice]:
        current = invoice
        for when, change in changes:
            if when <= now:
                current = change(current)
        return [current]

    return table


# --------------------------------------------------------------------------- the plan


class TestStagesAtLocalTimes:
    @pytest.mark.parametrize("tz", [BERLIN, NEW_YORK], ids=["Berlin", "New York"])
    def test_net30_gets_exactly_its_stages_in_the_contacts_morning(self, tz: ZoneInfo) -> None:
        """Each stage once, at the window's opening on its day in the contact's zone.

        The -3d stage falls on Sunday 29 March (Berlin's clocks change that night)
        and goes on Monday at 09:01 local time; New York changed three weeks earlier.
        """
        contacts = people(ada=tz.key)
        run = run_daemon(
            fixed(net30()), contacts, start=at(tz, 2026, 3, 2, 8), end=at(tz, 2026, 6, 30)
        )
        assert run.local_times(tz) == [
            ("-3d", datetime(2026, 3, 30, 9, 1)),
            ("0d", datetime(2026, 4, 1, 9, 1)),
            ("+7d", datetime(2026, 4, 8, 9, 1)),
            ("+14d", datetime(2026, 4, 15, 9, 1)),
            ("+30d", datetime(2026, 5, 1, 9, 1)),
        ]
        assert run.skipped == []
        assert all(r.late_by == timedelta(days=1) for r, _ in run.sent if r.stage == "-3d")

    def test_the_projection_shows_the_same_moments(self) -> None:
        """One plan at issue time, with a horizon, foresees what the ticks will do."""
        plan = plan_reminders(
            [net30()], people(ada="America/New_York"), {}, POLICY,
            now=at(NEW_YORK, 2026, 3, 2, 8), until=at(NEW_YORK, 2026, 6, 30),
        )  # fmt: skip
        assert [(r.ref, r.local_send_at().strftime("%a %d %b %H:%M %Z")) for r in plan] == [
            ("INV-7/-3d", "Mon 30 Mar 09:01 EDT"),
            ("INV-7/0d", "Wed 01 Apr 09:01 EDT"),
            ("INV-7/+7d", "Wed 08 Apr 09:01 EDT"),
            ("INV-7/+14d", "Wed 15 Apr 09:01 EDT"),
            ("INV-7/+30d", "Fri 01 May 09:01 EDT"),
        ]
        first = plan[0]
        assert first.key == "invoice:INV-7:-3d"
        assert first.kind == "invoice"
        assert first.template == "invoices/-3d.md"
        assert first.due_at == at(NEW_YORK, 2026, 3, 29, 9, 1)
        assert first.send_at == datetime(2026, 3, 30, 13, 1, tzinfo=UTC)
        assert first.timezone == "America/New_York"

    def test_a_contact_without_a_zone_is_read_in_the_owners(self) -> None:
        plan = plan_reminders(
            [net30()], {ADA: Contact(ADA)}, {}, stages("0d"),
            now=at(BERLIN, 2026, 4, 1, 8), until=at(BERLIN, 2026, 4, 2), default_tz="Europe/Berlin",
        )  # fmt: skip
        assert [r.local_send_at().replace(tzinfo=None) for r in plan] == [
            datetime(2026, 4, 1, 9, 1)
        ]
        assert plan[0].timezone == "Europe/Berlin"

    def test_the_due_list_does_not_depend_on_the_horizon(self) -> None:
        now = at(BERLIN, 2026, 4, 8, 10)
        short = plan_reminders([net30()], people(ada="Europe/Berlin"), {}, POLICY, now=now)
        long = plan_reminders(
            [net30()], people(ada="Europe/Berlin"), {}, POLICY, now=now, until=now + timedelta(90)
        )
        assert short == [r for r in long if r.send_at <= now or r.skipped]

    def test_aware_datetimes_are_required(self) -> None:
        with pytest.raises(ValueError, match="aware"):
            plan_reminders([], {}, {}, POLICY, now=datetime(2026, 4, 1))


class TestPaidAndVoid:
    def test_paid_between_two_stages_stops_reminders_and_thanks_once(self) -> None:
        """Paid on Friday 10 April: no +14d, no +30d, one thank-you that very hour."""
        paid = at(BERLIN, 2026, 4, 10, 12)
        run = run_daemon(
            changing(net30(), (paid, lambda i: mark_paid(i, date(2026, 4, 10)))),
            people(ada="Europe/Berlin"),
            start=at(BERLIN, 2026, 3, 2, 8),
            end=at(BERLIN, 2026, 7, 1),
            events=[paid],
        )
        assert run.local_times(BERLIN) == [
            ("-3d", datetime(2026, 3, 30, 9, 1)),
            ("0d", datetime(2026, 4, 1, 9, 1)),
            ("+7d", datetime(2026, 4, 8, 9, 1)),
            ("thank-you", datetime(2026, 4, 10, 12, 0)),
        ]
        thanks = run.sent[-1][0]
        assert thanks.key == thank_you_key("INV-7") == "invoice:INV-7:thank-you"
        assert thanks.template == THANKS
        assert thanks.thank_you

    def test_paid_before_the_window_opens_drops_that_days_reminder(self) -> None:
        """Marked paid at 08:00 on the day of +14d: the 09:01 reminder is simply gone."""
        paid = at(BERLIN, 2026, 4, 15, 8)
        run = run_daemon(
            changing(net30(), (paid, lambda i: mark_paid(i, date(2026, 4, 15)))),
            people(ada="Europe/Berlin"),
            start=at(BERLIN, 2026, 3, 2),
            end=at(BERLIN, 2026, 7, 1),
            events=[paid],
        )
        assert run.local_times(BERLIN)[2:] == [
            ("+7d", datetime(2026, 4, 8, 9, 1)),
            ("thank-you", datetime(2026, 4, 15, 9, 1)),
        ]

    def test_without_a_thank_you_template_payment_just_ends_it(self) -> None:
        paid = at(BERLIN, 2026, 4, 10, 12)
        run = run_daemon(
            changing(net30(), (paid, lambda i: mark_paid(i, date(2026, 4, 10)))),
            people(ada="Europe/Berlin"),
            start=at(BERLIN, 2026, 3, 2),
            end=at(BERLIN, 2026, 7, 1),
            events=[paid],
            thank_you=None,
        )
        assert run.stages() == ["-3d", "0d", "+7d"]

    def test_void_sends_nothing(self) -> None:
        run = run_daemon(
            fixed(mark_void(net30())),
            people(ada="Europe/Berlin"),
            start=at(BERLIN, 2026, 3, 2),
            end=at(BERLIN, 2026, 7, 1),
        )
        assert run.sent == []
        assert run.skipped == []

    def test_void_between_stages_stops_the_rest(self) -> None:
        voided = at(BERLIN, 2026, 4, 2, 12)
        run = run_daemon(
            changing(net30(), (voided, mark_void)),
            people(ada="Europe/Berlin"),
            start=at(BERLIN, 2026, 3, 2),
            end=at(BERLIN, 2026, 7, 1),
            events=[voided],
        )
        assert run.stages() == ["-3d", "0d"]

    def test_a_payment_long_ago_is_not_thanked(self) -> None:
        """Imported as paid 40 days ago: the thank-you is recorded as skipped, never sent."""
        invoice = mark_paid(net30(), date(2026, 4, 1))
        now = at(BERLIN, 2026, 5, 11, 10)
        plan = plan_reminders(
            [invoice], people(ada="Europe/Berlin"), {}, POLICY, now=now, thank_you=THANKS
        )
        assert [(r.stage, r.skipped) for r in plan] == [("thank-you", True)]
        assert "too long ago" in plan[0].detail
        assert plan[0].to_record(at=now).state is MessageState.SKIPPED

    def test_a_thank_you_is_sent_once(self) -> None:
        invoice = mark_paid(net30(), date(2026, 4, 10))
        now = at(BERLIN, 2026, 4, 10, 12)
        sent = _sent(thank_you_key("INV-7"), now)
        plan = plan_reminders(
            [invoice], people(ada="Europe/Berlin"), {sent.key: sent}, POLICY,
            now=now, until=now + timedelta(days=30), thank_you=THANKS,
        )  # fmt: skip
        assert plan == []


class TestNoBursts:
    def test_a_reply_pauses_reminders_and_they_resume_without_a_burst(self) -> None:
        """A reply on 3 April pauses for 14 days; +7d and +14d fall into the pause.

        When it ends only +14d goes (+7d is recorded as skipped), then +30d on its date.
        """
        replied = at(BERLIN, 2026, 4, 3, 11)
        ends = replied + timedelta(days=14)
        run = run_daemon(
            changing(net30(), (replied, lambda i: pause_reminders(i, ends))),
            people(ada="Europe/Berlin"),
            start=at(BERLIN, 2026, 3, 2),
            end=at(BERLIN, 2026, 7, 1),
            events=[replied],
        )
        assert run.local_times(BERLIN) == [
            ("-3d", datetime(2026, 3, 30, 9, 1)),
            ("0d", datetime(2026, 4, 1, 9, 1)),
            ("+14d", datetime(2026, 4, 17, 11, 0)),
            ("+30d", datetime(2026, 5, 1, 9, 1)),
        ]
        assert [(r.stage, when) for r, when in run.skipped] == [("+7d", ends.astimezone(UTC))]
        resumed = run.sent[2][0]
        assert resumed.late_by == timedelta(0)  # waiting that was asked for is not lateness
        assert run.history["invoice:INV-7:+7d"].state is MessageState.SKIPPED

    def test_during_a_pause_the_plan_shows_only_what_will_go(self) -> None:
        invoice = pause_reminders(net30(), at(BERLIN, 2026, 4, 17, 11))
        plan = plan_reminders(
            [invoice], people(ada="Europe/Berlin"), {}, POLICY,
            now=at(BERLIN, 2026, 4, 5, 10), until=at(BERLIN, 2026, 5, 31),
        )  # fmt: skip
        assert [(r.stage, r.skipped, r.local_send_at().replace(tzinfo=None)) for r in plan] == [
            ("+14d", False, datetime(2026, 4, 17, 11, 0)),
            ("+30d", False, datetime(2026, 5, 1, 9, 1)),
        ]

    def test_after_an_outage_only_the_latest_due_stage_goes(self) -> None:
        """Off from 1 to 20 April: +7d and +14d are both due; +14d goes, +7d is skipped."""
        run = run_daemon(
            fixed(net30()),
            people(ada="Europe/Berlin"),
            start=at(BERLIN, 2026, 3, 2),
            end=at(BERLIN, 2026, 7, 1),
            off=(at(BERLIN, 2026, 4, 1, 10), at(BERLIN, 2026, 4, 20, 10)),
        )
        assert run.local_times(BERLIN) == [
            ("-3d", datetime(2026, 3, 30, 9, 1)),
            ("0d", datetime(2026, 4, 1, 9, 1)),
            ("+14d", datetime(2026, 4, 20, 10, 0)),
            ("+30d", datetime(2026, 5, 1, 9, 1)),
        ]
        assert [r.stage for r, _ in run.skipped] == ["+7d"]
        assert "+14d" in run.skipped[0][0].detail

    def test_two_stages_never_share_an_opening(self) -> None:
        """-1d falls on Sunday and would wait for Monday 09:01, when 0d is due: only 0d goes."""
        monday_due = replace(net30(), due=date(2026, 4, 6))
        run = run_daemon(
            fixed(monday_due),
            people(ada="Europe/Berlin"),
            start=at(BERLIN, 2026, 4, 1),
            end=at(BERLIN, 2026, 4, 30),
            policy=stages("-1d", "0d"),
        )
        assert run.local_times(BERLIN) == [("0d", datetime(2026, 4, 6, 9, 1))]
        assert [r.stage for r, _ in run.skipped] == ["-1d"]

    def test_an_old_invoice_added_today_gets_one_reminder(self) -> None:
        """Entered 45 days past due: +30d goes now, the four before it are skipped."""
        now = at(BERLIN, 2026, 5, 16, 10)  # a Saturday
        plan = plan_reminders(
            [net30()], people(ada="Europe/Berlin"), {}, POLICY, now=now, until=now + timedelta(3)
        )
        assert [(r.stage, r.skipped) for r in plan] == [
            ("-3d", True),
            ("0d", True),
            ("+7d", True),
            ("+14d", True),
            ("+30d", False),
        ]
        last = plan[-1]
        assert last.local_send_at().replace(tzinfo=None) == datetime(2026, 5, 18, 9, 1)
        assert last.send_at > now  # the window opens on Monday; the skips are decided now

    def test_no_stage_on_or_before_the_issue_date(self) -> None:
        """Issued on 31 March, due 2 April: a -3d reminder would arrive with the invoice."""
        invoice = replace(net30(), issued=date(2026, 3, 31), due=date(2026, 4, 2))
        plan = plan_reminders(
            [invoice], people(ada="Europe/Berlin"), {}, POLICY,
            now=at(BERLIN, 2026, 3, 31, 10), until=at(BERLIN, 2026, 4, 3),
        )  # fmt: skip
        assert [(r.stage, r.skipped) for r in plan] == [("0d", False)]


def _record(key: str, moment: datetime, state: MessageState, **changes: object) -> OutboxRecord:
    number, stage = split_key(key) or ("", "")
    record = OutboxRecord(
        key=key, contact=ADA, kind="invoice", ref=f"{number}/{stage}", sequence=None,
        step=stage, template="t.md", state=state, due_at=moment.astimezone(UTC), attempts=1,
        updated_at=moment.astimezone(UTC),
    )  # fmt: skip
    return replace(record, **changes)  # type: ignore[arg-type]


def _sent(key: str, moment: datetime) -> OutboxRecord:
    return _record(key, moment, MessageState.SENT, sent_at=moment.astimezone(UTC))


class TestAtMostOnce:
    @pytest.mark.parametrize(
        "state",
        [
            MessageState.SENDING,
            MessageState.SENT,
            MessageState.UNKNOWN,
            MessageState.FAILED,
            MessageState.SKIPPED,
        ],
    )
    def test_an_attempted_stage_is_never_planned_again(self, state: MessageState) -> None:
        now = at(BERLIN, 2026, 4, 1, 10)
        record = _record(reminder_key("INV-7", parse_duration("0d")), now, state)
        plan = plan_reminders(
            [net30()], people(ada="Europe/Berlin"), {record.key: record}, stages("0d"),
            now=now, until=now + timedelta(days=60),
        )  # fmt: skip
        assert plan == []

    def test_a_planned_record_not_yet_tried_binds_nothing(self) -> None:
        now = at(BERLIN, 2026, 4, 1, 10)
        record = _record("invoice:INV-7:0d", now, MessageState.PLANNED, attempts=0)
        plan = plan_reminders(
            [net30()], people(ada="Europe/Berlin"), {record.key: record}, stages("0d"), now=now
        )
        assert [r.stage for r in plan] == ["0d"]

    def test_a_retry_waits_for_its_time(self) -> None:
        now = at(BERLIN, 2026, 4, 1, 10)
        retry_at = at(BERLIN, 2026, 4, 1, 10, 30)
        record = _record("invoice:INV-7:0d", now, MessageState.PLANNED, next_attempt_at=retry_at)
        plan = plan_reminders(
            [net30()], people(ada="Europe/Berlin"), {record.key: record}, stages("0d"),
            now=now, until=now + timedelta(hours=2),
        )  # fmt: skip
        assert [(r.stage, r.send_at) for r in plan] == [("0d", retry_at.astimezone(UTC))]

    def test_the_key_follows_the_meaning_not_the_spelling(self) -> None:
        """ "-72h" after "-3d" was sent is the same stage: not sent twice."""
        now = at(BERLIN, 2026, 3, 30, 10)
        sent = _sent(reminder_key("INV-7", parse_duration("-3d", signed=True)), now)
        plan = plan_reminders(
            [net30()], people(ada="Europe/Berlin"), {sent.key: sent}, stages("-72h"),
            now=now, until=now + timedelta(days=10),
        )  # fmt: skip
        assert plan == []

    def test_a_stage_added_later_never_goes_back_in_time(self) -> None:
        """+7d went; -3d and 0d, added to the policy since, are not sent after it."""
        now = at(BERLIN, 2026, 4, 9, 10)
        sent = _sent("invoice:INV-7:+7d", at(BERLIN, 2026, 4, 8, 9, 1))
        plan = plan_reminders(
            [net30()], people(ada="Europe/Berlin"), {sent.key: sent}, POLICY,
            now=now, until=at(BERLIN, 2026, 6, 1),
        )  # fmt: skip
        assert [(r.stage, r.skipped) for r in plan] == [("+14d", False), ("+30d", False)]

    def test_a_stage_removed_from_the_policy_still_counts(self) -> None:
        now = at(BERLIN, 2026, 4, 20, 10)
        sent = _sent("invoice:INV-7:+14d", at(BERLIN, 2026, 4, 15, 9, 1))
        plan = plan_reminders(
            [net30()], people(ada="Europe/Berlin"), {sent.key: sent}, stages("+7d", "+30d"),
            now=now, until=at(BERLIN, 2026, 6, 1),
        )  # fmt: skip
        assert [r.stage for r in plan] == ["+30d"]


class TestWhoIsReminded:
    @pytest.mark.parametrize(
        ("status", "reminded"),
        [
            (Status.ACTIVE, True),
            (Status.UNSUBSCRIBED, True),  # transactional: not a keep-in-touch message
            (Status.BOUNCED, False),  # the address does not work
            (Status.PAUSED, False),  # the owner put this person on hold
        ],
    )
    def test_by_contact_status(self, status: Status, reminded: bool) -> None:
        now = at(BERLIN, 2026, 4, 1, 10)
        contacts = {ADA: Contact(ADA, timezone="Europe/Berlin", status=status)}
        reminders = plan_reminders([net30()], contacts, {}, stages("0d"), now=now)
        thanks = plan_reminders(
            [mark_paid(net30(), date(2026, 4, 1))], contacts, {}, stages("0d"),
            now=now, thank_you=THANKS,
        )  # fmt: skip
        assert bool(reminders) is reminded
        assert bool(thanks) is reminded

    def test_an_invoice_for_no_contact_sends_nothing(self) -> None:
        now = at(BERLIN, 2026, 4, 1, 10)
        assert plan_reminders([net30(contact=BOB)], people(ada="UTC"), {}, POLICY, now=now) == []


# --------------------------------------------------------------------------- the model


class TestMakeInvoice:
    def test_due_defaults_to_issued_plus_terms(self) -> None:
        invoice = net30()
        assert invoice.due == date(2026, 4, 1)
        assert invoice.amount == Decimal("1234.50")
        assert invoice.status is InvoiceStatus.OPEN
        assert invoice.status == "open"

    def test_issued_defaults_to_the_callers_today(self) -> None:
        invoice = make_invoice(
            " INV-8 ", "Ada@Example.com", "1000", "jpy", terms=parse_duration("2w"),
            today=date(2026, 5, 4),
        )  # fmt: skip
        assert (invoice.number, invoice.contact, invoice.currency) == ("INV-8", ADA, "JPY")
        assert (invoice.issued, invoice.due) == (date(2026, 5, 4), date(2026, 5, 18))

    def test_a_month_of_terms_is_a_calendar_month(self) -> None:
        invoice = make_invoice("A", ADA, "1", "EUR", "2026-01-31", terms=parse_duration("1mo"))
        assert invoice.due == date(2026, 2, 28)

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"number": ""}, "an invoice number is required"),
            ({"number": "INV 7"}, "may use only letters, digits and . _ / -"),
            ({"number": "X" * 65}, "longer than 64 characters"),
            ({"contact": "not-an-address"}, "contact: 'not-an-address' is not an email address"),
            ({"amount": "12,50"}, "amount '12,50' is not a number: use a dot for decimals"),
            ({"amount": "-3"}, "must be more than zero"),
            ({"currency": "EURO"}, "not a currency code"),
            ({"amount": "10.5", "currency": "JPY"}, "JPY has no decimals"),
            ({"issued": None}, "an issue date is needed"),
            ({"issued": "02.03.2026"}, "issued: '02.03.2026' is not a date (use YYYY-MM-DD)"),
            ({"due": "2026-02-01", "terms": None}, "is before the issue date"),
            ({"due": "2026-04-05"}, "disagree (terms make it 2026-04-01)"),
            ({"terms": None}, "a due date or payment terms are needed"),
            ({"terms": parse_duration("36h")}, "must be whole days"),
            ({"attachment": "invoice.docx"}, "is not a PDF"),
            ({"status": "paid"}, "a paid invoice needs the date it was paid"),
            ({"status": "late"}, "must be open, paid or void"),
            ({"paid_on": "2026-04-01"}, "paid_on is given but the status is open"),
            ({"delivered": ["x" * 301]}, "longer than 300 characters"),
        ],
    )
    def test_what_is_wrong_is_said(self, changes: dict[str, object], message: str) -> None:
        args: dict[str, object] = {
            "number": "INV-7",
            "contact": ADA,
            "amount": "1234.50",
            "currency": "EUR",
            "issued": "2026-03-02",
            "terms": parse_duration("30d"),
        }
        args.update(changes)
        with pytest.raises(InvoiceError) as caught:
            make_invoice(**args)  # type: ignore[arg-type]
        assert message in str(caught.value)
        assert isinstance(caught.value, TomaError)

    def test_delivered_lines_are_short_single_lines(self) -> None:
        invoice = make_invoice(
            "A", ADA, "1", "EUR", "2026-03-02", terms=parse_duration("30d"),
            delivered=["  Dashboard  ", "", "Training\nHandover notes"],
            attachment=" pdfs/A.PDF ",
        )  # fmt: skip
        assert invoice.delivered == ("Dashboard", "Training", "Handover notes")
        assert invoice.attachment == "pdfs/A.PDF"

    def test_documents_round_trip_exactly(self) -> None:
        invoice = with_thread(
            pause_reminders(net30(note="PO 4711"), at(BERLIN, 2026, 4, 17, 11)), "<a@b>"
        )
        doc = invoice.to_doc()
        assert doc["amount"] == "1234.50"
        assert doc["paused_until"] == "2026-04-17T09:00:00+00:00"
        assert Invoice.from_doc(doc) == invoice
        paid = mark_paid(invoice, date(2026, 4, 10))
        assert Invoice.from_doc(paid.to_doc()) == paid

    def test_an_unreadable_document_is_an_invoice_error(self) -> None:
        with pytest.raises(InvoiceError, match="'INV-9' in the data store is unreadable"):
            Invoice.from_doc({"number": "INV-9", "amount": "x"})


class TestChanges:
    def test_paid_void_and_reopen(self) -> None:
        invoice = net30()
        paid = mark_paid(invoice, date(2026, 4, 10))
        assert (paid.status, paid.paid_on) == (InvoiceStatus.PAID, date(2026, 4, 10))
        assert mark_paid(paid, date(2026, 4, 10)) is paid
        with pytest.raises(InvoiceError, match="already paid"):
            mark_paid(paid, date(2026, 4, 11))
        with pytest.raises(InvoiceError, match="a paid invoice is not voided"):
            mark_void(paid)
        with pytest.raises(InvoiceError, match="void: it cannot be paid"):
            mark_paid(mark_void(invoice), date(2026, 4, 10))
        assert reopen(paid) == invoice

    def test_a_longer_pause_is_kept(self) -> None:
        long = pause_reminders(net30(), at(BERLIN, 2026, 4, 20))
        assert pause_reminders(long, at(BERLIN, 2026, 4, 10)) is long

    def test_the_first_message_is_the_thread(self) -> None:
        assert with_thread(with_thread(net30(), "<1@x>"), "<2@x>").thread_id == "<1@x>"


class TestKeys:
    @pytest.mark.parametrize(
        ("at_", "label"),
        [("-3d", "-3d"), ("-72h", "-3d"), ("0d", "0d"), ("7d", "+7d"), ("+2w", "+14d"),
         ("+1mo", "+1mo"), ("+1d12h", "+1d12h")],
    )  # fmt: skip
    def test_stage_labels_are_canonical(self, at_: str, label: str) -> None:
        assert stage_label(parse_duration(at_, signed=True)) == label

    def test_keys_and_refs_survive_slashes_in_numbers(self) -> None:
        key = reminder_key("2026/07", parse_duration("+7d", signed=True))
        assert key == "invoice:2026/07:+7d"
        assert split_key(key) == ("2026/07", "+7d")
        assert split_key("sequence/x/y/z") is None
        assert number_of_ref("2026/07/+7d") == "2026/07"


# --------------------------------------------------------------------------- templates


class TestInvoiceView:
    def test_what_templates_see_in_english_and_german(self) -> None:
        invoice = net30()
        english = invoice_view(invoice, locale="en", today=date(2026, 4, 11))
        assert english == {
            "number": "INV-7",
            "amount": "€1,234.50",
            "amount_plain": "1234.50",
            "currency": "EUR",
            "issued": "March 2, 2026",
            "due": "April 1, 2026",
            "issued_iso": "2026-03-02",
            "due_iso": "2026-04-01",
            "delivered": ["Warehouse dashboard", "Two training sessions"],
            "status": "open",
            "days_overdue": 10,
            "days_until_due": 0,
            "overdue": True,
            "due_is_today": False,
            "due_weekday": "Wednesday",
            "today": "April 11, 2026",
        }
        german = invoice_view(invoice, locale="de")
        assert (german["amount"], german["due"]) == ("1.234,50\u00a0€", "1. April 2026")
        assert "days_overdue" not in german  # no today given: a template using it fails loudly

    @pytest.mark.parametrize(
        ("today", "overdue", "until", "is_today"),
        [
            (date(2026, 3, 29), -3, 3, False),
            (date(2026, 4, 1), 0, 0, True),
            (date(2026, 4, 2), 1, 0, False),
        ],
    )
    def test_the_day_it_goes_tells_before_on_and_after(
        self, today: date, overdue: int, until: int, is_today: bool
    ) -> None:
        view = invoice_view(net30(), today=today)
        assert (
            view["days_overdue"],
            view["days_until_due"],
            view["due_is_today"],
            view["overdue"],
        ) == (overdue, until, is_today, overdue > 0)

    def test_a_paid_invoice_shows_when(self) -> None:
        view = invoice_view(mark_paid(net30(), date(2026, 4, 10)), locale="en")
        assert (view["status"], view["paid_on"]) == ("paid", "April 10, 2026")
        assert "paid_on" not in invoice_view(net30())

    def test_a_yen_invoice_has_no_decimals(self) -> None:
        invoice = make_invoice("J-1", ADA, "1000", "JPY", "2026-03-02", "2026-04-01")
        assert invoice_view(invoice)["amount"] == "¥1,000"


TEMPLATES = [
    "invoices/before-due.md",
    "invoices/on-the-day.md",
    "invoices/a-week-later.md",
    "invoices/two-weeks-later.md",
    "invoices/a-month-later.md",
    "invoices/thank-you.md",
]


class TestScaffoldTemplates:
    @pytest.mark.parametrize("name", TEMPLATES)
    def test_each_renders_recalling_what_was_delivered(self, name: str) -> None:
        templates = Templates(SCAFFOLD / "templates")
        context = {
            "contact": Contact(ADA, first_name="Ada", company="Lovelace Ltd").template_view(),
            "sender": sender_view(Owner(name="Alex Example", email="alex@example.com")),
            "invoice": invoice_view(net30(), locale="en", today=date(2026, 4, 11)),
        }
        rendered = templates.render(name, context)
        assert "INV-7" in rendered.subject
        assert "Hi Ada," in rendered.text
        assert "- Warehouse dashboard\n- Two training sessions" in rendered.text
        assert "<li>Two training sessions</li>" in rendered.html
        assert "Alex" in rendered.text
        if name != "invoices/thank-you.md":
            assert "€1,234.50" in rendered.text
        lowered = rendered.text.lower()
        for threat in ("legal", "lawyer", "collection", "final notice", "fee", "interest"):
            assert threat not in lowered

    @pytest.mark.parametrize("name", TEMPLATES)
    def test_each_renders_without_delivered_lines_or_a_first_name(self, name: str) -> None:
        templates = Templates(SCAFFOLD / "templates")
        context = {
            "contact": Contact("accounts@example.com").template_view(),
            "sender": sender_view(Owner(name="Alex Example", email="alex@example.com")),
            "invoice": invoice_view(replace(net30(), delivered=()), locale="de"),
        }
        rendered = templates.render(name, context)
        assert "Hi there," in rendered.text
        assert "\n\n\n" not in rendered.text

    def test_the_before_due_subject(self) -> None:
        templates = Templates(SCAFFOLD / "templates")
        context = {
            "contact": Contact(ADA, first_name="Ada").template_view(),
            "sender": sender_view(Owner(name="Alex Example", email="alex@example.com")),
            "invoice": invoice_view(net30()),
        }
        subject = templates.render("invoices/before-due.md", context).subject
        assert subject == "Invoice INV-7 — due on April 1, 2026"


# --------------------------------------------------------------------------- ageing


class TestAgeing:
    def test_buckets_and_totals_per_currency(self) -> None:
        today = date(2026, 6, 1)

        def due_ago(number: str, days: int, amount: str, currency: str = "EUR") -> Invoice:
            due = today - timedelta(days=days)
            return make_invoice(number, ADA, amount, currency, due - timedelta(days=30), due)

        invoices = [
            due_ago("A", -5, "100.00"),  # not yet due
            due_ago("B", 0, "50.00"),  # due today: not overdue
            due_ago("C", 1, "10.00"),
            due_ago("D", 30, "20.00"),
            due_ago("E", 31, "30.00"),
            due_ago("F", 60, "40.00"),
            due_ago("G", 61, "5.50"),
            due_ago("H", 90, "4.50"),
            due_ago("I", 91, "1000.00"),
            due_ago("J", 400, "1.00"),
            due_ago("K", 10, "5000", "JPY"),
            due_ago("L", 45, "99.99", "USD"),
            mark_paid(due_ago("M", 45, "777.00"), today),
            mark_void(due_ago("N", 45, "888.00")),
        ]
        report = ageing(invoices, today)
        assert BUCKETS == ("not yet due", "1–30", "31–60", "61–90", "90+")
        assert {row.number: row.bucket for row in report.rows} == {
            "A": "not yet due", "B": "not yet due", "C": "1–30", "D": "1–30", "E": "31–60",
            "F": "31–60", "G": "61–90", "H": "61–90", "I": "90+", "J": "90+", "K": "1–30",
            "L": "31–60",
        }  # fmt: skip
        assert report.totals == {
            "EUR": {
                "not yet due": Decimal("150.00"),
                "1–30": Decimal("30.00"),
                "31–60": Decimal("70.00"),
                "61–90": Decimal("10.00"),
                "90+": Decimal("1001.00"),
            },
            "JPY": dict.fromkeys(BUCKETS, Decimal(0)) | {"1–30": Decimal(5000)},
            "USD": dict.fromkeys(BUCKETS, Decimal(0)) | {"31–60": Decimal("99.99")},
        }
        assert report.total("EUR") == Decimal("1261.00")
        assert report.total("GBP") == Decimal(0)
        assert [row.number for row in report.rows][:2] == ["J", "I"]  # most overdue first
        assert len(report.overdue) == 10
        assert report.to_json()["totals"]["EUR"]["90+"] == "1001.00"

    def test_each_row_names_its_next_reminder(self) -> None:
        now = at(BERLIN, 2026, 4, 2, 10)
        invoices = [net30(), net30(number="INV-8", due=date(2026, 5, 1))]
        history = {
            key: _sent(key, at(BERLIN, *day, 9, 1))
            for key, day in (
                ("invoice:INV-7:-3d", (2026, 3, 30)),
                ("invoice:INV-7:0d", (2026, 4, 1)),
            )
        }
        plan = plan_reminders(
            invoices, people(ada="Europe/Berlin"), history, POLICY,
            now=now, until=now + timedelta(60),
        )  # fmt: skip
        rows = {row.number: row for row in ageing(invoices, now.date(), plan=plan).rows}
        assert rows["INV-7"].next_reminder is not None
        assert rows["INV-7"].next_reminder.stage == "+7d"
        assert rows["INV-8"].next_reminder is not None
        assert rows["INV-8"].next_reminder.stage == "-3d"
        assert rows["INV-7"].to_json()["next_reminder"] == {
            "stage": "+7d",
            "at": "2026-04-08T09:01:00+02:00",
        }


# --------------------------------------------------------------------------- CSV


HEADER = "number,contact,amount,currency,issued,due,terms,delivered,attachment\n"


class TestCsvImport:
    def test_good_rows_are_imported(self) -> None:
        text = (
            HEADER
            + "INV-1,Ada@Example.com,1234.50,eur,2026-03-02,,30d,Dashboard|Training,pdf/1.pdf\n"
            + "INV-2,ada@example.com,1000,JPY,2026-03-02,2026-03-16,,,\n"
            + "INV-3,ada@example.com,5,EUR,2026-03-02,,,,\n"
        )
        invoices, problems = parse_invoices_csv(
            text, file="in.csv", default_terms=parse_duration("14d"), known_contacts={ADA}
        )
        assert problems == []
        assert [(i.number, i.amount, i.currency, i.due) for i in invoices] == [
            ("INV-1", Decimal("1234.50"), "EUR", date(2026, 4, 1)),
            ("INV-2", Decimal(1000), "JPY", date(2026, 3, 16)),
            ("INV-3", Decimal("5.00"), "EUR", date(2026, 3, 16)),  # the default terms
        ]
        assert invoices[0].delivered == ("Dashboard", "Training")
        assert invoices[0].attachment == "pdf/1.pdf"

    def test_semicolons_and_header_aliases(self) -> None:
        """A spreadsheet's semicolon CSV; delivered lines then use "|"."""
        text = (
            "Invoice Number;E-mail;Amount;Currency;Issue Date;Due Date;Delivered\n"
            "INV-1;ada@example.com;12,50;EUR;2026-03-02;2026-04-01;A|B\n"
            "INV-2;ada@example.com;12.50;EUR;2026-03-02;2026-04-01;A|B\n"
        )
        invoices, problems = parse_invoices_csv(
            text, file="in.csv", default_terms=parse_duration("30d"), known_contacts={ADA}
        )
        assert [i.number for i in invoices] == ["INV-2"]
        assert [(p.line, p.message) for p in problems] == [
            (2, "row 1: amount '12,50' is not a number: use a dot for decimals")
        ]

    def test_bad_rows_are_reported_with_row_and_line(self) -> None:
        text = (
            HEADER
            + "INV-1,ada@example.com,10,EUR,2026-03-02,,,,\n"
            + "\n"
            + 'INV-2,ada@example.com,10,EUR,2026-03-02,,,"one\ntwo",\n'
            + "INV-1,ada@example.com,10,EUR,2026-03-02,,,,\n"
            + "INV-4,bob@example.com,10,EUR,2026-03-02,,,,\n"
            + "INV-5,ada@example.com,10,EUR,2026-03-02,,,,,extra\n"
            + "INV-6,ada@example.com,10,EUR,2026-03-02,,3 days,,\n"
            + "INV-7,ada@example.com,10,EUR,yesterday,,,,\n"
        )
        invoices, problems = parse_invoices_csv(
            text, file="in.csv", default_terms=parse_duration("30d"), known_contacts=[ADA]
        )
        assert [i.number for i in invoices] == ["INV-1", "INV-2"]
        assert invoices[1].delivered == ("one", "two")
        assert [(p.line, p.message.split(":")[0]) for p in problems] == [
            (6, "row 3"),
            (7, "row 4"),
            (8, "row 5"),
            (9, "row 6"),
            (10, "row 7"),
        ]
        messages = [p.message for p in problems]
        assert "invoice INV-1 is already on row 1" in messages[0]
        assert "bob@example.com is not a contact" in messages[1]
        assert problems[1].contact == "bob@example.com"
        assert "10 cells but 9 columns" in messages[2]
        assert "terms: '3 days' is not a duration" in messages[3]
        assert "'yesterday' is not a date" in messages[4]
        assert all(p.file == "in.csv" for p in problems)

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("", "the file is empty"),
            ("number,contact,amount,curency\n", "unknown column 'curency'"),
            ("number,contact,amount\n", "no currency column"),
            ("number,contact,amount,currency,number\n", "the column 'number' appears twice"),
        ],
    )
    def test_an_unreadable_file_is_one_problem(self, text: str, message: str) -> None:
        with pytest.raises(ImportProblem, match=message) as caught:
            parse_invoices_csv(
                text, file="in.csv", default_terms=parse_duration("30d"), known_contacts=()
            )
        assert caught.value.line == 1

    def test_the_sample_invoices_belong_to_the_sample_contacts(self) -> None:
        folder = SCAFFOLD / "samples"
        contacts = parse_csv((folder / "contacts.csv").read_text("utf-8"), file="contacts.csv")
        invoices, problems = parse_invoices_csv(
            (folder / "invoices.csv").read_text("utf-8"),
            file="invoices.csv",
            default_terms=parse_duration("30d"),
            known_contacts={c.email for c in contacts.contacts},
        )
        assert problems == []
        assert len(invoices) == 2
        assert all(invoice.delivered for invoice in invoices)

    def test_a_thousand_invoices_import_and_plan_quickly(self) -> None:
        """1,000 rows, every 25th broken: each bad row reported, the rest planned in < 1 s."""
        zones = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney", ""]
        contacts = {
            f"c{n}@example.com": Contact(f"c{n}@example.com", timezone=zones[n % len(zones)])
            for n in range(200)
        }
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["number", "contact", "amount", "currency", "issued", "terms", "delivered"])
        bad = set()
        for n in range(1, 1001):
            issued = date(2026, 1, 1) + timedelta(days=n % 120)
            row = [f"INV-{n:04}", f"c{n % 200}@example.com", f"{n}.{n % 100:02}",
                   ("EUR", "USD", "JPY")[n % 3], issued.isoformat(), f"{(n % 4 + 1) * 14}d",
                   f"Work item {n}|Follow-up {n}"]  # fmt: skip
            if n % 3 == 2:
                row[2] = str(n)  # JPY: whole numbers
            if n % 25 == 0:
                bad.add(n)
                row[[1, 2, 3, 4][n // 25 % 4]] = ["nobody@example.com", "1,5", "XYZ", "soon"][
                    n // 25 % 4
                ]
            writer.writerow(row)
        started = timer.perf_counter()
        invoices, problems = parse_invoices_csv(
            out.getvalue(), file="big.csv", default_terms=parse_duration("30d"),
            known_contacts=contacts.keys(),
        )  # fmt: skip
        now = at(BERLIN, 2026, 4, 1, 10)
        plan = plan_reminders(
            invoices, contacts, {}, POLICY, now=now, until=now + timedelta(days=90),
            thank_you=THANKS, window=WEEKDAYS, default_tz="Europe/Berlin",
        )  # fmt: skip
        elapsed = timer.perf_counter() - started
        assert len(invoices) == 1000 - len(bad)
        assert sorted(int(p.message.split()[1].rstrip(":")) for p in problems) == sorted(bad)
        assert [p.line for p in problems] == [row + 1 for row in sorted(bad)]
        assert elapsed < 1.0, f"import and plan took {elapsed:.2f}s"
        # Each invoice: at most one send per window opening, at most one entry per stage.
        keys = [r.key for r in plan]
        assert len(keys) == len(set(keys))
        due_now = [r for r in plan if not r.skipped and r.send_at <= now.astimezone(UTC)]
        assert len({r.number for r in due_now}) == len(due_now)
        for reminder in plan:
            if not reminder.skipped:
                local = reminder.local_send_at()
                assert local.weekday() < 5
                assert time(9, 1) <= local.time() < time(17, 0)
