"""`toma inbox explain` and `toma log` show the new text of a reply as the rules find it."""

from __future__ import annotations

import email
import json
from email import policy
from pathlib import Path

from .test_inbox_cli import toma
from .test_sequences_cli import make, sequence

# A German Gmail reply: the attribution folded before the address, a closing and
# an Outlook for Android footer — all three used to show up in the log.
TEXT = (
    "Hallo Alex,\r\n\r\ndanke, Dienstag passt mir gut.\r\n\r\nViele Grüße\r\nAnn\r\n\r\n"
    "Gesendet von Outlook für Android<https://aka.ms/AAb9ysg>\r\n\r\n"
    "Am Mo., 2. März 2026 um 10:00 Uhr schrieb Alex <\r\nalex@example.com>:\r\n\r\n"
    "> Hallo Ann, hast du nächste Woche Zeit?\r\n"
)
NEW_TEXT = "Hallo Alex,\n\ndanke, Dienstag passt mir gut."


def reply(in_reply_to: str = "") -> bytes:
    threading = f"In-Reply-To: {in_reply_to}\r\n" if in_reply_to else ""
    return (
        "From: Ann <ann@example.org>\r\nTo: alex@example.com\r\nSubject: AW: Hallo\r\n"
        "Message-ID: <r1@example.org>\r\nDate: Mon, 02 Mar 2026 12:00:00 +0100\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        f"{threading}\r\n{TEXT}"
    ).encode()


def test_explain_shows_the_new_text(tmp_path: Path) -> None:
    (tmp_path / "reply.eml").write_bytes(reply())
    result = toma(None, "inbox", "explain", "--json", str(tmp_path / "reply.eml"))
    assert result.exit_code == 0, result.output
    [answer] = json.loads(result.output)
    assert (answer["class"], answer["text"]) == ("reply", NEW_TEXT)


def test_log_shows_the_new_text(tmp_path: Path) -> None:
    folder = make(tmp_path, sequence("hello", "met", ("first", "0h"), ("second", "1w")))
    assert (
        toma(
            folder, "contacts", "add", "ann@example.org", "--first-name", "Ann", "--tag", "met"
        ).exit_code
        == 0
    )
    assert toma(folder, "run", "--once", "--now", "2026-03-02T10:00:00+01:00").exit_code == 0
    outbox = folder / "var" / "outbox" / "new"
    first = email.message_from_bytes(next(outbox.iterdir()).read_bytes(), policy=policy.default)
    inbox = folder / "var" / "inbox" / "new"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "1.r1.host").write_bytes(reply(first["Message-ID"]))
    assert (
        "1 recorded" in toma(folder, "inbox", "sync", "--now", "2026-03-02T13:00:00+01:00").output
    )
    log = toma(folder, "log", "ann@example.org").output
    assert "| danke, Dienstag passt mir gut." in log
    for gone in ("Viele Grüße", "Outlook", "schrieb", "nächste Woche"):
        assert gone not in log
