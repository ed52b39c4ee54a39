"""Bounces: is this a delivery failure, for whom, and is it for good?

Theory of operation. A bounce is recognised in three tiers:

1. An RFC 3464 report (a ``message/delivery-status`` part). Its per-recipient
   blocks say which address failed (``Original-Recipient``, the address we sent
   to, else ``Final-Recipient``), whether delivery ``failed`` or is only
   ``delayed``, and the status code. This is read here with the standard library.
2. Everything else that looks like a bounce by who sent it (MAILER-DAEMON,
   postmaster, an empty return path), by its subject ("Undelivered Mail Returned
   to Sender", "Delivery Status Notification (Failure)", "failure notice", …), by
   an ``X-Failed-Recipients`` header, or by the phrases delivery software writes.
   For these, flufl.bounce's detectors (qmail, Exim, old Sendmail, Exchange,
   Yahoo, SMTP32, GroupWise, …) name the failed recipients; where they find
   nothing, the addresses the notice itself points at are taken.
3. Whether a failure is hard (the address is dead: 5.x.x, "user unknown") or soft
   (4.x.x, delayed, mailbox full, retries exhausted) comes from the status codes
   first and the notice's wording second. A full mailbox is soft even when the
   server called it permanent: the person is still there.

Only the notice is read for all this, never the returned copy of our own
message — which may well contain "unknown" or an address of its own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any

from toma.core.reading import mimetext, plaintext
from toma.core.reading.dsn import BASIC, ENHANCED, MAILBOX_FULL, Recipient, dsn_blocks, read_dsn

_Detector = Callable[[Any], tuple[frozenset[bytes], frozenset[bytes]]]
all_failures: _Detector | None
try:  # flufl.bounce is optional: without it the notice text is read by our own rules
    from flufl.bounce import all_failures
except ImportError:  # pragma: no cover - exercised only where the library is absent
    all_failures = None

# flufl.bounce logs every detector it runs at INFO level, and a full traceback
# whenever a detector trips over malformed mail (it then skips that detector
# and carries on).  Both are noise for a daemon reading untrusted mail.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

_DAEMON_LOCAL = re.compile(
    r"^(?:mailer-daemon|mailer_daemon|maildaemon|postmaster|mail-daemon|mdaemon|"
    r"mail\.delivery\.system|mail-delivery-system|e500_smtp_mail_service|ndr|"
    r"bounce[sd]?|nobody|root|symantec_antivirus_for_smtp_gateways|imss)$",
    re.IGNORECASE,
)
_DAEMON_NAME = re.compile(
    r"mail delivery (?:system|subsystem|service)|mailer.?daemon|postmaster|"
    r"internet mail delivery|mail administrator|system administrator|delivery subsystem|"
    r"microsoft outlook|mail delivery",
    re.IGNORECASE,
)
_SUBJECT = re.compile(
    r"^\s*(?:\[[^\]]*\]\s*)?(?:"
    r"undeliver(?:ed|able)|returned mail|mail delivery fail|delivery (?:status )?notification|"
    r"delivery fail|delivery report|delivery problem|failure notice|failure delivery|"
    r"mail not delivered|mail system error|non.?delivery|delivery has failed|"
    r"message delayed|delayed mail|warning: (?:could not send|message .* delayed)|"
    r"unzustellbar|nicht zustellbar|rückläufige nachricht|non recapitabile|"
    r"impossible de remettre|non remis|mensaje no entregado|no se puede entregar|"
    r"onbestelbaar|olevererbart|ikke leveret|permanent delivery failure|"
    r"could not send message|mail could not be delivered|message not delivered|"
    r"returned to sender|delivery failure|failed mail|mail delivery problem|"
    r"undelivered mail|delivery status|mail error|processing error|"
    r"your message .{0,80} could not be delivered|automatically rejected mail|"
    r"mail failed|returning (?:message )?to sender|delivery warning|"
    r"не доставлено|недоставленное|недоставлено|未能送达|退信|无法投递|配信エラー|"
    r"送信できませんでした|配信できませんでした|宛先不明"
    r")",
    re.IGNORECASE,
)
# The same words anywhere in a subject ("RE: … : non remis") count for less.
_SUBJECT_ANYWHERE = re.compile(
    r"undeliver|non remis|delivery fail|not delivered|nicht zugestellt|returned mail|"
    r"delivery status notification|mail delivery",
    re.IGNORECASE,
)
_NOTICE_PHRASES = re.compile(
    r"could not be delivered|couldn't be delivered|was not delivered|wasn't able to deliver|"
    r"unable to deliver|undeliverable|delivery (?:has )?failed|delivery to the following|"
    r"did not reach the following|permanent (?:fatal )?error|failed permanently|"
    r"following address(?:es|\(es\))? (?:had|failed)|this is the (?:postfix|mail|qmail)|"
    r"created automatically by mail delivery software|mail delivery (?:failed|system)|"
    r"delivery status notification|the following recipients|recipient address rejected|"
    r"user unknown|unknown user|no such user|mailbox (?:unavailable|full|is full)|"
    r"has not yet been delivered|not yet been delivered|delayed|will be retried|"
    r"returned to you|returned mail|message could not be delivered|not delivered to|"
    r"konnte nicht zugestellt|n'a pas pu (?:être|etre) (?:remis|delivre)|no pudo ser entregado|"
    r"failed addresses|has been postponed|was rejected|not accepted|invalid mailbox|"
    r"无法发送|无法送达|無法送達|邮件无法|郵件無法|配信できません|送信できません|"
    r"письмо не может быть доставлено|не может быть доставлено",
    re.IGNORECASE,
)
# Where the notice ends and the returned copy of the original message begins.
_ORIGINAL_START = re.compile(
    r"^\s*(?:-{2,}\s*)?(?:"
    r"below this line is a copy of the message|this is a copy of the message|"
    r"original message (?:follows|headers?)|original message|the original message was|"
    r"message header follows|returned message|start of returned message|"
    r"the header of the original message|a copy of the original message|"
    r"unsent message below|included is a copy|header of the source mail|"
    r"original message details|original message headers|message headers follow|"
    r"the first \d+ lines of your original message|forwarded message|mensaje original|"
    r"copy of your message|returned mail follows|message text follows|"
    r"original message as received|attachment is a copy of the message|"
    r"your message reads \(in part\)|a summary of the undelivered message"
    r")",
    re.IGNORECASE,
)
_HEADER_LINE = re.compile(r"^(?:return-path|received|message-id|dkim-signature|x-[\w-]+):", re.I)
_SOFT_WORDS = re.compile(
    r"quota|mailbox (?:is )?full|mailbox full|mail ?box space|mailfolder is full|storage|"
    r"over ?quota|exceed(?:ed|s)? (?:its|the|their|his|her)? ?(?:storage|size|limit)|"
    r"too much mail|disk space|insufficient|"
    r"delayed|delay\b|will be retried|will continue|not yet been delivered|has not yet|"
    r"still being retried|warning|temporar|try again|timed? ?out|deferred|"
    r"retry timeout|retries exceeded|maximum delivery attempts|delivery attempts|"
    r"attempts:|failed \d+ attempts|could not be delivered for|not reachable within|"
    r"queue too long|in the queue too long|queue period|connection refused|"
    r"no answer from host|can't connect|could not connect|not responding|"
    r"processing error|please try to resend",
    re.IGNORECASE,
)
_HARD_WORDS = re.compile(
    r"user unknown|unknown user|no such (?:user|mailbox|address|recipient|domain)|"
    r"does not exist|doesn't exist|not exist|invalid (?:recipient|address|mailbox|user)|"
    r"recipient (?:address )?rejected|address rejected|unknown (?:recipient|address|or illegal)|"
    r"not (?:recognized|found|known|listed)|no mailbox|disabled|discontinued|deactivated|"
    r"host not found|domain not found|unknown host|no valid recipients|bad destination|"
    r"unable to relay|relay(?:ing)? denied|not accepting mail|blocked|rejected|"
    r"addressee unknown|invalid final delivery|undeliverable|permanent|looping|too many hops|"
    r"wrong or no longer valid|has not been collected|no longer",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class BounceReport:
    """What a bounce says: why we think so, the failed addresses, and how final it is."""

    reason: str
    hard: bool | None
    recipients: tuple[str, ...]


def read_bounce(
    msg: Message,
    *,
    sender: str | None,
    sender_name: str,
    subject: str,
    headers: Mapping[str, str],
    own: frozenset[str],
    problems: list[str],
    check: mimetext.Check = mimetext.no_check,
) -> BounceReport | None:
    """A :class:`BounceReport` if *msg* is a delivery failure or delay, else None.

    *own* holds the addresses the notice was sent to (ours): never a failed recipient.
    *check* is called between steps (see :func:`toma.core.reading.classify.read_message`).
    """
    blocks = dsn_blocks(msg, problems, check)
    notice = _notice_text(msg, problems, check)
    check()
    dsn = read_dsn(blocks, notice)
    report_type = mimetext.param(msg, "report-type")

    if dsn is not None and not dsn.failed and dsn.delivered:
        return None  # a positive delivery report: automatic, but not a failure
    signals = _signals(sender, sender_name, subject, headers, notice, report_type, blocks)
    if not signals:
        return None

    if dsn is not None and dsn.failed:
        recipients = dsn.failed
        how = f"RFC 3464 DSN, {dsn.status or 'no status'}"
    else:
        how = signals
        ignore = set(own) | ({sender} if sender else set())
        chosen = (
            mimetext.addresses([headers.get("x-failed-recipients", "")])
            or _library_recipients(msg, notice, problems, check)
            or _text_recipients(notice, ignore)
        )
        recipients = [
            Recipient(a, _hardness(_about(notice, a, chosen), subject, "", fallback=notice))
            for a in chosen
            if a not in own
        ]
        if not recipients:
            return BounceReport(
                reason=f"{how}; failed recipients not named",
                hard=_hardness(notice, subject, ""),
                recipients=(),
            )
    hard_any = any(r.hard for r in recipients)
    addresses = tuple(dict.fromkeys(r.address for r in recipients))
    return BounceReport(reason=how, hard=hard_any, recipients=addresses)


def _about(notice: str, address: str, others: list[str]) -> str:
    """The lines of a notice that speak about one failed address."""
    lines = notice.splitlines()
    lower = [line.lower() for line in lines]
    starts = [i for i, line in enumerate(lower) if address in line]
    if not starts or len(others) < 2:
        return notice
    chunk: list[str] = []
    for start in starts:
        for index in range(start, min(len(lines), start + 6)):
            if index > start and any(o in lower[index] for o in others if o != address):
                break
            chunk.append(lines[index])
    return "\n".join(chunk)


def _signals(
    sender: str | None,
    sender_name: str,
    subject: str,
    headers: Mapping[str, str],
    notice: str,
    report_type: str,
    dsn_blocks: list[dict[str, str]],
) -> str:
    """A short reason if the message is a bounce, else ""."""
    if dsn_blocks or report_type == "delivery-status":
        return "delivery status report"
    if headers.get("x-failed-recipients"):
        return "X-Failed-Recipients"
    score = 0
    parts: list[str] = []
    local = (sender or "").split("@", 1)[0]
    if (
        _DAEMON_LOCAL.match(local)
        or _DAEMON_NAME.search(sender_name)
        or (sender is None and "mailer-daemon" in sender_name.lower())
    ):
        score += 2
        parts.append(f"from {sender or sender_name or 'the mail system'}")
    if _SUBJECT.search(subject):
        score += 2
        parts.append(f"subject {subject[:50]!r}")
    elif _SUBJECT_ANYWHERE.search(subject):
        score += 1
        parts.append(f"subject {subject[:50]!r}")
    unquoted = "\n".join(
        line for line in notice[:5000].splitlines() if not line.lstrip().startswith(">")
    )
    phrase = _NOTICE_PHRASES.search(unquoted)
    if phrase:
        score += 2
        parts.append("delivery-failure wording")
        if phrase.start() < 300:
            score += 1  # a person does not open a message with "could not be delivered"
    return_path = headers.get("return-path", "").strip()
    if return_path in {"<>", ""} and "return-path" in headers:
        score += 1
    auto = headers.get("auto-submitted", "").lower()
    if "failure" in auto or "delivery" in auto:
        score += 2
    return "bounce: " + ", ".join(parts) if score >= 4 else ""


# ------------------------------------------------------------- free-text notices


# The notice is read from its first lines, each cut to LINE_LIMIT: notices are a
# few dozen short lines, and the rules below then cost at most this much each.
_NOTICE_LINES = 400


def _notice_text(msg: Message, problems: list[str], check: mimetext.Check) -> str:
    """The text of the notice itself, without the returned copy of the original."""
    body = mimetext.body(msg, problems, check)
    text = (
        body.plain
        if body.plain and body.plain.strip()
        else (plaintext.html_to_text(body.html, keep_quotes=True, check=check) if body.html else "")
    )
    lines = [line[: mimetext.LINE_LIMIT] for line in text.splitlines()[:_NOTICE_LINES]]
    for index, line in enumerate(lines):
        if index > 0 and (_ORIGINAL_START.match(line) or _HEADER_LINE.match(line)):
            return "\n".join(lines[:index])
    return "\n".join(lines)


# flufl.bounce's detectors read every line of every part, each with some fifty
# patterns, in one call that no budget can interrupt (300,000 empty lines: 14 s).
# They are given only messages of a size real bounces have — the biggest in the
# corpus is 8 KB and 190 lines; a returned copy of a long message stays well
# under these — and bigger ones are read by the rules below alone.
_DETECTOR_BYTES = 256 * 1024
_DETECTOR_LINES = 5000


def _detectable(msg: Message, check: mimetext.Check) -> bool:
    """True if *msg* is small enough for flufl.bounce's detectors to read quickly."""
    size = lines = 0
    walked = mimetext.walk(msg, into_attached=True, leaves=False, check=check)
    for parts, part in enumerate(walked, start=1):
        payload = mimetext.raw_payload(part)
        size += len(payload)
        lines += payload.count("\n")
        if size > _DETECTOR_BYTES or lines > _DETECTOR_LINES or parts >= mimetext.PART_LIMIT:
            return False
    return True


