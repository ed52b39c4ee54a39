"""``toma status``: the last tick, the outbox by state, and what needs the owner."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from toma import exits
from toma.core.outbox import MessageState, OutboxRecord
from toma.daemon.worker import STATUS_KEY
from toma.exits import Exit
from toma.store import MESSAGES, META, SYNC, Reader
from toma.store.base import Document
from toma.store.embedded.journal import DAMAGE_META_KEY
from toma.store.records import conversations, outbox
from toma.store.records.query import Counting, counted_by, matching


@dataclass
class StatusReport:
    last_tick: dict[str, Any] | None
    states: dict[str, int]
    failed: list[OutboxRecord] = field(default_factory=list)
    unknown: list[OutboxRecord] = field(default_factory=list)
    retrying: list[OutboxRecord] = field(default_factory=list)
    newsletters: list[str] = field(default_factory=list)  # issues with messages, in order
    inbox_aside: list[dict[str, Any]] = field(default_factory=list)  # set aside, untied bounces
    journal_damage: dict[str, Any] | None = None  # the last torn journal tail cut (a crash)

    def attention(self, now: datetime) -> tuple[Exit, list[str]]:
        """The exit status of ``toma status`` at ``now``, and why (see :mod:`toma.exits`)."""
        return exits.for_status(
            last_tick=self.last_tick,
            unknown=len(self.unknown),
            failed_at=[r.updated_at or r.due_at for r in self.failed],
            retrying=len(self.retrying),
            set_aside_at=[
                _moment(d.get("recorded_at") or d.get("received_at"))
                for d in self.inbox_aside
                if d.get("set_aside")
            ],
            journal_damage_at=(
                _moment(self.journal_damage.get("cut_at")) if self.journal_damage else None
            ),
            now=now,
        )

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
            "inbox_aside": self.inbox_aside,
            "journal_damage": self.journal_damage,
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
        damage = self.journal_damage
        if damage:
            out.append(
                f"Journal: a torn last line (a write a crash interrupted, never committed) "
                f"was dropped: {damage.get('bytes')} bytes at offset {damage.get('offset')} "
                f"of {damage.get('file')}, cut at {damage.get('cut_at')}."
            )
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
                if records is self.unknown:
                    out.append(
                        "  Once you have checked one did not arrive: toma outbox release "
                        "KEY (keys: toma outbox list --state unknown)."
                    )
        if tick is not None and tick.get("withheld"):
            out.append(
                f"  {tick['withheld']} withheld by the last check before sending "
                "(the contact left, was paused or forgotten during the tick)."
            )
        out.extend(_inbox_lines(self.inbox_aside))
        return out


def _inbox_lines(items: list[dict[str, Any]]) -> list[str]:
    """What the inbox set aside, and bounces that changed nothing: the owner looks at them."""
    unread = [d for d in items if d.get("set_aside")]
    untied = [d for d in items if d.get("untied")]
    out = []
    if unread:
        out.append(
            "Inbox, set aside (could not be read; never read again — open them in your "
            "mail program):"
        )
        for doc in _latest(unread):
            where = (
                f"UID {doc['uid']}" if doc.get("uid") is not None else f"file {doc.get('file', '')}"
            )
            out.append(
                f"  {doc.get('mailbox', '')} {where}  {doc.get('size', 0)} bytes  "
                f"{doc.get('reason', '')}"
            )
    if untied:
        out.append(
            "Inbox, untied bounces (not tied to a message toma sent there; nobody was marked):"
        )
        for doc in _latest(untied):
            named = ", ".join(doc.get("named") or doc.get("recipients") or []) or "nobody"
            out.append(
                f"  {doc.get('received_at', '')[:16]}  from {doc.get('sender')}  "
                f"naming {named}: {doc.get('untied')}"
            )
    return out


def _moment(text: Any) -> datetime:
    """A stored ISO moment; one that does not read counts as now-ish (it needs a look)."""
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        return datetime.max.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _latest(items: list[dict[str, Any]], shown: int = 20) -> list[dict[str, Any]]:
    """The newest ``shown`` (``items`` are oldest first); ``--json`` has them all."""
    return items[-shown:]


class OutboxTally:
    """What the report says of the outbox, tallied one message at a time.

    :func:`gather` tallies every message; a caller that keeps a tally (the
    dashboard, :mod:`toma.web.statusview`) takes out a message's old document
    and adds its new one after each write instead.
    """

    def __init__(self) -> None:
        self.states: Counter[str] = Counter()
        self.newsletters: Counter[str] = Counter()
        self.noted: dict[Hashable, tuple[str, OutboxRecord]] = {}  # failed, unknown, retrying

    def add(self, key: Hashable, doc: Document, sign: int = 1) -> None:
        """Count ``doc``, known by ``key``, in (``sign`` -1: out, as it was counted in)."""
        state = doc.get("state", "")
        if doc.get("kind") == "newsletter":
            self.newsletters[doc.get("ref", "")] += sign
        self.states[state] += sign
        if sign < 0:
            self.noted.pop(key, None)
        elif state == MessageState.FAILED:
            self.noted[key] = ("failed", OutboxRecord.from_doc(doc))
        elif state == MessageState.UNKNOWN:
            self.noted[key] = ("unknown", OutboxRecord.from_doc(doc))
        elif state == MessageState.PLANNED and doc.get("next_attempt_at"):
            self.noted[key] = ("retrying", OutboxRecord.from_doc(doc))

    def fields(self) -> dict[str, Any]:
        """The report's fields that come from the outbox."""
        order = lambda r: (r.updated_at or r.due_at, r.contact)  # noqa: E731
        found: dict[str, list[OutboxRecord]] = {"failed": [], "unknown": [], "retrying": []}
        for which, record in self.noted.values():
            found[which].append(record)
        return {
            "states": {state: n for state, n in self.states.items() if n > 0},
            "newsletters": sorted(ref for ref, n in self.newsletters.items() if n > 0),
            **{which: sorted(records, key=order) for which, records in found.items()},
        }


