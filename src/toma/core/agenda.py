"""One tick's order of decisions: the invoice reminders first, then the pace, then the plan.

The daemon's tick and ``toma plan`` decide alike: the reminders due are planned
first (:mod:`toma.core.reminders`) and counted as if already sent, so that the
pace gate (``pace.min_gap`` after a contact's last message) keeps the sequence
steps planned next (:mod:`toma.core.planner`) clear of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from toma.core.outbox import MessageState
from toma.core.planner import Plan, PlanState, plan
from toma.core.reminders import PlannedReminder

# Only the reminders of the coming day hold keep-in-touch mail back: the pace
# looks at a contact's latest message, and a reminder weeks away is not one yet.
PACED_AHEAD = timedelta(days=1)


def decide(
    state: PlanState,
    reminders: Sequence[PlannedReminder],
    now: datetime,
    *,
    until: datetime | None = None,
) -> Plan:
    """The sequence plan from ``now`` (to ``until``), with ``reminders`` planned first.

    The daemon's tick passes the reminders of the coming day and plans what is
    due now; ``toma plan`` passes those of the weeks it shows and plans as far.
    """
    soon = [r for r in reminders if r.send_at <= now + PACED_AHEAD]
    return plan(with_paced(state, soon, now), now, until=until)


def with_paced(state: PlanState, invoice_plan: list[PlannedReminder], now: datetime) -> PlanState:
    """``state`` with the coming reminders counted by the pace as if already sent."""
    paced = {}
    for item in invoice_plan:
        if item.skipped or item.key in state.history:
            continue
        record = item.to_record(at=now, state=MessageState.SENDING)
        paced[item.key] = replace(record, updated_at=max(item.send_at, now))
    if not paced:
        return state
    return replace(state, history={**state.history, **paced})
