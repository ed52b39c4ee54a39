"""The inbox end to end: a real Dovecot, messages put there by IMAP APPEND, the daemon's tick.

What people send back — a reply, an out-of-office, a bounce, a request to stop —
changes what toma does next, exactly once, however often the inbox is read.
"""

from __future__ import annotations

import email
import json
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from toma.cli import main
from toma.store import CONTACTS, CONVERSATIONS, ENROLMENTS, MESSAGES

from . import dovecot
from .dovecot import Dovecot
from .projects import make_project, table, tick

dovecot_server = dovecot.dovecot_server

pytestmark = pytest.mark.timeout(60)

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
PEOPLE = ("threaded", "plain", "away", "gone", "stop", "holiday")


def project(tmp_path: Path, server: Dovecot, folder: str) -> Path:
    config = make_project(tmp_path, steps=(("hello", "0h"), ("again", "1w")), now=NOW)
    imap = server.imap_config(folder=folder)
    text = config.read_text()
    config.write_text(
        text.replace(
            "[windows.default]",
            '[inbox]\nkind = "imap"\n\n'
            f'[imap]\nhost = "{imap.host}"\nport = {imap.port}\nsecurity = "none"\n'
            f'username = "{imap.username}"\npassword_file = "{imap.password.file}"\n'
            f'folder = "{folder}"\n\n[windows.default]',
        )
        .replace(
            'days = ["mon","tue","wed","thu","fri","sat","sun"]',
            'days = ["mon","tue","wed","thu","fri"]',
        )
        .replace('start = "00:00"', 'start = "09:01"')
        .replace('end = "23:59"', 'end = "16:59"')
    )
    for name in PEOPLE:
        result = CliRunner().invoke(
            main,
            [
                "--config",
                str(config),
                "contacts",
                "add",
                f"{name}@example.org",
                "--first-name",
                name.title(),
                "--tag",
                "friend",
                "--timezone",
                "Europe/Berlin",
            ],
        )
        assert result.exit_code == 0, result.output
    return config


def sent_ids(config: Path) -> dict[str, str]:
    """Recipient → Message-ID of what toma wrote to the outbox."""
    found = {}
    for path in (config.parent / "var" / "outbox" / "new").iterdir():
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        found[message["To"].addresses[0].addr_spec] = message["Message-ID"]
    return found


def mail(sender: str, subject: str, body: str, *, headers: str = "", number: int) -> bytes:
    return (
        f"From: {sender.split('@')[0].title()} <{sender}>\r\nTo: Alex <alex@example.com>\r\n"
        f"Subject: {subject}\r\nMessage-ID: <in-{number}@example.org>\r\n"
        f"Date: Tue, 03 Mar 2026 09:00:00 +0100\r\n{headers}"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def bounce_for(address: str, original_id: str, number: int) -> bytes:
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n"
        "To: alex@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <in-{number}@mx.example.org>\r\nDate: Tue, 03 Mar 2026 09:00:00 +0100\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain\r\n\r\n"
        "I'm sorry to have to inform you that your message could not be delivered "
        f"to {address}.\r\n"
        "--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {address}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
        "--b1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: Alex <alex@example.com>\r\nTo: {address}\r\nMessage-ID: {original_id}\r\n"
        "Subject: Hello\r\n--b1--\r\n"
    ).encode()


