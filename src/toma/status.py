"""``toma status``: the last tick, the outbox by state, and what needs the owner."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from toma.daemon import STATUS_KEY
from toma.outbox import MessageState, OutboxRecord
from toma.store import MESSAGES, SYNC, Reader


@dataclass
class Status:
    last_tick: dict[str, Any] | None
    states: dict[str, int]
    failed: list[OutboxRecord] = field(default_factory=list)
    unknown: list[OutboxRecord] = field(default_factory=list)
    retrying: list[OutboxRecord] = field(default_factory=list)
    newsletters: list[str] = field(default_factory=list)  # issues with messages, in order

    def to_json(self) -> dict[str, Any]:
        def brief(record: OutboxRecord) -> dict[str, Any]:
            doc = record.to_doc()
            return {
                key: doc[key]
                for key in (
                    "key",
                    "contact",
                    "kind",
                    "ref",
                    "state",
                    "code",
                    "detail",
                    "message_id",
                    "attempts",
                    "next_attempt_at",
                    "updated_at",
                )
            }

        return {
            "last_tick": self.last_tick,
            "messages": self.states,
            "failed": [brief(r) for r in self.failed],
            "unknown": [brief(r) for r in self.unknown],
            "retrying": [brief(r) for r in self.retrying],
        }

    def lines(self) -> list[str]:
        out = []
        tick = self.last_tick
        if tick is None:
            out.append("No tick yet: run `toma run --once` or start `toma run`.")
        else:
            out.append(
                f"Last tick at {tick['now']} ({tick['seconds']}s): {tick['sent']} sent, "
                f"{tick['failed']} failed, {tick['retrying']} to retry, {tick['unknown']} unknown, "
                f"{tick['skipped']} skipped, {tick['enrolled']} enrolled."
            )
            for name in tick.get("held", []):
                out.append(f"  held: sequence {name} (its file has a problem)")
            for problem in tick.get("problems", []):
                out.append(f"  problem: {problem}")
        counts = ", ".join(f"{n} {state}" for state, n in sorted(self.states.items())) or "empty"
        out.append(f"Outbox: {counts}.")
        for title, records in (
            ("Unknown (may or may not have gone; never resent)", self.unknown),
            ("Failed", self.failed),
            ("Waiting to retry", self.retrying),
        ):
            if records:
                out.append(f"{title}:")
                for r in records:
                    when = f" retry at {r.next_attempt_at.isoformat()}" if r.next_attempt_at else ""
                    code = f" {r.code}" if r.code else ""
                    out.append(f"  {r.contact}  {r.ref}{code}  {r.detail}{when}".rstrip())
        if self.unknown:
            out.append("  Once you have checked one did not arrive: toma outbox release KEY "
                       "(keys: toma outbox list --state unknown).")
        if tick is not None and tick.get("withheld"):
            out.append(f"  {tick['withheld']} withheld by the last check before sending "
                       "(the contact left, was paused or forgotten during the tick).")
        return out


def gather(reader: Reader) -> Status:
    states: Counter[str] = Counter()
    failed, unknown, retrying = [], [], []
    newsletters: dict[str, None] = {}
    for _key, doc in reader.all(MESSAGES):
        state = doc.get("state", "")
        if doc.get("kind") == "newsletter":
            newsletters[doc.get("ref", "")] = None
        states[state] += 1
        if state == MessageState.FAILED:
            failed.append(OutboxRecord.from_doc(doc))
        elif state == MessageState.UNKNOWN:
            unknown.append(OutboxRecord.from_doc(doc))
        elif state == MessageState.PLANNED and doc.get("next_attempt_at"):
            retrying.append(OutboxRecord.from_doc(doc))
    order = lambda r: (r.updated_at or r.due_at, r.contact)  # noqa: E731
    return Status(
        last_tick=reader.get(SYNC, STATUS_KEY),
        states=dict(states),
        failed=sorted(failed, key=order),
        unknown=sorted(unknown, key=order),
        retrying=sorted(retrying, key=order),
        newsletters=sorted(newsletters),
    )
