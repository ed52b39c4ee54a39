"""Exit codes: what a script or a monitor learns from toma's exit status.

One table for every command::

    0   OK         done; nothing needs you
    1   ERROR      the command could not do what was asked: an error it names
                   (a file, a line, a contact), or problems ``toma check`` found
    2   USAGE      the command line itself is wrong (click's own code)
    3   WARNINGS   ``toma check`` found nothing wrong, but something to look at:
                   a template a sequence sends reads like a pitch. It blocks
                   nothing; errors, when there are any too, give 1
    75  RETRY      could not do all its work for a reason that passes by itself:
                   a server unreachable, a 4xx answer, a timeout. toma tries
                   again at the next tick; nothing for you to do unless it lasts
                   (EX_TEMPFAIL of sysexits.h)
    78  NEEDS_YOU  something only you can fix: a login refused, a certificate
                   not trusted, a 5xx answer, a message in doubt, a broken
                   config, sequence or template holding mail (EX_CONFIG)

``NEEDS_YOU`` wins over ``RETRY``: a run with both needs you. The rules
themselves are pure functions of the tick's report and the status, so that
``toma run --once`` and ``toma status`` judge a tick the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import IntEnum
from typing import Any

from toma.transports.base import Outcome, Result


class Exit(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    WARNINGS = 3
    RETRY = 75
    NEEDS_YOU = 78


# How long a failed message or a message set aside by the inbox keeps `toma status`
# non-zero: long enough for a monitor to see it, short enough that one old failure
# does not keep it red for ever (`toma status` lists them all regardless).
ATTENTION_FOR = timedelta(days=7)

REASONS_KEPT = 10  # reasons recorded per tick and per kind; the log has every one


def worst(codes: Iterable[Exit]) -> Exit:
    """The code that matters most: NEEDS_YOU, then RETRY, then the rest by value; WARNINGS last."""
    order = {Exit.NEEDS_YOU: 3, Exit.RETRY: 2, Exit.WARNINGS: 0}
    found = list(codes)
    return max(found, key=lambda code: (order.get(code, 1 if code else 0), code), default=Exit.OK)


def for_result(result: Result) -> Exit:
    """What one message's final result in a tick means for the exit status.

    A refused login or an untrusted certificate comes back as a temporary
    result (nothing was sent, the message is planned again), but waiting will
    not fix it: it needs you. So does any 5xx, and a message in doubt.
    """
    if result.outcome in (Outcome.SENT, Outcome.WITHDRAWN):
        return Exit.OK
    if result.outcome in (Outcome.PERMANENT, Outcome.UNKNOWN):
        return Exit.NEEDS_YOU
    if result.code is not None and 500 <= result.code < 600:
        return Exit.NEEDS_YOU
    if "certificate verify failed" in result.detail.lower():
        return Exit.NEEDS_YOU
    return Exit.RETRY


def note(reasons: list[str], reason: str) -> None:
    """Add ``reason`` once, keeping at most :data:`REASONS_KEPT`."""
    if reason not in reasons and len(reasons) < REASONS_KEPT:
        reasons.append(reason)


def for_tick(tick: Mapping[str, Any]) -> Exit:
    """The exit status of ``toma run --once`` for a tick's stored report.

    Every problem of the tick needs you unless it was marked temporary (an
    inbox out of reach); messages failed or in doubt need you; messages
    planned again need only time, unless their reason (a refused login) needs
    you.
    """
    temporary = set(tick.get("temporary") or [])
    if (
        tick.get("needs_you")
        or tick.get("failed")
        or tick.get("unknown")
        or tick.get("held")
        or any(problem not in temporary for problem in tick.get("problems") or [])
    ):
        return Exit.NEEDS_YOU
    if temporary or tick.get("retrying"):
        return Exit.RETRY
    return Exit.OK


def for_status(
    *,
    last_tick: Mapping[str, Any] | None,
    unknown: int,
    failed_at: Iterable[datetime],
    retrying: int,
    set_aside_at: Iterable[datetime],
    journal_damage_at: datetime | None,
    now: datetime,
) -> tuple[Exit, list[str]]:
    """The exit status of ``toma status``, and why, in a few words each.

    Needs you: messages in doubt (until released or forgotten), messages
    failed and inbox mail set aside within :data:`ATTENTION_FOR`, a journal
    tail cut within it, and a last tick that needed you (held sequences
    included). Retry: messages waiting for a retry, or a last tick that
    could not reach a server.
    """
    since = now - ATTENTION_FOR
    why: list[str] = []
    needs: list[str] = []
    if unknown:
        needs.append(f"{unknown} message(s) in doubt")
    failed = sum(1 for at in failed_at if at >= since)
    if failed:
        needs.append(f"{failed} message(s) failed in the last {ATTENTION_FOR.days} days")
    aside = sum(1 for at in set_aside_at if at >= since)
    if aside:
        needs.append(f"{aside} inbox message(s) set aside in the last {ATTENTION_FOR.days} days")
    if journal_damage_at is not None and journal_damage_at >= since:
        needs.append("the journal lost a torn last line")
    tick = for_tick(last_tick) if last_tick is not None else Exit.OK
    if tick is Exit.NEEDS_YOU:
        needs.append("the last tick needs you")
    if needs:
        return Exit.NEEDS_YOU, needs
    if retrying:
        why.append(f"{retrying} message(s) waiting to retry")
    if tick is Exit.RETRY:
        why.append("the last tick could not reach a server")
    return (Exit.RETRY, why) if why else (Exit.OK, [])
