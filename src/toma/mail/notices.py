"""Short automatic messages: telling the owner what came in, confirming an unsubscribe.

They go through the outbox like every other message (at most once, retried,
shown by ``toma status``) and are marked ``Auto-Submitted`` (RFC 3834), so
that no auto-responder answers them and no two robots talk for ever.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from toma.config import Config
from toma.core.outbox import OutboxRecord
from toma.mail.mime import Built, build_message
from toma.mail.render import Rendered


def pending(records: Mapping[str, OutboxRecord], now: datetime) -> list[OutboxRecord]:
    """Notices waiting to go: planned, and past their retry time if they have one."""
    return [
        r
        for r in records.values()
        if r.kind == "notice"
        and r.state == "planned"
        and (r.next_attempt_at is None or r.next_attempt_at <= now)
    ]


def compose_notice(
    record: OutboxRecord,
    conversation: Mapping[str, Any] | None,
    config: Config,
    *,
    contact_name: str,
    now: datetime,
    digest: list[Mapping[str, Any]] | None = None,
) -> Built:
    owner = config.owner
    kind = record.template.removeprefix("notice:")
    if kind == "unsubscribed":
        rendered = _unsubscribed(config)
        to_name, to_email, auto = contact_name, record.contact, "auto-replied"
        in_reply_to = conversation.get("message_id") if conversation else None
    elif kind == "digest":
        rendered = _digest(digest or [])
        to_name, to_email, auto, in_reply_to = owner.name, owner.email, "auto-generated", None
    else:
        rendered = _inbound(conversation or {}, contact_name)
        to_name, to_email, auto, in_reply_to = owner.name, owner.email, "auto-generated", None
    return build_message(
        rendered,
        sender_name=f"{owner.name} (toma)" if to_email == owner.email else owner.name,
        sender_email=owner.email,
        to_name=to_name,
        to_email=to_email,
        date=now,
        domain=owner.domain,
        in_reply_to=in_reply_to,
        references=(in_reply_to,) if in_reply_to else (),
        headers={"Auto-Submitted": auto, "X-Auto-Response-Suppress": "All"},
    )


def _page(subject: str, text: str) -> Rendered:
    body = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in text.split("\n\n"))
    return Rendered(
        subject=subject, text=text, html=f"<html><body>{body}</body></html>", front={}, template=""
    )


def _describe(conversation: Mapping[str, Any], name: str) -> tuple[str, str]:
    who = f"{name} <{conversation.get('contact')}>" if name else str(conversation.get("contact"))
    kind = conversation.get("kind", "message")
    subject = conversation.get("subject", "")
    actions = "; ".join(conversation.get("actions", [])) or "logged"
    text = conversation.get("text") or ""
    lines = [f"{who} — {kind}: “{subject}”", f"What toma did: {actions}."]
    if text:
        lines += ["", text.strip()]
    lines += ["", f"The whole conversation: toma log {conversation.get('contact')}"]
    return f"{kind.capitalize()} from {name or conversation.get('contact')}: {subject}", "\n".join(
        lines
    )


def _inbound(conversation: Mapping[str, Any], name: str) -> Rendered:
    subject, text = _describe(conversation, name)
    return _page(subject, text)


def _digest(items: list[Mapping[str, Any]]) -> Rendered:
    parts = [_describe(item, item.get("name", ""))[1] for item in items]
    subject = f"toma: {len(items)} message(s) came in"
    return _page(subject, "\n\n---\n\n".join(parts) or "Nothing came in.")


def _unsubscribed(config: Config) -> Rendered:
    owner = config.owner
    first = owner.name.split()[0] if owner.name else ""
    text = (
        "Hi,\n\n"
        "you will not get any more of these emails from me — you are unsubscribed.\n\n"
        "If that was a mistake, or you would like to hear from me again one day, just "
        f"write to me at {owner.email}.\n\n"
        f"All the best,\n{owner.signature or first}"
    )
    return _page("You are unsubscribed", text)
