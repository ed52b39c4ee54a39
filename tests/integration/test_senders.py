"""Two senders, each with its own SMTP server (aiosmtpd) and its own Dovecot mailbox.

Each contact's mail goes out from its owner, through the owner's server, signed as the
owner; a reply in one owner's mailbox is read and stops that contact's sequence only;
the notice of it goes to that owner; each owner's Sent folder gets its own mail.
"""

from __future__ import annotations

import email
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from toma.cli import main
from toma.config import Smtp
from toma.core.contacts import make_contact
from toma.daemon.worker import Worker
from toma.store import CONTACTS, CONVERSATIONS, ENROLMENTS, MESSAGES, SYNC, open_store
from toma.timeutil import iso

from . import dovecot
from .conftest import Received, RecordingHandler, SmtpdOptions, SmtpServer, free_port
from .dovecot import Dovecot
from .projects import make_project, table, tick
from .test_sent_folder import in_folder, message_ids

dovecot_server = dovecot.dovecot_server

pytestmark = pytest.mark.timeout(120)

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
ALEX, ANN = "alex@example.com", "ann@example.com"  # [owner] and [[senders]]
TEMPLATE = """---
subject: "Hello {{ contact.first_name }}"
---
Hi {{ contact.first_name }},

just keeping in touch.

{{ sender.signature | default(sender.first_name) }}
{{ sender.postal_address }}
"""


@pytest.fixture
def ann_server(
    server_tls_context: ssl.SSLContext, auth_credentials: tuple[str, str]
) -> Iterator[SmtpServer]:
    """Ann's own SMTP server, beside the default sender's ``smtpd_server``."""
    options = SmtpdOptions()
    server = SmtpServer(RecordingHandler(options), options, server_tls_context, auth_credentials)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def imap_keys(server: Dovecot, folder: str, sent: str) -> str:
    settings = server.imap_config()
    return (
        f'host = "{settings.host}"\nport = {settings.port}\nsecurity = "none"\n'
        f'username = "{settings.username}"\npassword_file = "{settings.password.file}"\n'
        f'folder = "{folder}"\nsent_folder = "{sent}"\n'
    )


