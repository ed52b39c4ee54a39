"""One tick's jobs: what the daemon's loop hands to the sender, made from the plan.

The loop (:mod:`toma.daemon.worker`) reads the store, asks the planners what is
due and calls these: they turn planned sequence steps, invoice reminders,
newsletter issues and notices into outbox records and :class:`~toma.mail.compose.Job`
values (a step's or a reminder's record by :func:`toma.core.outbox.carry_on`),
write the skips and the tag enrolments, and count them in the :class:`TickReport`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from toma import exits
from toma.config import Config
from toma.config.senders import each_sender, route
from toma.core.contacts import Contact
from toma.core.enrolments import Enrolment, tag_enrolments
from toma.core.invoices import invoice_view
from toma.core.outbox import (
    MessageState,
    OutboxRecord,
    advance,
    carry_on,
    new_record,
)
from toma.core.planner import PlannedSend, PlanState
from toma.core.reminders import PlannedReminder
from toma.core.sequences import Sequence
from toma.daemon.outboxwriter import Tally
from toma.daemon.senders import notice_config, owners_of
from toma.daemon.sending import Outgoing
from toma.errors import TomaError
from toma.exits import Exit
from toma.logs import fields
from toma.mail.compose import Job
from toma.store import (
    CONTACTS,
    CONVERSATIONS,
    MESSAGES,
    Store,
    claims,
)
from toma.store.records import conversations
from toma.store.records import invoices as billing
from toma.store.records import newsletters as broadcast
from toma.store.records.enrolments import record_tag_enrolments
from toma.transports import Outcome, Result

log = logging.getLogger(__name__)


@dataclass
class TickReport(Tally):
    """What one tick did; stored for ``toma status``."""

    now: str = ""
    enrolled: int = 0
    due: int = 0
    skipped: int = 0
    inbound: int = 0
    held: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # Of which deciding what to send (reading the store, planning): what grows with
    # the store; the rest is building, sending and recording, per message.
    deciding: float = 0.0
    # For the exit status (see toma.exits): reasons that need the owner, and the
    # problems and reasons that only need time.
    needs_you: list[str] = field(default_factory=list)
    temporary: list[str] = field(default_factory=list)

    def exit_code(self) -> Exit:
        """What ``toma run --once`` exits with after this tick (see :mod:`toma.exits`)."""
        return exits.for_tick(asdict(self))

    def observe(self, result: Result) -> None:
        """Note what a message's final result says about the tick's exit status."""
        code = exits.for_result(result)
        if code is Exit.NEEDS_YOU and result.outcome is Outcome.TEMPORARY:
            # Failed and unknown messages are counted already; this is the reason
            # (a refused login, an untrusted certificate) that holds them all.
            exits.note(self.needs_you, result.detail)
        elif code is Exit.RETRY:
            exits.note(self.temporary, result.detail)

    def summary(self) -> str:
        withheld = f", {self.withheld} withheld" if self.withheld else ""
        return (
            f"{self.sent} sent, {self.failed} failed, {self.retrying} to retry, "
            f"{self.unknown} unknown, {self.skipped} skipped, {self.enrolled} enrolled"
            f"{withheld}"
        )


def build_notices(
    store: Store,
    config: Config,
    contacts: Mapping[str, Contact],
    history: Mapping[str, OutboxRecord],
    now: datetime,
    outgoing: Outgoing,
) -> None:
    from toma.mail.notices import compose_notice, pending

    queued = [queue_digest(store, seen_by, now, contacts) for seen_by in each_sender(config)]
    waiting = pending(history, now) + [record for record in queued if record]
    for record in waiting:
        digest: list[Mapping[str, Any]] | None = None
        if record.template == "notice:digest":
            digest = [
                {**doc, "name": _name(contacts, doc.get("contact"))}
                for doc in conversations.in_digest(store, record.ref)
            ]
            conversation = None
        else:
            conversation = conversations.find(store, record.ref)
        about = contacts.get(record.contact) or contacts.get(
            (conversation or {}).get("contact") or ""
        )
        built = compose_notice(
            record,
            conversation,
            # Composed as the sender it goes to, or from: the sender owning the contact.
            notice_config(config, record.contact, contacts),
            now=now,
            digest=digest,
            contact_name=about.name if about else "",
        )
        outgoing.add_built(advance(record, MessageState.SENDING, at=now), built)


def queue_digest(
    store: Store, config: Config, now: datetime, contacts: Mapping[str, Contact] | None = None
) -> OutboxRecord | None:
    """With ``notify = "daily"``: once a day, from digest_at on, one notice of what came in,
    to each sender about its own contacts (``config`` as that sender sees it)."""
    if config.inbox.notify != "daily":
        return None
    local = now.astimezone(ZoneInfo(config.owner.timezone))
    if local.time() < config.inbox.digest_at:
        return None
    day = local.date().isoformat()
    ref = f"{day} {config.sender}" if config.sender else day
    key = f"notice:digest:{ref}".replace(" ", ":")
    if store.get(MESSAGES, key) is not None:
        return None
    owners = owners_of((contacts or {}).values())
    waiting = [
        (k, d)
        for k, d in conversations.not_notified(store)
        # A contact whose sender is unknown is told to the default sender.
        if (route([d["contact"]], owners, config)[d["contact"]] or "") == config.sender
    ]
    if not waiting:
        return None
    record = new_record(
        key=key,
        contact=config.owner.email,
        kind="notice",
        ref=ref,
        template="notice:digest",
        due_at=now,
        at=now,
    )
    with store.transaction() as tx:
        for conv_key, doc in waiting:
            tx.put(CONVERSATIONS, conv_key, {**doc, "notified": True, "digest": ref})
        tx.put(MESSAGES, key, record.to_doc())
    log.info("digest queued", extra=fields(day=day, messages=len(waiting), sender=config.sender))
    return record


def enrol_by_tag(store: Store, state: PlanState, sequences: dict[str, Any], now: datetime) -> int:
    enrolled = {(e.contact, e.sequence) for e in state.enrolments}
    return write_enrolments(
        store, tag_enrolments(state.contacts.values(), sequences, enrolled, now=now)
    )


def write_enrolments(store: Store, new: list[Enrolment]) -> int:
    """Write and log the enrolments the tag rules decided; how many were written."""
    if not new:
        return 0
    # A contact forgotten, unsubscribed or suppressed since the tick read the
    # store is left out: a tick never re-creates a forgotten person's records.
    new = record_tag_enrolments(store, new)
    for enrolment in new:
        log.info(
            "enrolled",
            extra=fields(contact=enrolment.contact, sequence=enrolment.sequence, by="tag"),
        )
    return len(new)


def record_skipped(
    store: Store, skipped: tuple[PlannedSend, ...], history: Any, now: datetime
) -> None:
    if not skipped:
        return
    with store.transaction() as tx:
        for send in skipped:
            if tx.get(CONTACTS, send.contact) is None:
                continue  # forgotten since the tick read the store
            if claims.taken(tx.get(MESSAGES, send.key), now):
                continue  # another daemon's since (see toma.store.claims)
            why = f"skipped: {_days(send.late_by)} late, past the pace's max_late"
            record = carry_on(history.get(send.key), send, MessageState.SKIPPED, at=now, detail=why)
            tx.put(MESSAGES, record.key, record.to_doc())
    for send in skipped:
        log.warning(
            "skipped",
            extra=fields(contact=send.contact, ref=send.ref, late=_days(send.late_by)),
        )


def plan_invoice_jobs(
    store: Store,
    planned: list[PlannedReminder],
    contacts: Mapping[str, Contact],
    history: Mapping[str, OutboxRecord],
    now: datetime,
    report: TickReport,
    outgoing: Outgoing,
) -> None:
    skipped = [p for p in planned if p.skipped]
    if skipped:
        with store.transaction() as tx:
            for item in skipped:
                if tx.get(CONTACTS, item.contact) is None:
                    continue  # forgotten since the tick read the store
                if claims.taken(tx.get(MESSAGES, item.key), now):
                    continue  # another daemon's since (see toma.store.claims)
                record = carry_on(
                    history.get(item.key),
                    item,
                    MessageState.SKIPPED,
                    at=now,
                    detail=item.detail,
                )
                tx.put(MESSAGES, record.key, record.to_doc())
        for item in skipped:
            log.info("skipped", extra=fields(contact=item.contact, ref=item.ref, why=item.detail))
        report.skipped += len(skipped)
    for item in planned:
        if item.skipped or item.send_at > now:
            continue
        invoice = billing.find(store, item.number)
        contact = contacts[item.contact]
        today = now.astimezone(ZoneInfo(item.timezone)).date()
        record = carry_on(history.get(item.key), item, MessageState.SENDING, at=now)
        thread = invoice.thread_id
        outgoing.add_job(
            record,
            Job(
                key=item.key,
                template=item.template,
                contact=contact.to_doc(),
                now=now,
                extra={"invoice": invoice_view(invoice, today=today)},
                in_reply_to=thread,
                references=(thread,) if thread else (),
                attachments=(invoice.attachment,)
                if invoice.attachment and not item.thank_you
                else (),
            ),
        )
        report.due += 1


def plan_newsletter_jobs(
    store: Store,
    config: Config,
    contacts: Mapping[str, Contact],
    history: Mapping[str, OutboxRecord],
    now: datetime,
    report: TickReport,
    outgoing: Outgoing,
) -> None:
    for name in broadcast.scheduled(store):
        try:
            issue = broadcast.load(config, name)
        except TomaError as exc:
            report.problems.append(str(exc))
            log.error("newsletter held", extra=fields(newsletter=name, error=str(exc)))
            continue
        for item in broadcast.plan_issue(issue, config, contacts.values(), history, now=now):
            outgoing.add_job(item.record, item.job)
            report.due += 1


def plan_sequence_jobs(
    due: tuple[PlannedSend, ...],
    contacts: Mapping[str, Contact],
    history: Mapping[str, OutboxRecord],
    now: datetime,
    outgoing: Outgoing,
    sequences: Mapping[str, Sequence],
) -> None:
    for send in due:
        record = carry_on(history.get(send.key), send, MessageState.SENDING, at=now)
        outgoing.add_job(
            record,
            Job(
                key=send.key,
                template=send.template,
                contact=contacts[send.contact].to_doc(),
                now=now,
                unsubscribe=sequences[send.sequence].unsubscribe,
            ),
        )


def _name(contacts: Mapping[str, Contact], email: str | None) -> str:
    found = contacts.get(email or "")
    return found.name if found else ""


def _days(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f}d" if hours >= 48 else f"{hours:.0f}h"
