"""The last check before a message is handed over: may it still go to its contact?

The planners decide what is due from the contacts as the tick read them; other
processes (``toma contacts unsubscribe``, ``pause``, ``forget``, the one-click
endpoint) may change a contact since. The outbox writer (:mod:`toma.daemon.outboxwriter`)
therefore reads the contact's stored document again in the write that marks a
message ``sending``, and in the one that marks it handed, and asks :func:`withheld`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from toma.core.contacts import Status
from toma.core.outbox import OutboxRecord
from toma.errors import TomaError
from toma.timeutil import parse_moment

# Who receives what, by the contact's status: the one rule the planners apply as
# they plan (core/planner, core/reminders) and the outbox writer applies again just
# before the hand-over (withheld). Unsubscribing stops keep-in-touch mail and
# newsletters, not the reminders of a transaction; a bounced or paused contact gets
# nothing. Notices go to the owner and are not checked.
RECEIVES: Mapping[str, frozenset[Status]] = MappingProxyType(
    {
        "sequence": frozenset({Status.ACTIVE}),
        "newsletter": frozenset({Status.ACTIVE}),
        "invoice": frozenset({Status.ACTIVE, Status.UNSUBSCRIBED}),
    }
)


@dataclass(frozen=True)
class Withheld:
    """Why the last check stopped a message, and what becomes of its record.

    ``action``: ``"skip"`` (final: ``skipped`` with ``reason``), ``"wait"``
    (the record stays as it was before the tick), ``"forget"`` (nothing is
    written: the contact was forgotten) or ``"taken"`` (another daemon claimed
    it: nothing is written, see :mod:`toma.store.claims`).
    """

    action: str
    reason: str


def withheld(
    record: OutboxRecord, contact: Mapping[str, Any] | None, now: datetime
) -> Withheld | None:
    """Whether ``record`` may still go to ``contact`` (its stored document) at ``now``.

    The same rules as the planning, read again just before the hand-over: an
    invoice reminder still goes to an unsubscribed client (it is not
    marketing), a hold (an out-of-office return) stops sequences only, and a
    notice (to the owner, or confirming a departure) is not checked here.
    """
    if record.kind == "notice":
        return None
    if contact is None:
        return Withheld("forget", "the contact was forgotten")
    # Read from the document as it is: this runs inside the send's writes, where a
    # value that does not decode must not stop everybody's mail.
    status = contact.get("status") or Status.ACTIVE
    if status not in RECEIVES.get(record.kind, RECEIVES["sequence"]):
        # A final status ends the message; any other leaves it for when it changes.
        if status == Status.BOUNCED:
            return Withheld("skip", "skipped: the address bounced before the message went")
        if status == Status.UNSUBSCRIBED:
            return Withheld("skip", "skipped: the contact unsubscribed before the message went")
        if status == Status.PAUSED:
            return Withheld("wait", "the contact was paused before the message went")
        return Withheld("wait", f"the contact's status is {status!r}")
    hold = contact.get("hold_until")
    if record.kind == "sequence" and isinstance(hold, str) and hold:
        try:
            until = parse_moment(hold)
        except TomaError:
            return Withheld("wait", f"the contact is held (until {hold!r}, unreadable)")
        if until > now:
            return Withheld("wait", f"the contact is held until {hold}")
    return None
