"""What toma does about one inbound message. Pure: a reading in, a decision out.

- A human reply: each of the contact's enrolments follows its sequence's
  ``on_reply`` (stop, pause for a while, or continue), a reply on an invoice
  thread pauses that invoice's reminders, and the owner is told.
- An auto-reply is only logged; if it names the day the person is back, their
  next automated message waits until the day after.
- A hard bounce marks the address bounced; soft bounces do after
  ``inbox.soft_bounce_limit`` in a row.
- An unsubscribe request unsubscribes at once and for good, with one polite
  confirmation, and the owner is told.

toma never answers an auto-reply or a bounce, so two robots cannot talk to
each other for ever.

History: what arrived before toma read the mailbox
--------------------------------------------------

A mailbox holds months of mail from before toma was pointed at it. A message
that *arrived* in the mailbox before ``since`` — ``[inbox] since`` if the
owner set it, else the moment of the first sync of that mailbox — is history:
it is logged on the contact's conversation (``toma log``), and it stops,
pauses, holds, bounces and notifies nothing. Its arrival is the mailbox's own
record (IMAP INTERNALDATE, the Maildir file's time), not the Date header the
sender wrote; only when the mailbox cannot tell is the Date header used.

The one exception is a request to stop from the contact themself (their own
address, or the signed token): it is honoured even from history, because
ignoring an objection is worse than acting on it late. No confirmation goes
out and the owner is not sent a notice for it; it shows in ``toma log``.

Likewise a reply that arrived before the contact was enrolled in a sequence
does not make that sequence follow its ``on_reply``: it answered something
else.

Who may act on a contact
------------------------

Anyone can write to the owner, and anyone can put any Message-ID in
In-Reply-To or any address in a bounce report. So what a message *changes*
is bound to who it provably comes from; what it merely *says* is logged and
shown to the owner, who decides:

- A bounce acts only when it is tied to a message toma sent to that address
  (:mod:`toma.core.reading.match`: its returned Message-ID is one of toma's, whose
  random Message-IDs no outsider can guess, and it names that message's
  recipient as failed). An untied bounce changes nothing: it is recorded with
  the reason (``untied bounce: …``), logged, and listed by ``toma status``.
- A request to stop, an out-of-office hold and a reply's stepping back act on
  a contact only when the sender (the From address) is that contact, or, for
  a request to stop, when it carries the valid signed token of the
  List-Unsubscribe mailto (which names the person whatever address it comes
  from). A message on Mira's thread from anybody else — Eve, or Mira's
  colleague answering for her — is logged on Mira's conversation as from a
  third party and, unless it is automatic, the owner is told; Mira's
  sequences, invoice reminders and status stay as they were.

The sender's From address is taken as it is: telling a forged From from a
real one is the job of the owner's mail provider (SPF, DKIM, DMARC), which
rejects or files away what fails them before toma reads the mailbox.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from toma.config import Config
from toma.core.contacts import Contact, Status, with_status
from toma.core.enrolments import Enrolment
from toma.core.reading.classify import Reading
from toma.core.reading.match import Match
from toma.core.reminders import number_of_ref
from toma.core.sequences import Sequence as SequenceFile
from toma.timeutil import iso


@dataclass(frozen=True)
class Decision:
    contact: Contact | None = None  # the contact as it must now be stored (None: unchanged)
    enrolments: tuple[Enrolment, ...] = ()  # changed enrolments
    invoice_paused_until: datetime | None = None  # for the invoice whose thread this answers
    actions: tuple[str, ...] = ()  # what was done, in words, for the log and `toma log`
    notify_owner: bool = False
    confirm_unsubscribe: bool = False
    third_party: bool = False  # on a contact's thread, but not from the contact: nothing done
    history: bool = False  # arrived before toma read the mailbox: logged, acted on only to stop
    contacted: datetime | None = None  # the owner wrote to the contact then (by hand)


def decide(
    reading: Reading,
    found: Match,
    *,
    contact: Contact | None,
    enrolments: Sequence[Enrolment],
    sequences: Mapping[str, SequenceFile],
    config: Config,
    now: datetime,
    arrived: datetime | None = None,
    since: datetime | None = None,
) -> Decision:
    """What to do about ``reading``; ``arrived`` is when the mailbox got it (None: now).

    ``since``: mail that arrived before it is history (see the module's docstring).
    """
    if arrived is not None and since is not None and arrived < since:
        return _history(reading, found, contact, arrived, since, now)
    if contact is None:
        if found.untied is not None:
            return Decision(actions=(f"untied bounce: {found.untied}; nothing changed",))
        return Decision(actions=("kept aside: no contact matches",))
    if reading.kind == "bounce":
        # Only a tied bounce has a contact (see toma.core.reading.match).
        return _bounce(reading, contact, config, now)
    if found.via != "token" and reading.sender != contact.email:
        return _third_party(reading, contact, config)
    if reading.kind == "reply":
        return _reply(
            reading, found, contact, enrolments, sequences, config, now, arrived=arrived or now
        )
    if reading.kind == "auto-reply":
        return _auto_reply(reading, contact, config)
    if reading.kind == "unsubscribe":
        return _unsubscribe(contact, now)
    return Decision(actions=("logged",))


def _third_party(reading: Reading, contact: Contact, config: Config) -> Decision:
    sender = reading.sender or "an unknown sender"
    what = {"unsubscribe": "a request to stop", "auto-reply": "an automatic reply"}.get(
        reading.kind, "a message"
    )
    return Decision(
        actions=(f"{what} from {sender[:200]}, not from {contact.email}: nothing changed",),
        # What a person wrote on the thread matters to the owner; a robot's notice does not.
        notify_owner=reading.kind in ("reply", "unsubscribe") and config.inbox.notify != "off",
        third_party=True,
    )


def _reply(
    reading: Reading,
    found: Match,
    contact: Contact,
    enrolments: Sequence[Enrolment],
    sequences: Mapping[str, SequenceFile],
    config: Config,
    now: datetime,
    *,
    arrived: datetime,
) -> Decision:
    actions: list[str] = []
    changed: list[Enrolment] = []
    _step_back(enrolments, sequences, now, arrived, "reply", actions, changed)
    invoice_until = None
    if found.answers is not None and found.answers.kind == "invoice":
        invoice_until = config.invoices.pause_on_reply.after(now)
        actions.append(
            f"paused reminders of {number_of_ref(found.answers.ref)} until "
            f"{invoice_until.date().isoformat()}"
        )
    updated = replace(contact, soft_bounces=0) if contact.soft_bounces else None
    if not actions:
        actions.append("logged")
    return Decision(
        contact=updated,
        enrolments=tuple(changed),
        invoice_paused_until=invoice_until,
        actions=tuple(actions),
        notify_owner=config.inbox.notify != "off",
    )


def _step_back(
    enrolments: Sequence[Enrolment],
    sequences: Mapping[str, SequenceFile],
    now: datetime,
    when: datetime,
    what: str,
    actions: list[str],
    changed: list[Enrolment],
) -> None:
    """Each enrolment follows its sequence's rule for ``what`` ("reply": ``on_reply``,
    "handwritten": ``on_handwritten``), unless it began after the message."""
    for enrolment in enrolments:
        if enrolment.state == "stopped":
            continue
        if when < enrolment.enrolled_at:
            message = "the reply came" if what == "reply" else "you wrote"
            actions.append(
                f"kept {enrolment.sequence}: {message} before the enrolment "
                f"({enrolment.enrolled_at.date().isoformat()})"
            )
            continue
        sequence = sequences.get(enrolment.sequence)
        if sequence is None:
            # The file is broken or gone: stepping back is the safe reading.
            changed.append(enrolment.paused(None))
            actions.append(f"paused {enrolment.sequence} (its file cannot be read)")
            continue
        rule = sequence.on_reply if what == "reply" else sequence.handwritten_rule
        if rule.action == "stop":
            changed.append(enrolment.stopped("replied" if what == "reply" else "wrote by hand"))
            actions.append(f"stopped {enrolment.sequence}")
        elif rule.action == "pause" and rule.pause is not None:
            until = rule.pause.after(now)
            changed.append(enrolment.paused(until))
            actions.append(f"paused {enrolment.sequence} until {until.date().isoformat()}")
        elif rule.action == "pause":
            # No duration: paused until the owner resumes it (see OnReply).
            changed.append(enrolment.paused(None))
            actions.append(f"paused {enrolment.sequence} until the owner resumes it")
        elif what == "handwritten" and sequence.repeat is not None:
            actions.append(f"{enrolment.sequence} continues; its repeat counts from this message")


def decide_handwritten(
    contact: Contact,
    enrolments: Sequence[Enrolment],
    sequences: Mapping[str, SequenceFile],
    *,
    now: datetime,
    written: datetime,
    since: datetime | None = None,
) -> Decision:
    """What a message the owner wrote to ``contact`` by hand does (found in the Sent folder).

    It counts as contact: ``contacted`` is when it was written, from which the
    keep-in-touch repeat and the pace count (see :mod:`toma.core.planner`), and
    each enrolment follows its sequence's ``on_handwritten`` (by default its
    ``on_reply``). Written before ``since`` (before toma read the Sent folder),
    it is history: logged, nothing changed, as for the inbox.
    """
    if since is not None and written < since:
        return Decision(
            actions=(
                f"history: written {written.date().isoformat()}, before toma read your Sent "
                f"folder (since {since.date().isoformat()}); nothing changed",
            ),
            history=True,
        )
    actions: list[str] = []
    changed: list[Enrolment] = []
    _step_back(enrolments, sequences, now, written, "handwritten", actions, changed)
    return Decision(
        enrolments=tuple(changed),
        actions=("written by hand: counts as contact", *actions),
        contacted=written,
    )


def _history(
    reading: Reading,
    found: Match,
    contact: Contact | None,
    arrived: datetime,
    since: datetime,
    now: datetime,
) -> Decision:
    when = (
        f"history: arrived {arrived.date().isoformat()}, before toma read this mailbox "
        f"(since {since.date().isoformat()})"
    )
    own = contact is not None and (found.via == "token" or reading.sender == contact.email)
    if reading.kind == "unsubscribe" and own and contact is not None:
        # An objection stands however old it is; but no confirmation months later.
        if contact.status is Status.UNSUBSCRIBED:
            return Decision(actions=(f"{when}; already unsubscribed",), history=True)
        gone = with_status(
            contact,
            Status.UNSUBSCRIBED,
            at=iso(now),
            reason=f"asked by email on {arrived.date().isoformat()}",
        )
        return Decision(
            contact=gone,
            actions=(f"{when}; unsubscribed: a request to stop is honoured late",),
            history=True,
        )
    return Decision(actions=(f"{when}; nothing changed",), history=True)


def _auto_reply(reading: Reading, contact: Contact, config: Config) -> Decision:
    if reading.back_on is None:
        return Decision(actions=("logged (auto-reply)",))
    zone = ZoneInfo(contact.timezone or config.owner.timezone)
    # The notice names the first day back ("back on 23 March", "wieder da am
    # 23.3.") or the last day away ("bis einschließlich 18.12.", "until 18
    # December"; then ``away_until`` is set). Mail waits until the day after the
    # day named: the day after their first morning back, or their first day back.
    hold = datetime.combine(reading.back_on + timedelta(days=1), time(0), zone)
    if reading.away_until is not None:
        back = reading.away_until + timedelta(days=1)
        said = f"out of office until {reading.away_until.isoformat()}, back on {back.isoformat()}"
    else:
        said = f"out of office, back on {reading.back_on.isoformat()}"
    if contact.hold_until and contact.hold_until >= iso(hold):
        return Decision(actions=(f"logged (auto-reply: {said})",))
    return Decision(
        contact=replace(contact, hold_until=iso(hold)),
        actions=(f"no automated mail before {hold.date().isoformat()}: {said}",),
    )


def _bounce(reading: Reading, contact: Contact, config: Config, now: datetime) -> Decision:
    if contact.status.final:
        return Decision(actions=(f"logged (bounce; already {contact.status.value})",))
    if reading.hard:
        bounced = with_status(
            contact, Status.BOUNCED, at=iso(now), reason=f"hard bounce: {reading.reason}"
        )
        return Decision(
            contact=bounced,
            actions=("marked bounced (hard)",),
            notify_owner=config.inbox.notify != "off",
        )
    count = contact.soft_bounces + 1
    if count >= config.inbox.soft_bounce_limit:
        bounced = with_status(
            replace(contact, soft_bounces=count),
            Status.BOUNCED,
            at=iso(now),
            reason=f"{count} soft bounces: {reading.reason}",
        )
        return Decision(
            contact=bounced,
            actions=(f"marked bounced ({count} soft bounces)",),
            notify_owner=config.inbox.notify != "off",
        )
    return Decision(
        contact=replace(contact, soft_bounces=count),
        actions=(f"soft bounce {count} of {config.inbox.soft_bounce_limit}",),
    )


def _unsubscribe(contact: Contact, now: datetime) -> Decision:
    if contact.status is Status.UNSUBSCRIBED:
        return Decision(actions=("logged (already unsubscribed)",))
    gone = with_status(contact, Status.UNSUBSCRIBED, at=iso(now), reason="asked by email")
    return Decision(
        contact=gone, actions=("unsubscribed",), notify_owner=True, confirm_unsubscribe=True
    )
