"""One tick's order of decisions: the invoice reminders first, then the pace, then the plan.

The daemon's tick and ``toma plan`` decide alike: the reminders due are planned
first (:mod:`toma.core.reminders`) and counted as if already sent, so that the
pace gate (``pace.min_gap`` after a contact's last message) keeps the sequence
steps planned next (:mod:`toma.core.planner`) clear of them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from toma.core.outbox import MessageState
from toma.core.planner import PlanState
from toma.core.reminders import PlannedReminder


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
