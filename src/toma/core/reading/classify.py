"""How toma reads an inbound message: a pure function from bytes to a :class:`Reading`.

Theory of operation. :func:`read_message` parses the bytes with the standard
library's most forgiving policy, drops the payload of big attachments (nothing
toma needs is in them), and then asks, in this order:

1. Is it a bounce? (:mod:`toma.core.reading.bounces`) A bounce wins over everything:
   mail systems often mark their failure notices ``Auto-Submitted`` too.
2. Was it sent to one of the unsubscribe addresses? Then it is an unsubscribe
   request, however it was written (some clients send these automatically).
3. Is it automatic — an out-of-office notice, an acknowledgement?
   (:mod:`toma.core.reading.autoreply`)
4. Does a person ask to be left alone, in the subject or the first line of what
   they wrote (not in the quoted history)? Then it is an unsubscribe request.
5. Otherwise a person wrote it: a reply, with its new text (:mod:`toma.core.reading.replytext`).

A message without a usable sender that is none of the above cannot be a reply
and is "unknown". Nothing in here raises: whatever cannot be read is listed in
``problems``, and if reading fails altogether the result is "unknown".

Reading one message costs time linear in its size, and is bounded: only the
first 10 MB are parsed, 1,000 header fields per part, 16 KB of one header value,
200 MIME parts nested at most 20 deep, 256 K characters of one text part (the
numbers, and why, are in :mod:`toma.core.reading.mimetext`); what is cut is listed in
``problems`` and the message is still read. On top of the bounds, a caller may
give a *deadline* and the *clock* to hold it against (the clock is passed in,
never read here, so the reader stays a pure function of its arguments): the
clock is asked between the stages and inside every loop over slices, header
fields, parts and lines, and a message not read by the deadline is "unknown".
Whenever a message could not be read — over the budget, or failing altogether
— :attr:`Reading.unread` says why; it is None for every message that was read.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from email.message import Message
from typing import Literal

from toma.core.reading import autoreply, bounces, mimetext, plaintext, replytext

Kind = Literal["reply", "auto-reply", "bounce", "unsubscribe", "unknown"]

# Seconds a caller in the daemon gives one message to be read (toma.inbox.sync
# passes it as the deadline). Within the bounds the slowest hostile message
# measured (bench/hostile_mail.py) reads in about a second; the budget is for
# what was not foreseen, and keeps one message from holding up the inbox.
READ_BUDGET = 5.0

# Parts bigger than this that are not text are emptied before reading: no
# classification rule looks inside them, and decoding them would be slow.
_BIG_PART = 512 * 1024


@dataclass(frozen=True)
class Reading:
    """What an inbound message is and what it says, as far as toma cares."""

    kind: Kind
    reason: str
    sender: str | None
    subject: str
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    date: dt.datetime | None
    hard: bool | None
    recipients: tuple[str, ...]
    original_message_id: str | None
    text: str | None
    back_on: dt.date | None  # the day an out-of-office names (see away_until)
    problems: tuple[str, ...]
    unread: str | None = None  # why the message could not be read; None when it was read
    away_until: dt.date | None = None  # when back_on is the last day away, not the first back


def read_message(
    data: bytes,
    *,
    unsubscribe_addresses: Collection[str] = (),
    now: dt.datetime | None = None,
    deadline: float | None = None,
    clock: Callable[[], float] | None = None,
) -> Reading:
    """Read one raw message (RFC 5322 bytes). Never raises on what the message holds.

    *unsubscribe_addresses* are the addresses toma gives in List-Unsubscribe;
    *now* resolves a return date without a year when the message has no Date.
    With a *deadline* (a reading of *clock*, which must then be given too) the
    reading gives up once ``clock() > deadline``: the result is "unknown", with
    ``unread`` saying so.
    """
    if deadline is not None and clock is None:
        raise ValueError("a deadline needs the clock it is a reading of")
    problems: list[str] = []
    check = mimetext.no_check
    allowed = 0.0
    if deadline is not None and clock is not None:
        allowed = deadline - clock()
        check = _checker(deadline, clock)
    try:
        return _read(data, unsubscribe_addresses, now, problems, check)
    except mimetext.OverBudget:
        why = f"over the reading budget ({max(allowed, 0):.3g} s)"
        problems.append(why)
        return unknown("not read: over the reading budget", problems, unread=why)
    except Exception as exc:  # noqa: BLE001 - the contract: unreadable mail is "unknown", not a crash
        problems.append(f"could not read the message: {type(exc).__name__}")
        return unknown("unreadable message", problems, unread=f"unreadable: {type(exc).__name__}")


def _checker(deadline: float, clock: Callable[[], float]) -> mimetext.Check:
    def check() -> None:
        if clock() > deadline:
            raise mimetext.OverBudget

    return check


def unknown(reason: str, problems: Iterable[str] = (), unread: str | None = None) -> Reading:
    """A reading that could not be made: kind "unknown", with why (``unread``)."""
    return Reading(
        kind="unknown",
        reason=reason,
        sender=None,
        subject="",
        message_id=None,
        in_reply_to=None,
        references=(),
        date=None,
        hard=None,
        recipients=(),
        original_message_id=None,
        text=None,
        back_on=None,
        problems=tuple(problems),
        unread=unread,
    )


def _read(
    data: bytes,
    unsubscribe_addresses: Collection[str],
    now: dt.datetime | None,
    problems: list[str],
    check: mimetext.Check,
) -> Reading:
    if not isinstance(data, bytes | bytearray | memoryview):
        problems.append("not bytes")
        return unknown("not a message", problems, unread="not a message: not bytes")
    if len(data) > mimetext.READ_LIMIT:
        # Cut before copying: the bytes past the limit are never looked at.
        problems.append(f"message cut to its first {mimetext.READ_LIMIT // (1024 * 1024)} MB")
        data = data[: mimetext.READ_LIMIT]
    raw = bytes(data)
    # Some stores and hand-saved files start with blank lines or an mbox "From " line.
    raw = raw.lstrip(b"\r\n")
    if raw.startswith(b"From ") and b"\n" in raw:
        raw = raw.split(b"\n", 1)[1]
    if not raw.strip():
        problems.append("empty message")
        return unknown("empty message", problems)
    msg = mimetext.parse(raw, problems, check)
    if not msg.keys():
        problems.append("no header fields")
        return unknown("no header fields", problems)
    _note_defects(msg, problems, check)
    _slim(msg, check)

    headers = mimetext.Headers(msg, problems, check)
    subject = headers.get("subject", "")
    from_header = headers.get("from", "")
    senders = mimetext.addresses([from_header]) or mimetext.addresses([headers.get("sender", "")])
    sender = senders[0] if senders else None
    sender_name = from_header
    message_id = _first(mimetext.message_ids(headers.get("message-id", "")))
    in_reply_to = _first(mimetext.message_ids(headers.get("in-reply-to", "")))
    references = mimetext.message_ids(headers.get("references", ""))
    when = mimetext.parse_date(headers.get("date", ""), problems)
    own = frozenset(
        mimetext.addresses(
            headers.every("to")
            + headers.every("cc")
            + headers.every("delivered-to")
            + headers.every("x-original-to")
            + headers.every("envelope-to")
        )
    )
    check()

    def reading(kind: Kind, reason: str, **extra: object) -> Reading:
        fields: dict[str, object] = {
            "hard": None,
            "recipients": (),
            "original_message_id": None,
            "text": None,
            "back_on": None,
        }
        fields.update(extra)
        return Reading(
            kind=kind,
            reason=reason,
            sender=sender,
            subject=subject,
            message_id=message_id,
            in_reply_to=in_reply_to,
            references=references,
            date=when,
            problems=tuple(dict.fromkeys(problems)),
            **fields,  # type: ignore[arg-type]
        )

    bounce = bounces.read_bounce(
        msg,
        sender=sender,
        sender_name=sender_name,
        subject=subject,
        headers=headers,
        own=own,
        problems=problems,
        check=check,
    )
    check()
    if bounce is not None:
        return reading(
            "bounce",
            bounce.reason,
            hard=bounce.hard,
            recipients=bounce.recipients,
            original_message_id=_original_id(msg, problems, check) or in_reply_to,
        )

    wanted = {a.strip().lower() for a in unsubscribe_addresses if a and a.strip()}
    hit = sorted(wanted & own)
    if hit:
        body = mimetext.body(msg, problems, check)
        text = replytext.new_text(plaintext.readable_text(body, check=check), check=check)
        return reading("unsubscribe", f"sent to the unsubscribe address {hit[0]}", text=text)

    automatic = autoreply.automatic_signal(headers, subject)
    if automatic is None and mimetext.param(msg, "report-type") in {
        "disposition-notification",
        "feedback-report",
        "delivery-status",
    }:
        automatic = f"{mimetext.param(msg, 'report-type')} report"
    if automatic is not None:
        body = mimetext.body(msg, problems, check)
        written = when.date() if when else (now.date() if now else None)
        notice = f"{subject}\n{plaintext.readable_text(body, keep_quotes=True, check=check)}"
        check()
        back = autoreply.read_return(notice, written=written)
        return reading(
            "auto-reply",
            automatic,
            original_message_id=_original_id(msg, problems, check) or in_reply_to,
            back_on=back.day if back else None,
            away_until=back.day if back and back.until else None,
        )

    body = mimetext.body(msg, problems, check)
    text = replytext.new_text(plaintext.readable_text(body, check=check), check=check)
    check()
    request = _stop_request(subject, text)
    if request:
        return reading("unsubscribe", request, text=text)
    if sender is None:
        problems.append("no usable From address")
        return reading("unknown", "no usable sender", text=text or None)
    return reading("reply", "written by a person", text=text)


def _first(values: tuple[str, ...]) -> str | None:
    return values[0] if values else None


def _note_defects(msg: Message, problems: list[str], check: mimetext.Check) -> None:
    seen: set[str] = set()
    for part in mimetext.walk(msg, into_attached=False, check=check):
        for defect in getattr(part, "defects", []):
            name = type(defect).__name__
            if name not in seen and name in {
                "StartBoundaryNotFoundDefect",
                "CloseBoundaryNotFoundDefect",
                "MultipartInvariantViolationDefect",
                "NoBoundaryInMultipartDefect",
                "MissingHeaderBodySeparatorDefect",
            }:
                seen.add(name)
                problems.append(f"malformed MIME: {name.removesuffix('Defect')}")
    for defect in getattr(msg, "defects", []):
        name = type(defect).__name__
        if name not in seen and "Boundary" in name:
            seen.add(name)
            problems.append(f"malformed MIME: {name.removesuffix('Defect')}")


def _slim(msg: Message, check: mimetext.Check) -> None:
    """Empty the payload of big parts that are not text: nothing is read from them."""
    for part in mimetext.walk(msg, into_attached=True, check=check):
        ctype = mimetext.content_type(part)
        payload = mimetext.raw_payload(part)
        if len(payload) > _BIG_PART and not ctype.startswith(("text/", "message/")):
            part.set_payload("")


def _original_id(msg: Message, problems: list[str], check: mimetext.Check) -> str | None:
    """The Message-ID of the message a report or notice returns, if it carries one."""
    for part in mimetext.walk(msg, check=check):
        ctype = mimetext.content_type(part)
        if ctype == "message/rfc822":
            inner = _payload(part)
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                found = _first(mimetext.message_ids(mimetext.header(inner[0], "message-id")))
                if found:
                    return found
        if ctype in {"text/rfc822-headers", "message/rfc822-headers"}:
            found = _quoted_id(mimetext.decode_part(part, problems))
            if found:
                return found
    body = mimetext.body(msg, problems, check)
    return _quoted_id(plaintext.readable_text(body, keep_quotes=True, check=check))


def _payload(part: Message) -> object:
    try:
        return part.get_payload()
    except Exception:  # noqa: BLE001 - a broken attachment has no id to give
        return None


_QUOTED_ID = re.compile(r"^[ \t>|]*message-id:\s*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)


def _quoted_id(text: str) -> str | None:
    match = _QUOTED_ID.search(text[:200000])
    return match.group(1) if match else None


_STOP_PATTERNS = [
    # English
    r"^\s*unsubscribe\b",
    r"\bunsubscribe me\b",
    r"\bplease (?:remove|unsubscribe|delete) me\b",
    r"\bremove me from (?:your|this|the|all)\b",
    r"\btake me off (?:your|this|the|all)\b",
    r"\bstop (?:e-?mailing|sending|contacting|writing to) me\b",
    r"\b(?:do not|don't|dont) (?:e-?mail|contact|send|write to) me\b",
    r"\bno (?:more|further) (?:e-?mails|emails|messages|mails)\b",
    r"^\s*opt[ -]?out\b",
    r"\bi (?:want|would like|wish) to unsubscribe\b",
    # German
    r"\babmelden\b",
    r"\babmeldung\b",
    r"\baustragen\b",
    r"\babbestellen\b",
    r"\bkeine (?:weiteren )?(?:e-?mails|mails|nachrichten|newsletter) mehr\b",
    r"\bbitte (?:entfernen|löschen|streichen) sie mich\b",
    # French
    r"\bd(?:é|e)sabonne",
    r"\bd(?:é|e)sinscri",
    r"\bne plus recevoir\b",
    r"\bretirez-moi\b",
    r"\bsupprimez-moi\b",
    # Spanish, Portuguese, Italian
    r"\bdar(?:me|se)? de baja\b",
    r"\bdenme de baja\b",
    r"\bno (?:me )?(?:envíen|envien|manden) m(?:á|a)s\b",
    r"\b(?:eliminarme|borrarme|quitarme) de\b",
    r"\bdescadastr",
    r"\bcancelar (?:a )?inscri",
    r"\bn(?:ã|a)o quero (?:mais )?receber\b",
    r"\bcancellami\b",
    r"\bdisiscri",
    r"\bnon voglio pi(?:ù|u) ricevere\b",
    # Dutch, Scandinavian, Polish
    r"\buitschrijven\b",
    r"\bafmelden\b",
    r"\bverwijder (?:mij|me)\b",
    r"\bavregistrer",
    r"\bavsluta prenumeration",
    r"\bafmeld",
    r"\bwypisz mnie\b",
    r"\brezygnuj",
]
_STOP = re.compile("|".join(f"(?:{p})" for p in _STOP_PATTERNS), re.IGNORECASE)
# "\s*(?:\[\d+\]\s*)?:" rather than "\s*(?:\[\d+\])?\s*:": the same prefixes, but two
# runs of spaces side by side made a subject of "re" and 16 K spaces quadratic.
_REPLY_PREFIX = re.compile(
    r"^\s*(?:(?:re|aw|wg|fw|fwd|sv|vs|antw|r|rif|tr|odp)\s*(?:\[\d+\]\s*)?:\s*)+", re.IGNORECASE
)


def _stop_request(subject: str, text: str) -> str:
    """Why a person's message asks to stop mail, or "" if it does not."""
    bare = _REPLY_PREFIX.sub("", subject[: mimetext.LINE_LIMIT])
    match = _STOP.search(bare[:300])
    if match:
        return f"asks to stop in the subject ({match.group(0).strip()!r})"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if first and len(first) <= 300:
        match = _STOP.search(first)
        if match:
            return f"asks to stop in the first line ({match.group(0).strip()!r})"
    return ""
