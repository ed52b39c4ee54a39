"""A mailbox with months of history: toma reads it, and acts only on what is new.

A real Dovecot; the history is put there by IMAP APPEND with its own arrival
time (INTERNALDATE), as a mail client or a migration leaves it. The project
first runs with an empty local inbox (Mira is enrolled, her first note goes),
then the owner points it at the IMAP mailbox: that first read is history.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from toma.store import CONTACTS, CONVERSATIONS, ENROLMENTS, INVOICES, MESSAGES, SYNC

from . import dovecot
from .dovecot import Dovecot
from .projects import make_project
from .test_inbox_trust import JONAS, MIRA, NOW, OWNER, mail, sent_to, table, tick, toma
from .test_inbox_trust import project as trust_project

dovecot_server = dovecot.dovecot_server

pytestmark = pytest.mark.timeout(90)

NINA = "nina@example.org"


def project(tmp_path: Path) -> Path:
    config = make_project(tmp_path, steps=(("hello", "0h"), ("again", "4w")), now=NOW)
    for address, name, tag in (
        (MIRA, "Mira", "friend"),
        (JONAS, "Jonas", "client"),
        (NINA, "Nina", "client"),
    ):
        result = toma(
            config,
            "contacts",
            "add",
            address,
            "--first-name",
            name,
            "--tag",
            tag,
            "--timezone",
            "Europe/Berlin",
        )
        assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    return config


def point_at(config: Path, server: Dovecot, folder: str, *, since: str = "") -> None:
    imap = server.imap_config(folder=folder)
    config.write_text(
        config.read_text().replace(
            "[windows.default]",
            f'[inbox]\nkind = "imap"\n{since}\n\n'
            f'[imap]\nhost = "{imap.host}"\nport = {imap.port}\nsecurity = "none"\n'
            f'username = "{imap.username}"\npassword_file = "{imap.password.file}"\n'
            f'folder = "{folder}"\n\n'
            "[windows.default]",
        )
    )


def arrive(server: Dovecot, folder: str, data: bytes, at: datetime) -> None:
    """APPEND with an arrival time of its own, as the mailbox records it."""
    with server.client() as client:
        client.append(folder, data, msg_time=at)


def notices(config: Path) -> list[dict]:
    return [d for d in table(config, MESSAGES).values() if d["kind"] == "notice"]


def test_first_sync_is_history(tmp_path: Path, dovecot_server: Dovecot) -> None:
    """Old replies, an out-of-office and a reply on toma's own thread that came before toma
    first read the mailbox change nothing and notify nobody; Nina's old request to stop is
    still honoured, silently. A reply arriving after the first read acts as before."""
    config = project(tmp_path)
    tick(config, NOW)  # the local inbox is empty: Mira is enrolled, her first note goes
    assert [m["To"].addresses[0].addr_spec for m in sent_to(config, MIRA)] == [MIRA]
    mira_id = str(sent_to(config, MIRA)[0]["Message-ID"])
    thread = f"In-Reply-To: {mira_id}\r\nReferences: {mira_id}\r\n"

    folder = dovecot_server.new_folder()
    june = datetime(2025, 6, 12, 9, 30, tzinfo=UTC)
    arrive(dovecot_server, folder, mail(f"Mira <{MIRA}>", "Re: lunch", "See you then!", 1), june)
    arrive(
        dovecot_server,
        folder,
        mail(f"Jonas <{JONAS}>", "Re: your offer", "Sounds good, let's do it.", 2),
        june + timedelta(days=40),
    )
    arrive(
        dovecot_server,
        folder,
        mail(f"Nina <{NINA}>", "unsubscribe", "Please unsubscribe me from your mailings.", 3),
        june + timedelta(days=50),
    )
    # After toma wrote to Mira, but before it first read this mailbox.
    arrive(
        dovecot_server,
        folder,
        mail(
            f"Mira <{MIRA}>", "Re: Hello Mira", "Thanks, let's talk in spring.", 4, headers=thread
        ),
        NOW + timedelta(hours=1),
    )
    arrive(
        dovecot_server,
        folder,
        mail(
            f"Mira <{MIRA}>",
            "Out of Office: Hello Mira",
            "I am on holiday and will be back on 23 March 2026.",
            5,
            headers=thread + "Auto-Submitted: auto-replied\r\n",
        ),
        NOW + timedelta(hours=1, minutes=5),
    )

    point_at(config, dovecot_server, folder)
    first = NOW + timedelta(hours=3)
    tick(config, first)

    conversations = table(config, CONVERSATIONS)
    assert len(conversations) == 5
    contacts = table(config, CONTACTS)
    assert contacts[MIRA]["status"] == "active"
    assert not contacts[MIRA].get("hold_until")
    assert table(config, ENROLMENTS)[f"keep/{MIRA}"]["state"] == "active"
    assert contacts[JONAS]["status"] == "active"
    # An objection stands however old: Nina is unsubscribed, but nobody is mailed about it.
    assert contacts[NINA]["status"] == "unsubscribed"
    assert notices(config) == []
    assert sent_to(config, NINA) == []
    assert all(doc.get("history") is True for doc in conversations.values())
    # The first read is kept as this mailbox's start.
    sync_state = [d for k, d in table(config, SYNC).items() if k.startswith("inbox:imap:")]
    assert [d["since"] for d in sync_state] == [first.isoformat()]
    log = str(toma(config, "log", MIRA).output)  # type: ignore[attr-defined]
    assert "See you then!" in log and "history: arrived 2025-06-12" in log

    # New mail acts as before: Mira's reply stops her sequence and the owner is told.
    arrive(
        dovecot_server,
        folder,
        mail(
            f"Mira <{MIRA}>",
            "Re: Hello Mira",
            "Actually, can we meet next week?",
            6,
            headers=thread,
        ),
        first + timedelta(hours=1),
    )
    tick(config, first + timedelta(hours=2))
    assert table(config, ENROLMENTS)[f"keep/{MIRA}"]["state"] == "stopped"
    assert [n["contact"] for n in notices(config)] == [OWNER]
    assert len(table(config, CONVERSATIONS)) == 6


def test_since_set_earlier_on_purpose_acts_on_history(
    tmp_path: Path, dovecot_server: Dovecot
) -> None:
    """The owner sets `[inbox] since` before the first read: what arrived after it acts."""
    config = project(tmp_path)
    tick(config, NOW)
    mira_id = str(sent_to(config, MIRA)[0]["Message-ID"])
    folder = dovecot_server.new_folder()
    arrive(
        dovecot_server,
        folder,
        mail(f"Mira <{MIRA}>", "Re: lunch", "Old news.", 1),
        datetime(2025, 6, 12, 9, 30, tzinfo=UTC),
    )
    arrive(
        dovecot_server,
        folder,
        mail(
            f"Mira <{MIRA}>",
            "Re: Hello Mira",
            "Let's talk!",
            2,
            headers=f"In-Reply-To: {mira_id}\r\n",
        ),
        NOW + timedelta(hours=1),
    )
    point_at(config, dovecot_server, folder, since='since = "2026-03-02"')
    tick(config, NOW + timedelta(hours=3))
    conversations = sorted(table(config, CONVERSATIONS).values(), key=lambda d: d["received_at"])
    assert [bool(d.get("history")) for d in conversations] == [True, False]
    assert table(config, ENROLMENTS)[f"keep/{MIRA}"]["state"] == "stopped"
    assert [n["contact"] for n in notices(config)] == [OWNER]


def test_a_reply_on_an_invoice_thread_pauses_its_reminders(
    tmp_path: Path, dovecot_server: Dovecot
) -> None:
    """Jonas answers the on-the-day reminder: its next stage waits for the pause
    (pause_on_reply = 14d), his keep-in-touch sequence follows its on_reply (stop), and
    `invoices show` lists the reminder and his reply, in time order, with direction."""
    folder = dovecot_server.new_folder()
    config = trust_project(tmp_path, dovecot_server, folder)
    config.write_text(config.read_text().replace('pause_on_reply = "7d"', 'pause_on_reply = "14d"'))
    assert toma(config, "contacts", "tag", JONAS, "friend").exit_code == 0  # type: ignore
    tick(config, NOW)  # Jonas's first keep-in-touch note
    due = datetime(2026, 3, 16, 9, 0, tzinfo=UTC)
    tick(config, due)
    (reminder,) = [m for m in sent_to(config, JONAS) if "Invoice" in str(m["Subject"])]
    thread = f"In-Reply-To: {reminder['Message-ID']}\r\n"
    arrive(
        dovecot_server,
        folder,
        mail(
            f"Jonas <{JONAS}>",
            "Re: Invoice 2026-007",
            "Our accounts team pays on the 25th, sorry!",
            1,
            headers=thread,
        ),
        due + timedelta(hours=1),
    )
    tick(config, due + timedelta(hours=2))

    invoice = table(config, INVOICES)["2026-007"]
    assert invoice["paused_until"].startswith("2026-03-30")
    assert table(config, ENROLMENTS)[f"keep/{JONAS}"]["state"] == "stopped"
    tick(config, datetime(2026, 3, 23, 10, 0, tzinfo=UTC))  # the +7d stage, held by the pause
    assert len([m for m in sent_to(config, JONAS) if "Invoice" in str(m["Subject"])]) == 1
    tick(config, datetime(2026, 3, 30, 12, 0, tzinfo=UTC))
    assert len([m for m in sent_to(config, JONAS) if "Invoice" in str(m["Subject"])]) == 2

    shown = json.loads(str(toma(config, "invoices", "show", "2026-007", "--json").output))  # type: ignore[attr-defined]
    assert [(e["direction"], e["kind"]) for e in shown["thread"]] == [
        ("out", "invoice"),
        ("in", "reply"),
        ("out", "invoice"),
    ]
    assert "Our accounts team pays on the 25th" in shown["thread"][1]["text"]
    text = str(toma(config, "invoices", "show", "2026-007").output)  # type: ignore[attr-defined]
    assert text.index("→ invoice: Invoice 2026-007") < text.index("← reply: Re: Invoice 2026-007")
    assert "paused reminders of 2026-007 until 2026-03-30" in text
