"""`toma log` shows every moment in the owner's zone, marked; --json keeps the offsets."""

from __future__ import annotations

import email
import json
import os
from datetime import UTC, datetime
from email import policy
from pathlib import Path

from .test_inbox_cli import toma
from .test_sequences_cli import make, sequence


def test_log_shows_sent_and_received_in_the_owners_zone(tmp_path: Path) -> None:
    """Toma wrote to Ken at 10:00 Berlin (stored as 09:00 UTC); Ken answered from Tokyo at
    19:30 his time (11:30 Berlin), and it arrived then. Both read in Berlin time, marked CET,
    in that order."""
    folder = make(tmp_path, sequence("hello", "met", ("first", "0h"), ("second", "1w")))
    assert (
        toma(
            folder, "contacts", "add", "ken@example.jp", "--first-name", "Ken", "--tag", "met"
        ).exit_code
        == 0
    )
    assert toma(folder, "run", "--once", "--now", "2026-03-02T10:00:00+01:00").exit_code == 0
    outbox = folder / "var" / "outbox" / "new"
    first = email.message_from_bytes(next(outbox.iterdir()).read_bytes(), policy=policy.default)
    inbox = folder / "var" / "inbox" / "new"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "1.k1.host").write_bytes(
        (
            "From: Ken <ken@example.jp>\r\nTo: alex@example.com\r\nSubject: Re: Hello Ken\r\n"
            f"Message-ID: <k1@example.jp>\r\nIn-Reply-To: {first['Message-ID']}\r\n"
            "Date: Mon, 02 Mar 2026 19:30:00 +0900\r\n\r\nGood to hear from you.\r\n"
        ).encode()
    )
    arrived = datetime(2026, 3, 2, 10, 30, 5, tzinfo=UTC).timestamp()  # a few seconds later
    os.utime(inbox / "1.k1.host", (arrived, arrived))
    assert toma(folder, "inbox", "sync", "--now", "2026-03-02T12:00:00+01:00").exit_code == 0

    text = toma(folder, "log", "ken@example.jp").output
    assert "Times in Europe/Berlin." in text
    sent = text.index("2026-03-02 10:00 CET  → sequence: Hello Ken")
    received = text.index("2026-03-02 11:30 CET  ← reply: Re: Hello Ken")
    assert sent < received
    assert "09:00" not in text and "19:30" not in text

    entries = json.loads(toma(folder, "log", "ken@example.jp", "--json").output)
    assert [e["at"] for e in entries] == ["2026-03-02T10:00:00+01:00", "2026-03-02T11:30:05+01:00"]
    assert all(datetime.fromisoformat(e["at"]).utcoffset() is not None for e in entries)
