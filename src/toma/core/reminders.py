"""An invoice's reminders as it nears and passes its due date, and its thank-you.

Theory of operation
-------------------

:func:`plan_reminders` is a pure function of the invoices, the contacts, the
outbox history, the reminder policy and ``now``, like the sequence planner
(:mod:`toma.core.planner`): it reads no clock, no disk, no network, remembers
nothing between calls, and so can only ever change what is still to come.

**Stages.** The policy (``[invoices] stages`` in config.toml) is a list of
moments relative to the due date, each with a template: ``-3d`` (a friendly
note before), ``0d`` (on the day), ``+7d``, ``+14d``, ``+30d``. A stage's
moment is the due date plus ``at`` on the contact's wall clock, at the start
of the ``default`` window: a reminder three days before goes out in the
morning of that day, in the recipient's time zone; on a day the window is
closed, at its next opening. Each stage has a key (:func:`reminder_key`,
``invoice:INV-7:-3d``) made from the *meaning* of ``at``, not its spelling
("-72h" and "-3d" are one stage). A key the history shows as ever attempted is
never planned again, and neither is any stage that comes before the latest
attempted one (a stage added to the policy later never goes back in time).
Stages whose moment falls on or before the issue date are left out: the
invoice itself has only just gone out.

**No bursts.** Only the latest stage that is due when a reminder can go is
sent. When the next stage is due by the time a stage could go — the daemon
was off, the window was closed all weekend, a reply paused the reminders —
the earlier stage is *skipped*: recorded as such, never sent. The latest one
is always sent, however late: an unpaid invoice still needs its reminder.
So a client hears from you once, never two or three reminders in a row.
A skip is listed when it is decided, that is once its turn has come (its
moment, or the end of a pause, is past); one foreseen further ahead is left
out of the plan until then.

**Pauses.** A reply on the invoice's thread sets ``paused_until``. Until then
nothing goes; when the pause ends, the latest stage due by then goes, the
earlier ones are skipped, and the rest follow on their own dates. Waiting
that was asked for is not lateness: ``late_by`` counts from the pause's end.

**Paid and void.** Only open invoices are reminded, so marking an invoice
paid or void stops every reminder at once, including one planned for later
today: it is simply no longer in the plan (a retry waiting in the outbox is
the daemon's to drop). A paid invoice gets a thank-you (``[invoices]
thank_you``) once, at the next opening of the window, unless it was paid more
than ``thank_within`` (14 days) ago: a thank-you a month late reads oddly,
and an import of old, long-paid invoices must not thank anyone.

**Who is reminded** is decided by the contact's status (see
:mod:`toma.core.invoices`): active and unsubscribed contacts get reminders and the
thank-you; bounced and paused contacts, and addresses that are no contact,
get nothing. Reminders are not subject to the keep-in-touch pace gap: the due
date, not the last newsletter, decides when they go.

**Cost.** One pass over the history (invoice records only), then per open
invoice a handful of date computations and one bisection per stage in a
:class:`~toma.core.windows.WindowCalendar` shared by every contact of a zone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Sequence as SequenceOf
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from toma.config import DEFAULT_WINDOW, InvoiceStage, Window
from toma.core.contacts import Contact
from toma.core.invoices import Invoice
from toma.core.lastcheck import RECEIVES
from toma.core.outbox import ATTEMPTED, MessageState, OutboxRecord, new_record
from toma.core.windows import Zones
from toma.timeutil import Duration, parse_duration

THANK_WITHIN = timedelta(days=14)
THANK_YOU = "thank-you"
KEY_PREFIX = "invoice:"

_OPEN = "open"
_PAID = "paid"
# Unsubscribing stops keep-in-touch mail, not the reminders of a transaction (core/lastcheck).
_SENDABLE = RECEIVES["invoice"]

# --------------------------------------------------------------------------- keys


def stage_label(at: Duration) -> str:
    """``at`` written the one way it is remembered: "-3d", "+7d", "+1mo", "0d"."""
    if not at.months and not at.seconds:
        return "0d"
    sign = "-" if at.negative else "+"
    seconds = abs(at.seconds)
    parts = [f"{abs(at.months)}mo"] if at.months else []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)


def reminder_key(number: str, stage_at: Duration) -> str:
    """The outbox key of one reminder stage of invoice ``number``: ``invoice:INV-7:-3d``."""
    return f"{KEY_PREFIX}{number}:{stage_label(stage_at)}"


def thank_you_key(number: str) -> str:
    return f"{KEY_PREFIX}{number}:{THANK_YOU}"


def split_key(key: str) -> tuple[str, str] | None:
    """(number, stage) of an invoice key; ``None`` for any other key."""
    if not key.startswith(KEY_PREFIX):
        return None
    number, _, stage = key[len(KEY_PREFIX) :].rpartition(":")
    return (number, stage) if number and stage else None


def number_of_ref(ref: str) -> str:
    """The invoice number in an outbox ``ref`` ("2026/07/+7d" → "2026/07")."""
    # rpartition: a number may itself hold "/".
    return ref.rpartition("/")[0]


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class PlannedReminder:
    """One invoice message to send at ``send_at`` — or, with ``skipped``, to record as skipped."""

    key: str
    contact: str
    number: str
    stage: str  # stage_label(at), or "thank-you"
    template: str
    due_at: datetime  # the stage's moment (UTC)
    send_at: datetime  # the window's opening at or after it is ready (UTC)
    late_by: timedelta  # send_at - ready: a pause is not lateness
    timezone: str = "UTC"
    skipped: bool = False
    detail: str = ""  # why it is skipped
    kind: Literal["invoice"] = "invoice"

    @property
    def ref(self) -> str:
        return f"{self.number}/{self.stage}"

    @property
    def thank_you(self) -> bool:
        return self.stage == THANK_YOU

    def local_send_at(self) -> datetime:
        return self.send_at.astimezone(ZoneInfo(self.timezone))

    def to_record(
        self, *, at: datetime, state: MessageState | None = None, detail: str | None = None
    ) -> OutboxRecord:
        """A first outbox record: by default ``skipped`` for a skip, else ``planned``."""
        if state is None:
            state = MessageState.SKIPPED if self.skipped else MessageState.PLANNED
        return new_record(
            key=self.key,
            contact=self.contact,
            kind="invoice",
            ref=self.ref,
            template=self.template,
            due_at=self.due_at,
            at=at,
            step=self.stage,
            state=state,
            detail=self.detail if detail is None else detail,
        )


class _Zones(Zones):
    """The shared zone cache (:class:`~toma.core.windows.Zones`) and the reminders' window."""

    def __init__(self, window: Window, default: str) -> None:
        super().__init__(default)
        self.window = window


