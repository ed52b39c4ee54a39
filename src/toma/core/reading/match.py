"""Matching an inbound message to the message it answers and to a contact. Pure.

The order is the order of certainty: the thread headers against the
Message-IDs toma sent (In-Reply-To, then References from the newest), the
original message a bounce or auto-reply quotes, then the sender's address.

A bounce is matched only through the message it returns, and only when it is
*tied* to it: the returned Message-ID (the quoted original, In-Reply-To or
References) is one toma sent, and the failed recipients the bounce names
include the address that message went to. Toma's Message-IDs are random, so
nobody who did not receive the message can name one; and a bounce of Mira's
message that names Jonas says nothing reliable about either of them. A bounce
that is not tied has no contact: :attr:`Match.untied` says why, and
:attr:`Match.named` lists the contacts it names, so the owner can be shown it.
The failed recipient alone never decides (see :mod:`toma.core.reading.decide`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from toma.core.reading.classify import Reading


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
    via: str  # "in-reply-to" | "references" | "original" | "sender" | "token" | "none"
    untied: str | None = None  # a bounce that acts on nobody: why it is not tied
    named: tuple[str, ...] = ()  # contacts an untied bounce names as failed recipients


def match(reading: Reading, *, sent: Mapping[str, Sent], contacts: Collection[str]) -> Match:
    """Find the outbound message and the contact of ``reading``."""
    found, via = _thread(reading, sent)
    if reading.kind == "bounce":
        return _bounce(reading, found, via, contacts)
    if found is not None:
        return Match(contact=found.contact, answers=found, via=via)
    if reading.sender and reading.sender in contacts:
        return Match(contact=reading.sender, answers=None, via="sender")
    return Match(contact=None, answers=None, via="none")


def _thread(reading: Reading, sent: Mapping[str, Sent]) -> tuple[Sent | None, str]:
    candidates: list[tuple[str, str | None]] = [("in-reply-to", reading.in_reply_to)]
    candidates += [("references", ref) for ref in reversed(reading.references)]
    candidates.append(("original", reading.original_message_id))
    for via, message_id in candidates:
        if message_id and (found := sent.get(_bare(message_id))):
            return found, via
    return None, "none"


def _bounce(reading: Reading, found: Sent | None, via: str, contacts: Collection[str]) -> Match:
    failed = tuple(dict.fromkeys(address.lower() for address in reading.recipients))
    named = tuple(address for address in failed if address in contacts)
    if found is not None and found.contact.lower() in failed:
        return Match(contact=found.contact, answers=found, via=via)
    if found is None:
        why = "it returns no message toma sent"
    elif not failed:
        why = f"it returns the message toma sent to {found.contact} but names no failed recipient"
    else:
        why = (
            f"it returns the message toma sent to {found.contact} but names "
            f"{', '.join(a[:100] for a in failed[:5])} as failed"
        )
    # No ``answers`` either: counting it against the message it names would be acting on it.
    return Match(contact=None, answers=None, via="none", untied=why, named=named[:50])


def _bare(message_id: str) -> str:
    """Message-IDs compare without angle brackets and surrounding space."""
    return message_id.strip().strip("<>").strip()


def sent_index(messages: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, Sent]:
    """Message-ID (bare) → what was sent, from the outbox's (key, document) pairs."""
    return {
        _bare(doc["message_id"]): Sent(
            key=key, contact=doc["contact"], kind=doc.get("kind", ""), ref=doc.get("ref", "")
        )
        for key, doc in messages
        if doc.get("message_id")
    }
