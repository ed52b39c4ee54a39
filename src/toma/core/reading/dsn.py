"""Delivery Status Notifications (RFC 3464): the machine-readable part of a bounce.

A ``message/delivery-status`` part holds one block of fields for the message and
one per recipient (Final-Recipient, Action, Status, Diagnostic-Code). Read here
into the failed recipients and whether each failure is final; the free-text
notices that come without such a part are read by :mod:`toma.core.reading.bounces`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message

from toma.core.reading import mimetext

# Status codes: enhanced (RFC 3463, "5.1.1") and basic SMTP replies ("550").
ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
BASIC = re.compile(r"(?<![\d.\w-])([45])([0-5]\d)(?![\d.])(?=[\s:-])")
# A full mailbox: a failure that may pass.
MAILBOX_FULL = re.compile(
    r"quota|mailbox (?:is )?full|mail ?box space|mailfolder is full|over ?quota|"
    r"mailbox exceeds|exceeds (?:the )?allowed size|"
    r"too much mail|exceed(?:ed|s|ing)? (?:their|the|its|his|her)? ?(?:quota|storage|size)|"
    r"insufficient (?:storage|space)|disk space",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Recipient:
    address: str
    hard: bool


@dataclass(frozen=True)
class Dsn:
    failed: list[Recipient]
    delivered: bool
    status: str


def dsn_blocks(msg: Message, problems: list[str], check: mimetext.Check) -> list[dict[str, str]]:
    """The per-recipient field blocks of every message/delivery-status part."""
    blocks: list[dict[str, str]] = []
    for part in mimetext.walk(msg, check=check):
        if mimetext.content_type(part) != "message/delivery-status":
            continue
        try:
            payload = part.get_payload()
        except Exception:  # noqa: BLE001 - a broken report part
            problems.append("unreadable delivery-status part")
            continue
        if isinstance(payload, list):
            for block in payload:
                if isinstance(block, Message):
                    fields: dict[str, str] = {}
                    for key, value in block.items():
                        value = str(value)[: mimetext.VALUE_LIMIT]
                        text = " ".join(mimetext.fix_text(value).split())
                        fields.setdefault(key.lower(), text)
                    blocks.append(fields)
        else:
            blocks.extend(_parse_fields(mimetext.decode_part(part, problems)))
    return blocks


def _parse_fields(text: str) -> list[dict[str, str]]:
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, ""
        elif line[0] in " \t" and last:
            current[last] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            last = key.strip().lower()
            current.setdefault(last, value.strip())
    if current:
        blocks.append(current)
    return blocks


def read_dsn(blocks: list[dict[str, str]], notice: str) -> Dsn | None:
    if not blocks:
        return None
    failed: list[Recipient] = []
    delivered = False
    statuses: list[str] = []
    for block in blocks:
        action = block.get("action", "").lower()
        if not action and "final-recipient" not in block:
            continue  # the per-message block
        status = _status(block)
        if action.startswith(("delivered", "relayed", "expanded")):
            delivered = True
            continue
        address = _dsn_address(block)
        if address is None:
            continue
        diagnostic = " ".join(
            block.get(k, "")
            for k in ("status", "diagnostic-code", "x-supplementary-info", "action")
        )
        if not status or status.endswith(".0.0"):
            # "5.0.0" says nothing; the notice often does ("disk quota exceeded").
            diagnostic += " " + notice[:4000]
        failed.append(Recipient(address, _hard_from_status(action, status, diagnostic)))
        if status:
            statuses.append(status)
    return Dsn(failed=failed, delivered=delivered, status=statuses[0] if statuses else "")


def _status(block: dict[str, str]) -> str:
    for key in ("status", "diagnostic-code"):
        match = ENHANCED.search(block.get(key, ""))
        if match:
            return match.group(0)
    match = BASIC.search(block.get("status", "") + " " + block.get("diagnostic-code", ""))
    return f"{match.group(1)}.0.0" if match else ""


def _dsn_address(block: dict[str, str]) -> str | None:
    for key in ("original-recipient", "final-recipient", "x-actual-recipient"):
        value = block.get(key, "")
        kind, _, rest = value.partition(";")
        if not rest:
            kind, rest = "rfc822", value
        if kind.strip().lower() not in {"rfc822", ""}:
            continue
        address = mimetext.normalise_address(rest)
        if address:
            return address
    return None


def _hard_from_status(action: str, status: str, diagnostic: str) -> bool:
    if action.startswith("delayed") or status.startswith("4"):
        return False
    return not (status.startswith("5.2.2") or MAILBOX_FULL.search(diagnostic))
