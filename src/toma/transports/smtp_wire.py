"""The parts of SMTP delivery that need no connection: pacing, the DATA payload, checks.

Kept apart from the connection pool (:mod:`toma.transports.smtp`) because each is
a small rule with tests of its own and none holds state beyond the rate limiter.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from pathlib import Path

from aiosmtplib import SMTPResponse

from toma.errors import TransportError
from toma.transports.base import Envelope, Outcome, Result, one_line

_LINE_END = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)
# Whitespace, controls and angle brackets would break out of "<address>" on the
# command line; such an envelope is refused before anything is sent.
_BAD_ADDRESS = re.compile(r"[\x00-\x20\x7f<>]")


class RateLimiter:
    """At most ``per_minute`` messages a minute, evenly spaced, shared by all connections.

    A token bucket holding one token: each acquisition reserves the next free
    slot ``60 / per_minute`` seconds after the previous one. Holding a single
    token means no burst after a quiet spell, so the limit holds over any
    window, which is what a provider's per-minute quota checks.
    """

    def __init__(self, per_minute: int) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self._interval = 60.0 / per_minute
        self._next = 0.0

    async def acquire(self) -> None:
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next)
        # Reserve before sleeping: concurrent callers get successive slots.
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


def default_tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Certificate and host name checks on; only ``ca_file`` trusted when given."""
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise TransportError(
            f"cannot use the CA file {ca_file}: {exc}", key="smtp.ca_file"
        ) from None


def wire_format(data: bytes) -> bytes:
    """The DATA payload: CRLF line endings, leading dots doubled, the final ``.`` line."""
    # What toma builds already ends every line in CRLF; counting is much cheaper
    # than rewriting every line ending to find that out.
    plain = data.count(b"\r\n") == data.count(b"\r") == data.count(b"\n")
    body = data if plain else _LINE_END.sub(b"\r\n", data)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    if body.startswith(b".") or b"\n." in body:
        body = _LEADING_DOT.sub(b"..", body)
    return body + b".\r\n"


def local_hostname() -> str:
    name = socket.getfqdn()
    if not name or not name.isascii() or any(c.isspace() or c in "<>[]" for c in name):
        return "localhost"
    return name


def reply_text(response: SMTPResponse) -> str:
    return one_line(f"{response.code} {response.message}")


def failure(key: str, code: int, detail: str) -> Result:
    """A refusal before the body went out: 5xx is final, anything else is retryable."""
    outcome = Outcome.PERMANENT if 500 <= code < 600 else Outcome.TEMPORARY
    return Result(key=key, outcome=outcome, code=code, detail=one_line(detail))


def check_envelope(envelope: Envelope) -> Result | None:
    """A PERMANENT result for an envelope no server could take, else None."""
    if not envelope.recipients:
        return Result(envelope.key, Outcome.PERMANENT, None, "no recipients")
    for address in (envelope.sender, *envelope.recipients):
        if _BAD_ADDRESS.search(address):
            return Result(
                envelope.key, Outcome.PERMANENT, None, f"not a usable address: {address!r}"
            )
    for address in envelope.recipients:
        if not address:
            return Result(envelope.key, Outcome.PERMANENT, None, "an empty recipient")
    return None