def test_what_comes_back_changes_what_goes_next(tmp_path: Path, dovecot_server: Dovecot) -> None:
    folder = dovecot_server.new_folder()
    config = project(tmp_path, dovecot_server, folder)
    tick(config, NOW)
    ids = sent_ids(config)
    assert len(ids) == len(PEOPLE)

    append = dovecot_server.append
    append(
        mail(
            "threaded@example.org",
            "Re: Hello Threaded",
            "Great to hear from you!\r\n\r\nOn Mon, Alex wrote:\r\n> Hi Threaded,",
            number=1,
            headers=f"In-Reply-To: {ids['threaded@example.org']}\r\n",
        ),
        folder=folder,
    )
    append(
        mail("plain@example.org", "coffee?", "Fancy a coffee next week?", number=2), folder=folder
    )
    append(
        mail(
            "away@example.org",
            "Out of Office: Hello Away",
            "I am away with limited access to email.",
            number=3,
            headers="Auto-Submitted: auto-replied\r\n",
        ),
        folder=folder,
    )
    append(bounce_for("gone@example.org", ids["gone@example.org"], 4), folder=folder)
    append(
        mail(
            "stop@example.org",
            "Re: Hello Stop",
            "Please unsubscribe me.",
            number=5,
            headers=f"In-Reply-To: {ids['stop@example.org']}\r\n",
        ),
        folder=folder,
    )
    append(
        mail(
            "holiday@example.org",
            "Automatic reply: Hello Holiday",
            "Thank you for your message. I am on holiday and will be back on 23 March 2026.",
            number=6,
            headers="Auto-Submitted: auto-replied\r\n",
        ),
        folder=folder,
    )

    tick(config, NOW + timedelta(hours=1))
    enrolments = {doc["contact"]: doc["state"] for doc in table(config, ENROLMENTS).values()}
    contacts = table(config, CONTACTS)
    conversations = table(config, CONVERSATIONS)
    assert len(conversations) == 6
    assert enrolments["threaded@example.org"] == "stopped"  # by In-Reply-To
    assert enrolments["plain@example.org"] == "stopped"  # by the sender's address
    assert enrolments["away@example.org"] == "active"  # an out-of-office is no reply
    assert contacts["gone@example.org"]["status"] == "bounced"
    assert contacts["stop@example.org"]["status"] == "unsubscribed"
    by_contact = {doc["contact"]: doc for doc in conversations.values()}
    assert by_contact["threaded@example.org"]["matched_by"] == "in-reply-to"
    assert by_contact["threaded@example.org"]["text"] == "Great to hear from you!"
    assert by_contact["plain@example.org"]["matched_by"] == "sender"

    # The owner is told of each reply; the unsubscribe is confirmed once; nobody
    # answers the out-of-office or the bounce.
    notices = [doc for doc in table(config, MESSAGES).values() if doc["kind"] == "notice"]
    to_owner = [n for n in notices if n["contact"] == "alex@example.com"]
    assert {n["state"] for n in notices} == {"sent"}
    assert len([n for n in notices if n["contact"] == "stop@example.org"]) == 1
    assert len(to_owner) == 4  # two replies, the unsubscribe, the hard bounce

    # A week on: "away" gets step two, the holiday-maker only after the day they are back.
    planned = json.loads(
        CliRunner()
        .invoke(
            main,
            [
                "--config",
                str(config),
                "plan",
                "--json",
                "--days",
                "40",
                "--now",
                (NOW + timedelta(days=6)).isoformat(),
            ],
        )
        .output
    )
    steps = {row["contact"]: row["at"] for row in planned if row["ref"] == "keep/again"}
    assert set(steps) == {"away@example.org", "holiday@example.org"}
    assert steps["away@example.org"].startswith("2026-03-09T")
    assert steps["holiday@example.org"] >= "2026-03-24"

    # A restart reads the inbox again from its cursor: nothing is logged twice.
    tick(config, NOW + timedelta(hours=2))
    assert len(table(config, CONVERSATIONS)) == 6

    # The folder's UIDVALIDITY changes (it was re-created): everything is read
    # again, and only what is new is logged.
    dovecot_server.recreate(folder)
    for number in (1, 2, 3):
        append(mail("plain@example.org", "again", "same message", number=number), folder=folder)
    append(
        mail("away@example.org", "Re: Hello Away", "Back now — let's talk.", number=7),
        folder=folder,
    )
    tick(config, NOW + timedelta(hours=3))
    conversations = table(config, CONVERSATIONS)
    assert len(conversations) == 7
    assert table(config, ENROLMENTS)["keep/away@example.org"]["state"] == "stopped"

    log = CliRunner().invoke(main, ["--config", str(config), "log", "threaded@example.org"])
    assert "Great to hear from you!" in log.output
    assert "stopped keep" in log.output
