"""``toma log``: one contact's conversation, both directions, in time order.

Every moment is shown in one zone, the owner's: what toma sent is stored in
UTC and what came in carries the sender's own offset, and a log mixing the two
unmarked reads as if a reply came before the message it answers.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from toma.store import Reader
from toma.store.records import conversations, outbox

_SHOWN_STATES = {"sent", "failed", "unknown", "sending", "skipped"}


@dataclass(frozen=True)
class Entry:
    at: str  # ISO 8601
    direction: str  # "out" | "in"
    kind: str  # sequence, invoice, newsletter, notice, handwritten | reply, auto-reply, bounce, …
    subject: str
    detail: str = ""  # what became of it (out) or what toma did (in)
    text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "direction": self.direction,
            "kind": self.kind,
            "subject": self.subject,
            "detail": self.detail,
            "text": self.text,
            **self.extra,
        }

    def lines(self, zone: tzinfo = UTC) -> list[str]:
        """The entry for a reader, its moment in ``zone`` with the zone's name (CET, CEST)."""
        arrow = "→" if self.direction == "out" else "←"
        head = f"{_shown(self.at, zone)}  {arrow} {self.kind}: {self.subject}"
        out = [head.rstrip()]
        if self.detail:
            out.append(f"    {self.detail}")
        for paragraph in self.text.strip().splitlines():
            wrapped = textwrap.wrap(paragraph, width=76) or [""]
            out.extend(f"    | {line}" for line in wrapped)
        return out


def conversation(reader: Reader, email: str, zone: tzinfo = UTC) -> list[Entry]:
    """Everything to and from ``email``, oldest first, each moment in ``zone`` (ISO 8601)."""
    entries: list[Entry] = []
    for doc in outbox.documents(reader, contact=email):
        if doc.get("state") not in _SHOWN_STATES:
            continue
        state = doc["state"]
        detail = state if state == "sent" else f"{state}: {doc.get('detail', '')}".strip(": ")
        entries.append(
            Entry(
                at=_in(zone, doc.get("sent_at") or doc.get("updated_at") or doc["due_at"]),
                direction="out",
                kind=doc.get("kind", ""),
                subject=doc.get("subject") or doc.get("ref", ""),
                detail=f"{doc.get('ref', '')} — {detail}",
                extra={"ref": doc.get("ref"), "state": state, "message_id": doc.get("message_id")},
            )
        )
    for doc in conversations.about(reader, email):
        actions = "; ".join(doc.get("actions") or [])
        if doc.get("untied"):
            actions = f"from {doc.get('sender')} — {actions}"
        detail = f"toma: {actions}" if actions else ""
        handwritten = doc.get("kind") == "handwritten"
        if handwritten:
            # Mail the owner wrote in their own mail program (found in the Sent folder).
            detail = "written by hand" + (f" — {detail}" if detail else "")
        entries.append(
            Entry(
                # When it reached the mailbox: the Date header is what the sender wrote.
                at=_in(zone, doc.get("received_at") or doc.get("date") or ""),
                direction="out" if handwritten else "in",
                kind=doc.get("kind", ""),
                subject=doc.get("subject", ""),
                detail=detail,
                text=doc.get("text") or "",
                extra={
                    "message_id": doc.get("message_id"),
                    "answers": doc.get("answers_ref"),
                    "dated": doc.get("date"),
                    "history": bool(doc.get("history")),
                },
            )
        )
    return sorted(entries, key=lambda entry: _utc(entry.at))


def about_invoice(reader: Reader, number: str, contact: str, zone: tzinfo = UTC) -> list[Entry]:
    """Every message about invoice ``number``: its reminders and thank-you, and whatever came
    back on their thread (the client's replies, and anybody else's), oldest first."""
    from toma.core.reminders import number_of_ref

    def about(entry: Entry) -> bool:
        ref = entry.extra.get("ref") if entry.direction == "out" else entry.extra.get("answers")
        return (
            isinstance(ref, str)
            and number_of_ref(ref) == number
            and (entry.direction == "in" or entry.kind == "invoice")
        )

    return [entry for entry in conversation(reader, contact, zone) if about(entry)]


def _utc(moment: str) -> str:
    try:
        return datetime.fromisoformat(moment).astimezone(UTC).isoformat()
    except ValueError:
        return moment


def _in(zone: tzinfo, moment: str) -> str:
    """``moment`` (ISO 8601) in ``zone``, with its offset; kept as it is if it is no moment."""
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        return moment
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # toma stores aware moments; an old one is UTC
    return parsed.astimezone(zone).isoformat()


def _shown(moment: str, zone: tzinfo) -> str:
    """Day, time and the zone's abbreviation (CET, CEST, UTC): nobody has to guess."""
    try:
        parsed = datetime.fromisoformat(_in(zone, moment))
    except ValueError:
        return moment[:16].replace("T", " ")
    return parsed.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
