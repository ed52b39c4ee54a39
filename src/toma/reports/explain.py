"""``toma inbox explain``: how toma reads given messages, changing nothing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from toma.config import Config
from toma.core.reading.classify import READ_BUDGET, read_message
from toma.core.reading.match import Sent, match
from toma.inbox.sync import unsubscribe_addresses
from toma.store import Reader
from toma.store.records import contacts as addressbook
from toma.store.records import outbox


def explain_files(
    files: Iterable[Path],
    *,
    config: Config | None,
    reader: Reader | None,
    now: datetime,
    clock: Callable[[], float] = time.monotonic,
) -> list[dict[str, Any]]:
    """One object per file: the shape DESIGN.md gives for ``--json``, plus the details.

    Each file is read within the daemon's reading budget, held against *clock*: a
    message the daemon would not read is explained, promptly, as not read.
    """
    unsubscribe = unsubscribe_addresses(config) if config else ()
    sent: dict[str, Sent] = {}
    contacts: set[str] = set()
    if reader is not None:
        sent = outbox.sent_index_of(reader)
        contacts = addressbook.addresses(reader)
    rows = []
    for path in files:
        reading = read_message(
            path.read_bytes(),
            unsubscribe_addresses=unsubscribe,
            now=now,
            deadline=clock() + READ_BUDGET,
            clock=clock,
        )
        found = match(reading, sent=sent, contacts=contacts)
        row: dict[str, Any] = {
            "file": str(path),
            "class": reading.kind,
            "reason": reading.reason,
            "contact": found.contact,
            "matched_by": found.via if found.contact else None,
            "answers": found.answers.ref if found.answers else None,
            "sender": reading.sender,
            "subject": reading.subject,
        }
        if reading.kind == "bounce":
            row["hard"] = bool(reading.hard)
            row["recipients"] = list(reading.recipients)
        if reading.kind in ("reply", "unsubscribe"):
            row["text"] = reading.text
        if reading.kind == "auto-reply":
            row["back_on"] = reading.back_on.isoformat() if reading.back_on else None
            row["away_until"] = reading.away_until.isoformat() if reading.away_until else None
        if reading.unread is not None:
            row["unread"] = reading.unread
        if reading.problems:
            row["problems"] = list(reading.problems)
        rows.append(row)
    return rows