def _library_recipients(
    msg: Message, notice: str, problems: list[str], check: mimetext.Check
) -> list[str]:
    if all_failures is None:
        return []
    if not _detectable(msg, check):
        problems.append("too big for the bounce detectors: read by the notice's wording alone")
        return []
    try:
        temporary, permanent = all_failures(msg)
    except Exception as exc:  # noqa: BLE001 - a detector tripping on odd input is not our failure
        problems.append(f"bounce detector failed: {type(exc).__name__}")
        return []
    found: list[str] = []
    for raw in sorted(permanent) + sorted(temporary):
        address = mimetext.normalise_address(raw.decode("ascii", "replace"))
        if address and address not in found:
            found.append(address)
    # The detectors read the whole message, returned copy included; an address the
    # notice never mentions is usually one from those returned headers.
    text = notice.lower()
    named = [a for a in found if a in text or a.split("@", 1)[0] in text]
    return named or found


# Lines that name the failed address in the common non-standard formats.
# Written to cost time linear in the notice: "^[ \t]*", not "^\s*", which ran on
# over every following empty line from each line start (16 K newlines: 19 s); and
# an address's parts bounded, as an address's are ({1,254} before the "@", {1,255}
# after), where "+" scanned to the end of a long word from each place a keyword
# matched in it (64 KB of "mailbox": 3.5 s); and "\s*(?::\s*)?" for "\s*:?\s*", the
# same text without two runs of spaces side by side.
_NAMED = [
    re.compile(p, re.IGNORECASE | re.MULTILINE)
    for p in (
        r"^[ \t]*<([^<>\s]{1,254}@[^<>\s]{1,255})>[ \t]*:",  # qmail, Postfix, Yahoo
        r"^[ \t]*<([^<>\s]{1,254}@[^<>\s]{1,255})>[ \t]*(?:\(|$)",  # Sendmail, Netscape
        r"(?:recipient address|failed recipient|original address|unknown user|"
        r"undeliverable address|intended recipient|invalid final delivery userid|"
        r"error-for|delivery failed \d+ attempts|undeliverable\s+to|addressed to|"
        r"your message to|message to|mailbox|recipient)\s*(?::\s*)?'?<?\[?(?:smtp:)?"
        r"([^\s<>\[\]'\"(),;]{1,254}@[^\s<>\[\]'\"(),;]{1,255})",
        r"^[ \t]*(?:\*[ \t]*|-{1,2}[ \t]*)?([^\s<>@]{1,254}@[^\s<>@:]{1,255}?)\.?[ \t]*"
        r"(?:\.\.\.|on\s+\w{3},|on\s+\d|$|:|\s+-)",
    )
]


