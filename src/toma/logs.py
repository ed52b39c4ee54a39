"""Logging set-up for the command line: one line per event, ``event key=value``.

Library modules only call ``logging.getLogger(__name__)`` and log an event
name with structured fields: ``log.info("sent", extra=fields(contact=…))``.
This module, called once by the CLI, decides how those lines look: plain text
for people, one JSON object per line for machines.

Under systemd, stderr goes to the journal, which reads a ``<N>`` prefix on a
line as its syslog priority (``journalctl -p warning`` then shows warnings and
worse). systemd names the stream it connected in ``JOURNAL_STREAM``
(``device:inode``); the prefix is added only when stderr is that stream, not
when a program started by the unit redirected it elsewhere.

Levels: ``info`` for what the daemon did as planned, ``warning`` for what it
will retry or work around (a server that did not answer, a torn journal tail),
``error`` for what needs the owner (a sequence held, a tick that failed).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


def fields(**values: Any) -> dict[str, Any]:
    """Structured fields for a log call: ``log.info("sent", extra=fields(contact=…))``."""
    return {"toma": values}


def _values(record: logging.LogRecord) -> dict[str, Any]:
    values = getattr(record, "toma", None)
    return dict(values) if isinstance(values, dict) else {}


def _quote(value: Any) -> str:
    text = str(value)
    if not text or any(ch in text for ch in ' "=\n\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%d %H:%M:%S")
        pairs = " ".join(f"{k}={_quote(v)}" for k, v in _values(record).items() if v is not None)
        line = f"{stamp} {record.levelname.lower():7} {record.getMessage()}"
        if pairs:
            line += " " + pairs
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
        }
        entry.update({k: v for k, v in _values(record).items() if v is not None})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


# syslog priorities (sd-daemon(3)): what journald reads from a "<N>" line prefix.
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def priority(level: int) -> int:
    """The syslog priority of a logging level: 2 critical … 6 info, 7 debug."""
    return next((prio for floor, prio in _PRIORITIES if level >= floor), 7)


class JournalPrefix(logging.Formatter):
    """Another formatter's line behind journald's ``<N>`` priority prefix."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        # Each line of a traceback is an entry of its own in the journal: each keeps the level.
        return "\n".join(prefix + line for line in self.inner.format(record).split("\n"))


def journal_stream(stream: Any, environ: Mapping[str, str]) -> bool:
    """Whether ``stream`` is the journal stream systemd names in ``JOURNAL_STREAM``."""
    named = environ.get("JOURNAL_STREAM", "")
    device, _, inode = named.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        status = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return (status.st_dev, status.st_ino) == (int(device), int(inode))


def configure(*, json_lines: bool = False, verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter = JsonFormatter() if json_lines else TextFormatter()
    if journal_stream(sys.stderr, os.environ):
        formatter = JournalPrefix(formatter)
    handler.setFormatter(formatter)
    root = logging.getLogger("toma")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