def project(
    tmp_path: Path, smtp: Smtp, ann: SmtpServer, server: Dovecot, folders: dict[str, str]
) -> Path:
    config = make_project(tmp_path, smtp=smtp, steps=(("hello", "0h"), ("again", "7d")), now=NOW)
    (tmp_path / "templates" / "hello.md").write_text(TEMPLATE, encoding="utf-8")
    text = config.read_text().replace(
        "[windows.default]",
        '[inbox]\nkind = "imap"\nnotify = "immediately"\n\n'
        f"[imap]\n{imap_keys(server, folders['alex'], folders['alex sent'])}\n"
        '[[senders]]\nname = "Ann Able"\nemail = "ann@example.com"\n'
        'signature = "Ann, for the agency"\n'
        f'smtp = {{ host = "{ann.host}", port = {ann.port}, security = "none" }}\n\n'
        f"[senders.imap]\n{imap_keys(server, folders['ann'], folders['ann sent'])}\n"
        "[windows.default]",
    )
    config.write_text(text, encoding="utf-8")
    with open_store(tmp_path / "var" / "data") as store, store.transaction() as tx:
        for number in range(4):
            contact = make_contact(
                f"person{number}@example.org", first_name=f"P{number}", tags=["friend"]
            )
            tx.put(CONTACTS, contact.email, {**contact.to_doc(), "added_at": iso(NOW)})
    # person2 and person3 are Ann's; person0 and person1 stay the default sender's.
    result = CliRunner().invoke(
        main,
        ["--config", str(config), "contacts", "assign", "person2@example.org",
         "person3@example.org", "--to", "Ann Able"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return config


def by_recipient(messages: list[Received]) -> dict[str, Received]:
    return {m.rcpt_tos[0]: m for m in messages}


def reply(sender: str, to: str, in_reply_to: str, number: int) -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: Re: Hello\r\n"
        f"Message-ID: <senders-{number}@example.org>\r\nIn-Reply-To: {in_reply_to}\r\n"
        "Date: Tue, 03 Mar 2026 09:00:00 +0100\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nGood to hear from you!\r\n"
    ).encode()


def test_each_contact_is_written_to_and_read_from_its_owners_mailbox(
    tmp_path: Path,
    dovecot_server: Dovecot,
    smtp_config: Smtp,
    smtpd_handler: RecordingHandler,
    ann_server: SmtpServer,
) -> None:
    folders = {
        name: dovecot_server.new_folder() for name in ("alex", "alex sent", "ann", "ann sent")
    }
    config = project(tmp_path, smtp_config, ann_server, dovecot_server, folders)

    tick(config, NOW)
    alex_got = by_recipient(smtpd_handler.messages)
    ann_got = by_recipient(ann_server.handler.messages)
    assert set(alex_got) == {"person0@example.org", "person1@example.org"}
    assert set(ann_got) == {"person2@example.org", "person3@example.org"}
    for got, address, signed in ((alex_got, ALEX, "Alex"), (ann_got, ANN, "Ann, for the agency")):
        for received in got.values():
            parsed = email.message_from_bytes(received.data, policy=policy.default)
            assert received.mail_from == address  # the envelope sender
            assert parsed["From"].addresses[0].addr_spec == address
            text = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            assert signed in text
            assert "Hauptstraße 1" in text  # Ann's postal address is [owner]'s unless given
    assert "Ann, for the agency" not in "".join(m.data.decode() for m in alex_got.values())
    # Each sender's Sent folder holds its own mail.
    ids = {d["contact"]: d["message_id"] for d in table(config, MESSAGES).values()}
    assert message_ids(in_folder(dovecot_server, folders["alex sent"])).keys() == {
        ids["person0@example.org"],
        ids["person1@example.org"],
    }
    assert message_ids(in_folder(dovecot_server, folders["ann sent"])).keys() == {
        ids["person2@example.org"],
        ids["person3@example.org"],
    }

    # A reply to each sender, in that sender's own mailbox.
    dovecot_server.append(
        reply("person0@example.org", ALEX, str(ids["person0@example.org"]), 1),
        folder=folders["alex"],
    )
    dovecot_server.append(
        reply("person2@example.org", ANN, str(ids["person2@example.org"]), 2),
        folder=folders["ann"],
    )
    tick(config, NOW + timedelta(minutes=1))
    states = {d["contact"]: d["state"] for d in table(config, ENROLMENTS).values()}
    assert states == {
        "person0@example.org": "stopped",
        "person1@example.org": "active",
        "person2@example.org": "stopped",
        "person3@example.org": "active",
    }
    # Each mailbox has cursors of its own.
    cursors = [k for k in table(config, SYNC) if k.startswith("inbox:imap:")]
    assert {k.rpartition(":")[2] for k in cursors} >= {folders["alex"], folders["ann"]}
    # The notice of each reply goes to the owner, through the owner's server.
    alex_notices = [m for m in smtpd_handler.messages if m.rcpt_tos == (ALEX,)]
    ann_notices = [m for m in ann_server.handler.messages if m.rcpt_tos == (ANN,)]
    assert len(alex_notices) == len(ann_notices) == 1
    assert b"person0@example.org" in alex_notices[0].data
    assert b"person2@example.org" in ann_notices[0].data
    assert ann_notices[0].mail_from == ANN


def test_check_connect_tries_each_senders_own_servers(
    tmp_path: Path, dovecot_server: Dovecot, smtp_config: Smtp, ann_server: SmtpServer
) -> None:
    """[owner]'s servers answer; Ann's SMTP server is down and her folder does not exist:
    each failure is named with her address, and nothing is sent."""
    folders = {
        name: dovecot_server.new_folder() for name in ("alex", "alex sent", "ann", "ann sent")
    }
    config = project(tmp_path, smtp_config, ann_server, dovecot_server, folders)
    config.write_text(
        config.read_text()
        .replace(f"port = {ann_server.port},", f"port = {free_port()},")
        .replace(f'folder = "{folders["ann"]}"', 'folder = "nowhere"'),
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["--config", str(config), "check", "--connect"])
    assert result.exit_code != 0
    lines = result.output.splitlines()
    mine = [line for line in lines if f"({ANN})" in line]
    assert any(line.startswith("smtp ") and ": tcp:" in line for line in mine), result.output
    assert any(line.startswith("imap ") and ": folder:" in line for line in mine), result.output
    assert any(line.startswith("ok: smtp ") and ANN not in line for line in lines), result.output
    assert any(line.startswith("ok: imap ") and ANN not in line for line in lines), result.output
    assert ann_server.handler.messages == []


def test_inbox_sync_reads_each_senders_mailbox(
    tmp_path: Path, dovecot_server: Dovecot, smtp_config: Smtp, ann_server: SmtpServer
) -> None:
    folders = {
        name: dovecot_server.new_folder() for name in ("alex", "alex sent", "ann", "ann sent")
    }
    config = project(tmp_path, smtp_config, ann_server, dovecot_server, folders)
    tick(config, NOW)
    ids = {d["contact"]: d["message_id"] for d in table(config, MESSAGES).values()}
    dovecot_server.append(
        reply("person3@example.org", ANN, str(ids["person3@example.org"]), 3),
        folder=folders["ann"],
    )
    # Ann's contact writes to [owner]'s address: the notice is Ann's all the same.
    dovecot_server.append(
        reply("person2@example.org", ALEX, str(ids["person2@example.org"]), 5),
        folder=folders["alex"],
    )
    result = CliRunner().invoke(main, ["--config", str(config), "inbox", "sync"])
    assert result.exit_code == 0, result.output
    first, second = [line for line in result.output.splitlines() if " recorded (" in line]
    assert first.startswith("1 recorded (1 reply)")
    notices = {
        d["ref"]: d["contact"] for d in table(config, MESSAGES).values() if d["kind"] == "notice"
    }
    conversations = {d["contact"]: k for k, d in table(config, CONVERSATIONS).items()}
    assert notices[conversations["person2@example.org"]] == ANN
    assert notices[conversations["person3@example.org"]] == ANN
    assert second.startswith(f"{ANN}: 1 recorded (1 reply)"), result.output
    states = {d["contact"]: d["state"] for d in table(config, ENROLMENTS).values()}
    assert states["person3@example.org"] == "stopped"
    assert states["person2@example.org"] == "stopped"


def test_one_senders_servers_down_do_not_stop_the_others(
    tmp_path: Path,
    dovecot_server: Dovecot,
    smtp_config: Smtp,
    smtpd_handler: RecordingHandler,
    ann_server: SmtpServer,
) -> None:
    """Ann's SMTP server is down and her IMAP password wrong: [owner]'s mail goes and his
    mailbox is read; Ann's messages wait to be retried, her inbox is reported."""
    folders = {
        name: dovecot_server.new_folder() for name in ("alex", "alex sent", "ann", "ann sent")
    }
    config = project(tmp_path, smtp_config, ann_server, dovecot_server, folders)
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not the password\n", encoding="utf-8")
    text = config.read_text()
    at = text.index("[senders.imap]")
    ann_password = f'password_file = "{dovecot_server.password_file}"'
    config.write_text(text[:at] + text[at:].replace(ann_password, f'password_file = "{wrong}"'))
    ann_server.stop()
    dovecot_server.append(reply("person0@example.org", ALEX, "<none@example.org>", 4),
                          folder=folders["alex"])  # fmt: skip

    with open_store(tmp_path / "var" / "data") as store:
        report = Worker(config, store, in_tick_retry=timedelta(0)).run_once(NOW)
    assert any(problem.startswith(f"inbox of {ANN}:") for problem in report.problems)
    assert report.inbound == 1  # [owner]'s mailbox was read
    assert {m.rcpt_tos[0] for m in smtpd_handler.messages} == {
        "person0@example.org",
        "person1@example.org",
        ALEX,  # the notice of person0's message
    }
    records = {d["contact"]: d for d in table(config, MESSAGES).values()}
    assert records["person0@example.org"]["state"] == records["person1@example.org"]["state"]
    assert records["person0@example.org"]["state"] == "sent"
    for ann_contact in ("person2@example.org", "person3@example.org"):
        # Planned again, for a later attempt through her own server, not through [owner]'s.
        assert records[ann_contact]["state"] == "planned"
        assert records[ann_contact]["next_attempt_at"] > iso(NOW)
    assert report.retrying == 2