def _text_recipients(notice: str, ignore: set[str]) -> list[str]:
    """Failed addresses named in a notice that has no machine-readable report."""
    found: list[str] = []
    for pattern in _NAMED:
        for match in pattern.finditer(notice):
            address = mimetext.normalise_address(match.group(1))
            if (
                address
                and address not in ignore
                and not _is_system(address)
                and address not in found
            ):
                found.append(address)
        if found:
            return found
    return found


def _is_system(address: str) -> bool:
    return bool(_DAEMON_LOCAL.match(address.split("@", 1)[0]))


def _hardness(notice: str, subject: str, status: str, *, fallback: str = "") -> bool:
    """Hard or soft, from the codes and words of a notice (or of its lines about one address)."""
    if (
        fallback
        and notice is not fallback
        and not (
            ENHANCED.search(notice)
            or BASIC.search(notice)
            or _SOFT_WORDS.search(notice)
            or _HARD_WORDS.search(notice)
        )
    ):
        notice = fallback  # the lines about this address say nothing: read the whole notice
    text = f"{subject}\n{notice[:8000]}"
    enhanced = [m.group(0) for m in ENHANCED.finditer(text) if m.group(1) in "45"]
    if status:
        enhanced.insert(0, status)
    if any(code.startswith("5") and not code.startswith("5.2.2") for code in enhanced):
        return not MAILBOX_FULL.search(text)
    if enhanced:
        return False  # only 4.x.x or 5.2.2 (mailbox full)
    if MAILBOX_FULL.search(text):
        return False
    basic = [m.group(1) for m in BASIC.finditer(text)]
    if "5" in basic:
        return not _SOFT_WORDS.search(text) or bool(_HARD_WORDS.search(text))
    if "4" in basic:
        return False
    return not (
        _SOFT_WORDS.search(text)
        and not re.search(
            r"user unknown|unknown user|no such user|does not exist|no mailbox", text, re.IGNORECASE
        )
    )
