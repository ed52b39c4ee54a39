"""Outsiders cannot decide for your contacts: forged bounces, and other people on a thread.

A real Dovecot, messages put there by IMAP APPEND as mail arrives, the daemon's
tick reading them. Each attack first, then the genuine case that must still work.
"""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from toma.cli import main
from toma.mail.unsubscribe import SECRET_FILE, Unsubscribe, load_or_create_secret
from toma.store import CONTACTS, CONVERSATIONS, ENROLMENTS, MESSAGES

from . import dovecot
from .dovecot import Dovecot
from .projects import make_project, table, tick

dovecot_server = dovecot.dovecot_server

pytestmark = pytest.mark.timeout(90)

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
MIRA = "mira.lang@example.org"
JONAS = "jonas.brandt@example.net"
OWNER = "alex@example.com"


def project(tmp_path: Path, server: Dovecot, folder: str) -> Path:
    """Mira gets a keep-in-touch sequence; Jonas only owes an invoice, due on 16 March."""
    config = make_project(tmp_path, steps=(("hello", "0h"), ("again", "4w")), now=NOW)
    imap = server.imap_config(folder=folder)
    stages = '{ at = "0d", template = "invoices/r.md" }, { at = "+7d", template = "invoices/r.md" }'
    config.write_text(
        config.read_text().replace(
            "[windows.default]",
            '[inbox]\nkind = "imap"\n\n'
            f'[imap]\nhost = "{imap.host}"\nport = {imap.port}\nsecurity = "none"\n'
            f'username = "{imap.username}"\npassword_file = "{imap.password.file}"\n'
            f'folder = "{folder}"\n\n'
            f'[invoices]\nterms = "14d"\nstages = [{stages}]\npause_on_reply = "7d"\n\n'
            "[windows.default]",
        )
    )
    (tmp_path / "templates" / "invoices").mkdir()
    (tmp_path / "templates" / "invoices" / "r.md").write_text(
        "---\nsubject: Invoice {{ invoice.number }}\n---\nHi {{ contact.first_name }}, "
        "invoice {{ invoice.number }} is due {{ invoice.due }}.\n"
    )
    assert (
        toma(
            config,
            "contacts",
            "add",
            MIRA,
            "--first-name",
            "Mira",
            "--tag",
            "friend",
            "--timezone",
            "Europe/Berlin",
        ).exit_code
        == 0
    )
    assert (
        toma(
            config, "contacts", "add", JONAS, "--first-name", "Jonas", "--timezone", "Europe/Berlin"
        ).exit_code
        == 0
    )
    result = toma(
        config,
        "invoices",
        "add",
        "2026-007",
        "--contact",
        JONAS,
        "--amount",
        "100",
        "--currency",
        "EUR",
        "--issued",
        "2026-03-02",
        "--now",
        NOW.isoformat(),
    )
    assert result.exit_code == 0, result.output
    return config


def toma(config: Path, *args: str) -> object:
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)


def outbox(config: Path) -> list[email.message.EmailMessage]:
    new = config.parent / "var" / "outbox" / "new"
    return [
        email.message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted(new.iterdir())
    ]


def sent_to(config: Path, address: str) -> list[email.message.EmailMessage]:
    return [m for m in outbox(config) if m["To"].addresses[0].addr_spec == address]


def dsn(
    sender: str,
    failed: str,
    original_id: str,
    number: int,
    *,
    status: str = "5.1.1",
    action: str = "failed",
) -> bytes:
    """A delivery status notification (multipart/report) returning the headers of a message."""
    return (
        f"From: Mail Delivery System <{sender}>\r\nTo: {OWNER}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <dsn-{number}@bounce.example>\r\nDate: Tue, 03 Mar 2026 09:00:00 +0100\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain\r\n\r\n"
        f"Your message could not be delivered to {failed}.\r\n"
        "--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {failed}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {status[0]}50 {status} mailbox problem\r\n"
        "--b1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: Alex <{OWNER}>\r\nTo: {failed}\r\nMessage-ID: {original_id}\r\n"
        "Subject: Hello\r\n--b1--\r\n"
    ).encode()


def plain_bounce(failed: str, number: int) -> bytes:
    """The old plain-text kind: no report, no returned headers."""
    return (
        "From: MAILER-DAEMON@mx.evil.example\r\n"
        f"To: {OWNER}\r\nSubject: failure notice\r\n"
        f"Message-ID: <plain-{number}@mx.evil.example>\r\n"
        "Date: Tue, 03 Mar 2026 09:00:00 +0100\r\n\r\n"
        "Hi. This is the qmail-send program at mx.evil.example.\r\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
        f"<{failed}>:\r\n550 5.1.1 user unknown\r\n"
    ).encode()


