"""Logging set-up for the command line: one line per event, ``event key=value``.

Library modules only call ``logging.getLogger(__name__)`` and log an event
name with structured fields: ``log.info("sent", extra=fields(contact=…))``.
This module, called once by the CLI, decides how those lines look: plain text
for people, one JSON object per line for machines.
"""

from __future__ import annotations

import json
import logging
import sys
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


def configure(*, json_lines: bool = False, verbose: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger("toma")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