def stage_moment(due: date, at: Duration, window: Window, tz: ZoneInfo) -> datetime:
    """When a stage is due: ``due + at`` at the window's start, on the wall clock of ``tz``."""
    return at.after(datetime.combine(due, window.start, tz)).astimezone(UTC)


def plan_reminders(
    invoices: Iterable[Invoice],
    contacts: Mapping[str, Contact],
    history: Mapping[str, OutboxRecord],
    stages: SequenceOf[InvoiceStage],
    *,
    now: datetime,
    until: datetime | None = None,
    thank_you: str | None = None,
    window: Window = DEFAULT_WINDOW,
    default_tz: str = "UTC",
    thank_within: timedelta = THANK_WITHIN,
) -> list[PlannedReminder]:
    """Reminders and thank-yous from ``now`` to ``until``, and the skips decided now.

    Entries with ``skipped`` are to be recorded as skipped at ``now``; the others
    go at their ``send_at`` (``<= now``: in this tick). Ordered by ``send_at``.
    See the module docstring for the rules.
    """
    if now.tzinfo is None or (until is not None and until.tzinfo is None):
        raise ValueError("plan_reminders() needs aware datetimes for now and until")
    now = now.astimezone(UTC)
    horizon = max(until.astimezone(UTC), now) if until is not None else now
    zones = _Zones(window, default_tz)

    policy: dict[str, tuple[Duration, str]] = {}
    for stage in stages:
        policy.setdefault(stage_label(stage.at), (stage.at, stage.template))

    done: dict[str, set[str]] = {}
    retries: dict[str, datetime] = {}
    for record in history.values():
        if record.kind != "invoice":
            continue
        parts = split_key(record.key)
        if parts is None:
            continue
        if record.state in ATTEMPTED:
            done.setdefault(parts[0], set()).add(parts[1])
        elif record.next_attempt_at is not None:
            retries[record.key] = record.next_attempt_at

    plan: list[PlannedReminder] = []
    for invoice in invoices:
        contact = contacts.get(invoice.contact)
        if contact is None or contact.status not in _SENDABLE:
            continue
        if invoice.status == _OPEN:
            _plan_stages(
                invoice, contact, policy, done, retries, history, zones, now, horizon, plan
            )
        elif invoice.status == _PAID and thank_you:
            _plan_thanks(
                invoice,
                contact,
                thank_you,
                done,
                retries,
                history,
                zones,
                now,
                horizon,
                thank_within,
                plan,
            )
    plan.sort(key=lambda r: (r.send_at, r.contact, r.number, r.due_at))
    return plan


