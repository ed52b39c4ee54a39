"""Outgoing mail: one interface, an SMTP and a Maildir implementation.

::

    async with transport_for(config) as transport:
        results = await send_all(transport, envelopes, on_result=record,
                                 retry_until=timedelta(minutes=5), stop=stopping)

See :mod:`toma.transports.base` for what each outcome promises.
"""

from __future__ import annotations

import ssl
from datetime import datetime

from toma.config import Config
from toma.core.refusals import Refusals
from toma.errors import TransportError
from toma.transports.base import (
    Backoff,
    Envelope,
    Handing,
    Outcome,
    Result,
    ResultCallback,
    Transport,
    send_all,
)
from toma.transports.maildir import MaildirTransport
from toma.transports.smtp import RateLimiter, SmtpTransport

__all__ = [
    "Backoff",
    "Envelope",
    "Handing",
    "MaildirTransport",
    "Outcome",
    "RateLimiter",
    "Refusals",
    "Result",
    "ResultCallback",
    "SmtpTransport",
    "Transport",
    "send_all",
    "transport_for",
]


def transport_for(
    config: Config,
    *,
    ssl_context: ssl.SSLContext | None = None,
    refusals: Refusals | None = None,
    now: datetime | None = None,
) -> Transport:
    """The transport ``[transport]`` names: ``smtp`` with ``[smtp]``, or ``maildir`` at ``path``.

    A tick passes the :class:`Refusals` the store keeps and its moment, so that a password
    the server refused is not tried again at every tick.
    """
    if config.transport.kind == "smtp":
        return SmtpTransport(config.smtp, ssl_context=ssl_context, refusals=refusals, now=now)
    if config.transport.kind == "maildir":
        if config.transport.path is None:
            raise TransportError(
                "a maildir transport needs a path", file=str(config.file), key="transport.path"
            )
        return MaildirTransport(config.transport.path)
    raise TransportError(
        f"unknown transport kind {config.transport.kind!r}",
        file=str(config.file),
        key="transport.kind",
    )
