"""A provider's daily sending limit: how many more messages may go in the coming hours.

Providers count what an account sends in any 24 hours (Gmail 500, iCloud 1,000,
Microsoft 365 10,000 recipients); past it they refuse mail, or lock the account
for a day. ``[smtp] per_day`` (the provider preset's, by default) is that limit:
a message counts from the moment it was handed over (``sent``, or in doubt:
``unknown``, ``sending``) for one day. What a tick would send beyond it waits,
still planned, for a later tick; toma's messages are one per contact, so those
held back go first when room comes back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from toma.core.outbox import OutboxRecord, counts_for_pace

DAY = timedelta(days=1)


def counts_today(record: OutboxRecord, now: datetime) -> bool:
    """Whether ``record`` was handed to the server in the day before ``now``."""
    if not counts_for_pace(record.state):  # sent, or in doubt: sending, unknown
        return False
    moment = record.sent_at or record.updated_at
    return moment is not None and now - DAY < moment <= now


def room_left(
    history: Iterable[OutboxRecord],
    now: datetime,
    per_day: int,
    mine: Callable[[OutboxRecord], bool] = lambda _record: True,
) -> int | None:
    """How many more messages may go now under ``per_day`` (None: no daily limit).

    ``mine`` says which records were sent through this account (with several
    senders, each has its own limit).
    """
    if per_day <= 0:
        return None
    used = sum(1 for record in history if counts_today(record, now) and mine(record))
    return max(0, per_day - used)