def _attempted(history: Mapping[str, OutboxRecord], key: str) -> bool:
    # Belt and braces: the key itself, whatever the scan of the history made of it.
    record = history.get(key)
    return record is not None and record.state in ATTEMPTED


def _plan_stages(
    invoice: Invoice,
    contact: Contact,
    policy: Mapping[str, tuple[Duration, str]],
    done: Mapping[str, set[str]],
    retries: Mapping[str, datetime],
    history: Mapping[str, OutboxRecord],
    zones: _Zones,
    now: datetime,
    horizon: datetime,
    plan: list[PlannedReminder],
) -> None:
    zone_name, tz = zones.of(contact.timezone)
    window = zones.window
    sent = done.get(invoice.number, set())
    # Never go back: nothing before the latest stage that was ever attempted.
    floor = datetime.combine(invoice.issued + timedelta(days=1), time(), tz).astimezone(UTC)
    for label in sent:
        if label in policy:
            at = policy[label][0]
        else:
            try:
                at = parse_duration(label, signed=True)  # a stage since removed from the policy
            except ValueError:
                continue
        moment = stage_moment(invoice.due, at, window, tz) + timedelta(microseconds=1)
        floor = max(floor, moment)
    pending: list[tuple[datetime, str, str]] = []
    for label, (at, template) in policy.items():
        if label in sent:
            continue
        moment = stage_moment(invoice.due, at, window, tz)
        if moment >= floor:
            pending.append((moment, label, template))
    if not pending:
        return
    pending.sort()
    # A pause that has ended still says when waiting stopped: late_by counts from there.
    pause = invoice.paused_until
    calendar = zones.calendar(zones.window, zone_name, tz)
    for index, (moment, label, template) in enumerate(pending):
        key = f"{KEY_PREFIX}{invoice.number}:{label}"
        if _attempted(history, key):
            continue
        ready = moment if pause is None or pause <= moment else pause
        retry_at = retries.get(key)
        if retry_at is not None and retry_at > ready:
            ready = retry_at
        if ready > horizon:
            break
        turn = ready if ready > now else now
        send_at = calendar.next_opening(turn)
        following = pending[index + 1] if index + 1 < len(pending) else None
        superseded = following is not None and following[0] <= send_at
        if not superseded and send_at > horizon:
            break
        if superseded and turn > now:
            continue  # decided when its turn comes, not before
        plan.append(
            PlannedReminder(
                key=key,
                contact=contact.email,
                number=invoice.number,
                stage=label,
                template=template,
                due_at=moment,
                send_at=send_at,
                late_by=send_at - ready,
                timezone=zone_name,
                skipped=superseded,
                detail=(
                    f"stage {following[1]} is due by the time this one could go"
                    if superseded and following is not None
                    else ""
                ),
            )
        )


def _plan_thanks(
    invoice: Invoice,
    contact: Contact,
    template: str,
    done: Mapping[str, set[str]],
    retries: Mapping[str, datetime],
    history: Mapping[str, OutboxRecord],
    zones: _Zones,
    now: datetime,
    horizon: datetime,
    thank_within: timedelta,
    plan: list[PlannedReminder],
) -> None:
    key = thank_you_key(invoice.number)
    if THANK_YOU in done.get(invoice.number, ()) or _attempted(history, key):
        return
    zone_name, tz = zones.of(contact.timezone)
    paid_on = invoice.paid_on or now.astimezone(tz).date()
    due_at = datetime.combine(paid_on, time(), tz).astimezone(UTC)
    ready = due_at
    retry_at = retries.get(key)
    if retry_at is not None and retry_at > ready:
        ready = retry_at
    if ready > horizon:
        return
    turn = ready if ready > now else now
    send_at = zones.calendar(zones.window, zone_name, tz).next_opening(turn)
    too_late = send_at - due_at > thank_within
    if too_late and turn > now:
        return
    if not too_late and send_at > horizon:
        return
    plan.append(
        PlannedReminder(
            key=key,
            contact=contact.email,
            number=invoice.number,
            stage=THANK_YOU,
            template=template,
            due_at=due_at,
            send_at=send_at,
            late_by=send_at - ready,
            timezone=zone_name,
            skipped=too_late,
            detail=f"paid on {paid_on.isoformat()}: too long ago for a thank-you"
            if too_late
            else "",
        )
    )
