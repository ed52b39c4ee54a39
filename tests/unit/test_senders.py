"""Several senders: [[senders]] in config.toml, the config each sender sees, and whose
mail each message of a tick is."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from toma.config import load_config
from toma.config.senders import each_sender, owner_key, resolve_sender, unknown_owners
from toma.core.contactfiles import parse_csv, parse_vcards
from toma.core.contacts import make_contact, merge
from toma.core.outbox import new_record
from toma.daemon.senders import notice_config, owners_of, split
from toma.daemon.sending import Outgoing
from toma.errors import ConfigError
from toma.mail.compose import Job
from toma.transports import Envelope

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
BASE = """\
[owner]
name = "Alex Example"
email = "alex@example.com"
postal_address = "Hauptstraße 1, Berlin"

[transport]
kind = "smtp"

[smtp]
host = "smtp.example.com"
username = "alex"
"""
ANN = """
[[senders]]
name = "Ann Able"
email = "ann@example.com"
signature = "Ann"
timezone = "Europe/Paris"
smtp = { provider = "gmail", username = "ann@example.com", auth = "password" }
"""
BOB = """
[[senders]]
name = "Bob Best"
email = "bob@example.com"

[senders.smtp]
host = "mail.example.net"
port = 2525
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_owner_alone_is_the_one_sender(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE))
    assert config.senders == ()
    assert each_sender(config) == (config,)
    assert owner_key(config, "") == owner_key(config, "ALEX@example.com") == ""


def test_each_sender_sees_its_own_details_and_servers(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE + ANN + BOB))
    default, ann, bob = each_sender(config)
    assert default is config
    assert (ann.sender, ann.owner.name, ann.owner.signature) == (
        "ann@example.com",
        "Ann Able",
        "Ann",
    )
    assert ann.owner.timezone == "Europe/Paris"
    assert ann.owner.postal_address == bob.owner.postal_address == "Hauptstraße 1, Berlin"
    assert (ann.smtp.host, ann.smtp.port, ann.smtp.provider) == ("smtp.gmail.com", 465, "gmail")
    assert (bob.smtp.host, bob.smtp.port) == ("mail.example.net", 2525)
    assert default.smtp.host == "smtp.example.com"
    # A sender's view knows the others, and [owner], still.
    assert each_sender(bob) == each_sender(config)
    assert resolve_sender(bob, "Alex Example") == ""
    assert resolve_sender(config, "BOB@example.com") == "bob@example.com"
    with pytest.raises(ConfigError, match=r"the senders are Alex Example <alex@example\.com>"):
        resolve_sender(config, "carol@example.com")


@pytest.mark.parametrize(
    ("extra", "at", "key", "message"),
    [
        (ANN.replace("ann@", "alex@"), ('email = "alex', 2), "senders[1].email", "of [owner]"),
        (ANN + ANN, ('email = "ann', 2), "senders[2].email", "already the address of senders[1]"),
        (ANN + BOB.replace("2525", "0"), ("port = 0", 1), "senders[2].smtp.port", "65535"),
        (ANN.replace("smtp =", "smpt ="), ("smpt =", 1), "senders[1].smpt", "did you mean 'smtp'"),
        (BOB.split("[senders.smtp]")[0], ("[[senders]]", 1), "senders[1]", "needs smtp"),
        (ANN.replace('name = "Ann Able"\n', ""), ("[[senders]]", 1), "senders[1]", "needs name"),
        ('\n[senders]\nname = "X"\n', ("[senders]", 1), "senders", "[[senders]]"),
    ],
)
def test_a_mistake_in_a_sender_names_it_line_and_key(
    tmp_path: Path, extra: str, at: tuple[str, int], key: str, message: str
) -> None:
    """``at``: the text the error must point at, and which of its occurrences."""
    text = BASE + extra
    lines = [n for n, line in enumerate(text.splitlines(), start=1) if line.startswith(at[0])]
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    error = caught.value
    assert (error.line, error.key) == (lines[at[1] - 1], key), str(error)
    assert message in error.message


def test_imap_inbox_needs_each_senders_mailbox(tmp_path: Path) -> None:
    text = BASE + '\n[inbox]\nkind = "imap"\n\n[imap]\nhost = "imap.example.com"\n' + ANN
    with pytest.raises(ConfigError, match="each sender needs imap") as caught:
        load_config(write(tmp_path, text))
    assert caught.value.key == "senders[1]"


def test_the_owner_of_a_contact_is_a_column_a_card_property_and_kept_on_reimport() -> None:
    csv = "email,first_name,sender\nann.client@example.org,Ann,ANN@Example.com\nb@example.org,B,\n"
    found = parse_csv(csv, file="people.csv")
    assert [c.owner for c in found.contacts] == ["ann@example.com", ""]
    bad = parse_csv("email,owner\nc@example.org,not an address\n", file="people.csv")
    assert bad.contacts == () and "owner" in bad.problems[0].message
    card = (
        "BEGIN:VCARD\nVERSION:3.0\nFN:D\nEMAIL:d@example.org\n"
        "X-TOMA-OWNER:bob@example.com\nEND:VCARD\n"
    )
    assert parse_vcards(card, file="d.vcf").contacts[0].owner == "bob@example.com"
    owned = make_contact("e@example.org", owner="bob@example.com")
    assert merge(owned, make_contact("e@example.org", first_name="E")).owner == "bob@example.com"
    assert "owner" not in make_contact("f@example.org").to_doc()  # the default: as before


