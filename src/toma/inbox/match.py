"""Matching an inbound message to the message it answers and to a contact. Pure.

The order is the order of certainty: the thread headers against the
Message-IDs toma sent (In-Reply-To, then References from the newest), the
original message a bounce or auto-reply quotes, then addresses — the failed
recipient of a bounce, else the sender.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from toma.inbox.classify import Reading


@dataclass(frozen=True)
class Sent:
    """What toma remembers of one outbound message, looked up by its Message-ID."""

    key: str
    contact: str
    kind: str
    ref: str


@dataclass(frozen=True)
class Match:
    contact: str | None
    answers: Sent | None  # the outbound message it answers, if known
    via: str  # "in-reply-to" | "references" | "original" | "recipient" | "sender" | "none"


def match(
    reading: Reading, *, sent: Mapping[str, Sent], contacts: Collection[str]
) -> Match:
    """Find the outbound message and the contact of ``reading``."""
    candidates: list[tuple[str, str | None]] = [("in-reply-to", reading.in_reply_to)]
    candidates += [("references", ref) for ref in reversed(reading.references)]
    candidates.append(("original", reading.original_message_id))
    for via, message_id in candidates:
        if message_id and (found := sent.get(_bare(message_id))):
            return Match(contact=found.contact, answers=found, via=via)
    if reading.kind == "bounce":
        for address in reading.recipients:
            if address in contacts:
                return Match(contact=address, answers=None, via="recipient")
    if reading.sender and reading.sender in contacts:
        return Match(contact=reading.sender, answers=None, via="sender")
    return Match(contact=None, answers=None, via="none")


def _bare(message_id: str) -> str:
    """Message-IDs compare without angle brackets and surrounding space."""
    return message_id.strip().strip("<>").strip()


def sent_index(messages: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, Sent]:
    """Message-ID (bare) → what was sent, from the outbox's (key, document) pairs."""
    return {
        _bare(doc["message_id"]): Sent(key=key, contact=doc["contact"], kind=doc.get("kind", ""),
                                       ref=doc.get("ref", ""))
        for key, doc in messages
        if doc.get("message_id")
    }