def mail(sender: str, subject: str, body: str, number: int, *, headers: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: Alex <{OWNER}>\r\nSubject: {subject}\r\n"
        f"Message-ID: <in-{number}@example.org>\r\nDate: Tue, 03 Mar 2026 09:00:00 +0100\r\n"
        f"{headers}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def status_text(config: Path) -> str:
    result = toma(config, "status")
    return str(result.output)  # type: ignore[attr-defined]


def test_forged_bounces_mark_nobody(tmp_path: Path, dovecot_server: Dovecot) -> None:
    """Bounces from Eve naming Jonas (never mailed), in both formats, and one returning Mira's
    message but naming Jonas: nobody is marked, Jonas keeps his invoice reminders, and the
    owner sees each of them in `toma status` and `toma log`."""
    folder = dovecot_server.new_folder()
    config = project(tmp_path, dovecot_server, folder)
    tick(config, NOW)
    assert [m["To"].addresses[0].addr_spec for m in outbox(config)] == [MIRA]
    mira_id = str(sent_to(config, MIRA)[0]["Message-ID"])

    dovecot_server.append(
        dsn("postmaster@evil.example", JONAS, "<guessed-1@example.com>", 1), folder=folder
    )
    dovecot_server.append(plain_bounce(JONAS, 2), folder=folder)
    dovecot_server.append(dsn("postmaster@evil.example", JONAS, mira_id, 3), folder=folder)
    dovecot_server.append(
        dsn("postmaster@evil.example", MIRA, "<guessed-2@example.com>", 4), folder=folder
    )
    tick(config, NOW + timedelta(hours=1))

    contacts = table(config, CONTACTS)
    assert contacts[JONAS]["status"] == "active"
    assert contacts[MIRA]["status"] == "active"
    assert contacts[MIRA]["soft_bounces"] == 0
    conversations = table(config, CONVERSATIONS)
    assert len(conversations) == 4
    assert {doc["kind"] for doc in conversations.values()} == {"bounce"}
    for doc in conversations.values():
        assert doc["contact"] is None
        assert doc["actions"][0].startswith("untied bounce: ")
        assert doc["actions"][0].endswith("nothing changed")
        assert doc["untied"]
    named = sorted(name for doc in conversations.values() for name in doc["named"])
    assert named == sorted([JONAS, JONAS, JONAS, MIRA])
    # The one that returns Mira's message names Jonas: it ties to neither of them.
    returned = [d for d in conversations.values() if "it returns the message" in d["untied"]]
    assert len(returned) == 1 and JONAS in returned[0]["untied"]
    # No notice goes out about them, no answer to the robots.
    assert not [doc for doc in table(config, MESSAGES).values() if doc["kind"] == "notice"]

    status = status_text(config)
    assert "Inbox, untied bounces" in status
    assert status.count(f"naming {JONAS}") == 3
    log = str(toma(config, "log", JONAS).output)  # type: ignore[attr-defined]
    assert "untied bounce" in log

    # Jonas's invoice falls due on 16 March: his reminder goes, as if Eve had never written.
    tick(config, datetime(2026, 3, 16, 9, 0, tzinfo=UTC))
    reminders = sent_to(config, JONAS)
    assert [str(m["Subject"]) for m in reminders] == ["Invoice 2026-007"]


def test_bounces_of_what_toma_sent_still_mark(tmp_path: Path, dovecot_server: Dovecot) -> None:
    """A hard bounce returning Mira's message marks her at once; soft ones after the limit."""
    folder = dovecot_server.new_folder()
    config = project(tmp_path, dovecot_server, folder)
    assert (
        toma(
            config, "contacts", "add", "nina@example.org", "--first-name", "Nina", "--tag", "friend"
        ).exit_code
        == 0
    )
    tick(config, NOW)
    mira_id = str(sent_to(config, MIRA)[0]["Message-ID"])
    nina_id = str(sent_to(config, "nina@example.org")[0]["Message-ID"])

    dovecot_server.append(dsn("mailer-daemon@mx.example.org", MIRA, mira_id, 1), folder=folder)
    for number in (2, 3):
        dovecot_server.append(
            dsn(
                "mailer-daemon@mx.example.org", "nina@example.org", nina_id, number, status="4.2.2"
            ),
            folder=folder,
        )
    tick(config, NOW + timedelta(hours=1))
    contacts = table(config, CONTACTS)
    assert contacts[MIRA]["status"] == "bounced"
    assert contacts["nina@example.org"]["status"] == "active"
    assert contacts["nina@example.org"]["soft_bounces"] == 2

    dovecot_server.append(
        dsn("mailer-daemon@mx.example.org", "nina@example.org", nina_id, 4, status="4.2.2"),
        folder=folder,
    )
    tick(config, NOW + timedelta(hours=2))
    contacts = table(config, CONTACTS)
    assert contacts["nina@example.org"]["status"] == "bounced"
    assert contacts[JONAS]["status"] == "active"
    tied = [doc for doc in table(config, CONVERSATIONS).values() if doc["contact"]]
    assert len(tied) == 4
    assert not any(doc.get("untied") for doc in tied)


def test_others_on_a_thread_change_nothing(tmp_path: Path, dovecot_server: Dovecot) -> None:
    """Eve's 'unsubscribe' and forged out-of-office on Mira's thread, and Mira's colleague
    answering for her: logged on Mira's conversation, the owner told of the human ones,
    Mira's status, hold and sequence untouched. Then Mira herself, and the signed mailto
    token from another address, still act."""
    folder = dovecot_server.new_folder()
    config = project(tmp_path, dovecot_server, folder)
    tick(config, NOW)
    mira_id = str(sent_to(config, MIRA)[0]["Message-ID"])
    thread = f"In-Reply-To: {mira_id}\r\nReferences: {mira_id}\r\n"

    append = dovecot_server.append
    append(
        mail("Eve <eve@evil.example>", "unsubscribe", "unsubscribe", 1, headers=thread),
        folder=folder,
    )
    append(
        mail(
            "Mira Lang <eve@evil.example>",
            "Out of Office: Hello Mira",
            "I am on holiday and will be back on 1 March 2027.",
            2,
            headers=thread + "Auto-Submitted: auto-replied\r\n",
        ),
        folder=folder,
    )
    append(
        mail(
            "Kai <kai@mira-company.example>",
            "Re: Hello Mira",
            "Mira is on leave; I look after her projects until May.",
            3,
            headers=thread,
        ),
        folder=folder,
    )
    tick(config, NOW + timedelta(hours=1))

    mira = table(config, CONTACTS)[MIRA]
    assert mira["status"] == "active"
    assert not mira.get("hold_until")
    assert table(config, ENROLMENTS)[f"keep/{MIRA}"]["state"] == "active"
    conversations = table(config, CONVERSATIONS)
    assert len(conversations) == 3
    for doc in conversations.values():
        assert doc["contact"] == MIRA
        assert doc["third_party"] is True
        assert "nothing changed" in doc["actions"][0]
        assert "text" not in doc  # nobody in the address book wrote it
    notices = [doc for doc in table(config, MESSAGES).values() if doc["kind"] == "notice"]
    assert sorted(n["contact"] for n in notices) == [OWNER, OWNER]  # Eve's request, Kai's reply
    assert {n["state"] for n in notices} == {"sent"}
    log = str(toma(config, "log", MIRA).output)  # type: ignore[attr-defined]
    assert "from kai@mira-company.example, not from " + MIRA in log

    # Mira's own out-of-office holds her mail; the signed mailto token unsubscribes her
    # whichever address it comes from.
    append(
        mail(
            f"Mira Lang <{MIRA}>",
            "Out of Office: Hello Mira",
            "I am on holiday and will be back on 23 March 2026.",
            4,
            headers=thread + "Auto-Submitted: auto-replied\r\n",
        ),
        folder=folder,
    )
    tick(config, NOW + timedelta(hours=2))
    assert table(config, CONTACTS)[MIRA]["hold_until"].startswith("2026-03-24")

    token = Unsubscribe(
        secret=load_or_create_secret(tmp_path / "var" / "data" / SECRET_FILE),
        base_url=None,
        mailto=OWNER,
    ).token(MIRA)
    append(
        mail("Mira Private <mira.private@example.com>", f"unsubscribe {token}", "", 5),
        folder=folder,
    )
    tick(config, NOW + timedelta(hours=3))
    assert table(config, CONTACTS)[MIRA]["status"] == "unsubscribed"