def test_unknown_senders_are_one_problem_each_naming_the_contacts(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE + ANN))
    problems = unknown_owners(
        config,
        [
            ("a@example.org", "ann@example.com"),
            ("b@example.org", "gone@example.com"),
            ("c@example.org", "gone@example.com"),
            ("d@example.org", ""),
        ],
    )
    assert len(problems) == 1
    assert problems[0].contact == "b@example.org"
    assert "gone@example.com" in problems[0].message and "c@example.org" in problems[0].message


def test_a_tick_is_split_by_the_sender_owning_each_contact(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE + ANN))
    contacts = {
        c.email: c
        for c in (
            make_contact("a@example.org"),
            make_contact("b@example.org", owner="ann@example.com"),
            make_contact("c@example.org", owner="gone@example.com"),
        )
    }
    outgoing = Outgoing()
    for address in contacts:
        record = new_record(
            key=f"k:{address}", contact=address, kind="sequence", ref="s", template="t",
            due_at=NOW, at=NOW,
        )  # fmt: skip
        outgoing.add_job(record, Job(key=record.key, template="t", contact={}, now=NOW))
    notice = new_record(
        key="notice:x",
        contact="ann@example.com",
        kind="notice",
        ref="r",
        template="notice:inbound",
        due_at=NOW,
        at=NOW,
    )
    outgoing.records[notice.key] = notice
    outgoing.prebuilt.append(Envelope(key=notice.key, sender="", recipients=(), data=b""))

    parts, held = split(outgoing, owners_of(contacts.values()), config)
    assert [(seen_by.sender, sorted(part.records)) for seen_by, part in parts] == [
        ("", ["k:a@example.org"]),
        ("ann@example.com", ["k:b@example.org", "notice:x"]),
    ]
    assert [job.key for job in parts[1][1].jobs] == ["k:b@example.org"]
    assert [env.key for env in parts[1][1].prebuilt] == ["notice:x"]
    assert parts[1][0].owner.name == "Ann Able"
    assert [record.contact for record in held] == ["c@example.org"]
    # A notice is composed as the sender it goes to, or that owns the contact it goes to.
    assert notice_config(config, "ann@example.com", contacts).sender == "ann@example.com"
    assert notice_config(config, "b@example.org", contacts).sender == "ann@example.com"
    assert notice_config(config, "c@example.org", contacts).sender == ""


def test_auth_login_knows_each_senders_oauth2_account(tmp_path: Path) -> None:
    from toma.auth.login import accounts

    oauth = '\n[oauth2]\nclient_id = "app"\n'
    config = load_config(write(tmp_path, BASE + oauth + ANN.replace(', auth = "password"', "")))
    assert [(a.account, a.token_file.name) for a in accounts(config)] == [
        ("ann@example.com", "ann@example.com.json")
    ]


def test_the_daily_digest_tells_each_sender_of_its_own_contacts(tmp_path: Path) -> None:
    from toma.daemon.tick import queue_digest
    from toma.store import CONVERSATIONS, MESSAGES, open_store

    daily = '\n[inbox]\nnotify = "daily"\ndigest_at = "08:00"\n'
    config = load_config(write(tmp_path, BASE + daily + ANN))
    contacts = {
        c.email: c
        for c in (
            make_contact("a@example.org"),
            make_contact("b@example.org", owner="ann@example.com"),
            make_contact("c@example.org", owner="gone@example.com"),
        )
    }
    with open_store(tmp_path / "data") as store:
        with store.transaction() as tx:
            for address in contacts:
                tx.put(CONVERSATIONS, f"in:{address}", {"contact": address, "notified": False})
        queued = [queue_digest(store, view, NOW, contacts) for view in each_sender(config)]
        told = {doc["contact"]: doc["digest"] for _k, doc in store.all(CONVERSATIONS)}
        records = dict(store.all(MESSAGES))
    default, ann = queued
    assert default is not None and ann is not None
    assert (default.contact, ann.contact) == ("alex@example.com", "ann@example.com")
    # The contact of an unknown sender is told to the default sender.
    assert told == {
        "a@example.org": default.ref,
        "b@example.org": ann.ref,
        "c@example.org": default.ref,
    }
    assert default.ref != ann.ref and set(records) == {default.key, ann.key}


def test_a_notice_goes_to_the_contacts_owner(tmp_path: Path) -> None:
    from toma.config.senders import notice_to, sender_config

    config = load_config(write(tmp_path, BASE + ANN))
    ann = sender_config(config, "ann@example.com")
    for mailbox in (config, ann):
        assert notice_to(mailbox, "ann@example.com") == "ann@example.com"
        assert notice_to(mailbox, "") == "alex@example.com"
    assert notice_to(ann, "gone@example.com") == "ann@example.com"  # the mailbox's sender