def needing_attention(reader: Reader) -> StatusReport:
    """What says whether the owner is needed (:meth:`StatusReport.attention`), asked of
    ``reader`` by state: the messages failed, unknown or waiting for a retry, never
    the whole outbox (so ``states`` counts those alone), with the last tick, the
    mail set aside and the journal's damage, as :func:`gather` finds them."""
    return gather(reader, _noted(reader))


def _noted(reader: Reader) -> OutboxTally:
    """The messages a report lists one by one (failed, unknown, retrying), tallied."""
    tally = OutboxTally()
    for state in (MessageState.FAILED, MessageState.UNKNOWN, MessageState.PLANNED):
        for key, doc in matching(reader, MESSAGES, state=state.value):
            tally.add(key, doc)
    return tally


def outbox_tally(reader: Reader) -> OutboxTally:
    """Every message of ``reader`` tallied: on PostgreSQL counted by the database
    (300,000 messages in about 2 s, where reading each took 6 to 10) beside the
    messages listed one by one; elsewhere read one by one."""
    if not isinstance(reader, Counting):
        tally = OutboxTally()
        for number, doc in enumerate(outbox.documents(reader)):
            tally.add(number, doc)
        return tally
    tally = _noted(reader)
    tally.states = Counter(counted_by(reader, MESSAGES, "state"))
    tally.newsletters = Counter(counted_by(reader, MESSAGES, "ref", kind="newsletter"))
    return tally


def gather(reader: Reader, tally: OutboxTally | None = None) -> StatusReport:
    """The report of ``reader``; ``tally``: its outbox tallied already (else here)."""
    if tally is None:
        tally = outbox_tally(reader)
    aside = [
        {
            k: doc.get(k)
            for k in (
                "key",
                "mailbox",
                "uid",
                "file",
                "size",
                "reason",
                "sender",
                "subject",
                "received_at",
                "recorded_at",
                "set_aside",
                "untied",
                "named",
                "recipients",
            )
            if doc.get(k) is not None
        }
        for doc in conversations.set_aside_or_untied(reader)
    ]
    return StatusReport(
        inbox_aside=sorted(aside, key=lambda d: str(d.get("received_at", ""))),
        last_tick=reader.get(SYNC, STATUS_KEY),
        journal_damage=reader.get(META, DAMAGE_META_KEY),
        **tally.fields(),
    )
