"""Mail the owner writes by hand, and the Sent copy: the pure decisions.

A hand-written message counts as contact: each sequence follows its
``on_handwritten`` (by default its ``on_reply``), the keep-in-touch repeat and
the pace count from it, and history changes nothing. A spooled copy is made
only of a message that went, waits while it is in doubt, and is given up after
a week.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from toma.config import load_config
from toma.core.contacts import Contact
from toma.core.enrolments import Enrolment
from toma.core.planner import plan
from toma.core.reading.decide import decide_handwritten
from toma.core.sequences import OnReply, Sequence, parse_sequence
from toma.errors import ConfigError, SequenceError
from toma.inbox.handwritten import recipients
from toma.inbox.sentcopy import GIVE_UP, fate
from toma.timeutil import iso, parse_duration

from .test_planner import ADA, ANCHOR, enrol, make_state, record, sequence

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
MIRA = "mira@example.org"


def keep(**rules: str) -> Sequence:
    text = 'name = "keep"\n' + "".join(f'{k} = "{v}"\n' for k, v in rules.items())
    text += '[[steps]]\nid = "hello"\nafter = "1d"\ntemplate = "hello.md"\n'
    return parse_sequence(Path("sequences/keep.toml"), text, windows={"default"})


class TestOnHandwritten:
    def test_defaults_to_on_reply(self) -> None:
        seq = keep(on_reply="pause 30d")
        assert seq.on_handwritten is None
        assert seq.handwritten_rule == OnReply("pause", parse_duration("30d"))

    def test_its_own_rule(self) -> None:
        seq = keep(on_reply="stop", on_handwritten="continue")
        assert seq.handwritten_rule == OnReply("continue")

    def test_a_bad_rule_names_its_key(self) -> None:
        with pytest.raises(SequenceError) as caught:
            keep(on_handwritten="ignore")
        assert caught.value.key == "on_handwritten"


@pytest.mark.parametrize(
    ("rules", "state", "action"),
    [
        ({"on_reply": "stop"}, "stopped", "stopped keep"),
        (
            {"on_reply": "stop", "on_handwritten": "pause 30d"},
            "paused",
            "paused keep until 2026-04",
        ),
        ({"on_reply": "stop", "on_handwritten": "continue"}, "active", None),
        ({"on_reply": "pause"}, "paused", "paused keep until the owner resumes it"),
    ],
)
def test_each_sequence_follows_its_rule(
    rules: dict[str, str], state: str, action: str | None
) -> None:
    enrolment = Enrolment(contact=MIRA, sequence="keep", enrolled_at=NOW - timedelta(days=5))
    decision = decide_handwritten(
        Contact(MIRA),
        [enrolment],
        {"keep": keep(**rules)},
        now=NOW,
        written=NOW - timedelta(hours=1),
        since=NOW - timedelta(days=1),
    )
    assert decision.contacted == NOW - timedelta(hours=1)
    changed = {e.sequence: e.state for e in decision.enrolments}
    assert changed.get("keep", "active") == state
    if action is not None:
        assert any(a.startswith(action) for a in decision.actions), decision.actions


def test_written_before_the_enrolment_keeps_it() -> None:
    enrolment = Enrolment(contact=MIRA, sequence="keep", enrolled_at=NOW)
    decision = decide_handwritten(
        Contact(MIRA),
        [enrolment],
        {"keep": keep(on_reply="stop")},
        now=NOW,
        written=NOW - timedelta(days=2),
    )
    assert decision.enrolments == ()
    assert decision.contacted == NOW - timedelta(days=2)


def test_history_changes_nothing() -> None:
    enrolment = Enrolment(contact=MIRA, sequence="keep", enrolled_at=NOW - timedelta(days=90))
    decision = decide_handwritten(
        Contact(MIRA),
        [enrolment],
        {"keep": keep(on_reply="stop")},
        now=NOW,
        written=NOW - timedelta(days=30),
        since=NOW - timedelta(days=1),
    )
    assert decision.history
    assert decision.enrolments == ()
    assert decision.contacted is None


class TestLastContacted:
    def test_the_repeat_counts_from_mail_written_by_hand(self) -> None:
        seq = sequence("s", [("a", "1h")], repeat="30d", window="always")
        last = ANCHOR + timedelta(hours=1)
        wrote = ANCHOR + timedelta(days=20)
        state = make_state([seq], [enrol(ADA, "s", ANCHOR)], [record(ADA, "s", "a", last)])
        by_hand = replace(state, last_contacted={ADA: wrote})
        now = ANCHOR + timedelta(days=31)
        assert [s.step for s in plan(state, now).due] == ["repeat-1"]
        assert plan(by_hand, now).due == ()
        [later] = plan(by_hand, now, until=ANCHOR + timedelta(days=55)).later
        assert later.due_at == wrote + timedelta(days=30)

    def test_mail_written_by_hand_takes_a_pace_slot(self) -> None:
        seq = sequence("s", [("a", "0h"), ("b", "1d")], window="always")
        state = make_state([seq], [enrol(ADA, "s", ANCHOR)], [record(ADA, "s", "a", ANCHOR)])
        now = ANCHOR + timedelta(days=4)
        assert [s.step for s in plan(state, now).due] == ["b"]
        by_hand = replace(state, last_contacted={ADA: now - timedelta(hours=1)})
        assert plan(by_hand, now).due == ()

    def test_older_than_the_last_message_changes_nothing(self) -> None:
        seq = sequence("s", [("a", "1h")], repeat="30d", window="always")
        last = ANCHOR + timedelta(hours=1)
        state = make_state([seq], [enrol(ADA, "s", ANCHOR)], [record(ADA, "s", "a", last)])
        by_hand = replace(state, last_contacted={ADA: ANCHOR - timedelta(days=3)})
        now = ANCHOR + timedelta(days=31)
        assert plan(by_hand, now).due == plan(state, now).due


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            b"To: Mira <Mira@Example.org>\r\nCc: bo@example.org, mira@example.org\r\n\r\nhi",
            [MIRA, "bo@example.org"],
        ),
        (b"To: a@example.org\nBcc: b@example.org\n\nhi", ["a@example.org", "b@example.org"]),
        (b"Subject: nobody\r\n\r\nTo: c@example.org", []),
        (b"To: undisclosed-recipients:;\r\n\r\n", []),
        (b"\xff\xfe\x00garbage", []),
    ],
)
def test_recipients(data: bytes, expected: list[str]) -> None:
    """To, Cc and Bcc of the header only, lower-cased, once each; nothing from the body."""
    assert recipients(data) == expected


@pytest.mark.parametrize(
    ("record_doc", "expected"),
    [
        (None, "drop"),
        ({"state": "sent", "sent_at": iso(NOW - timedelta(minutes=1))}, "copy"),
        ({"state": "sent", "sent_at": iso(NOW - GIVE_UP - timedelta(minutes=1))}, "give up"),
        ({"state": "unknown"}, "wait"),
        ({"state": "sending"}, "wait"),
        ({"state": "planned"}, "drop"),
        ({"state": "failed"}, "drop"),
        ({"state": "skipped"}, "drop"),
    ],
)
def test_fate_of_a_spooled_copy(record_doc: dict[str, str] | None, expected: str) -> None:
    assert fate(record_doc, NOW) == expected


@pytest.mark.parametrize(
    ("imap", "error"),
    [
        ('folders = ["INBOX", "INBOX"]', "named twice"),
        ('folders = ["INBOX", 3]', "list of folder names"),
        ('folder = "INBOX"\nfolders = ["Clients"]', "not both"),
        ('sent_copy = "sometimes"', 'sent_copy must be "auto"'),
    ],
)
def test_bad_imap_keys(tmp_path: Path, imap: str, error: str) -> None:
    (tmp_path / "config.toml").write_text(
        '[owner]\nname = "Alex"\nemail = "alex@example.com"\n\n[imap]\n' + imap + "\n"
    )
    with pytest.raises(ConfigError, match=error):
        load_config(tmp_path / "config.toml")


def test_imap_folders(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[owner]\nname = "Alex"\nemail = "alex@example.com"\n\n[imap]\n'
        'folders = ["INBOX", "Clients"]\nsent_folder = "Sent Items"\nsent_copy = "never"\n'
    )
    imap = load_config(tmp_path / "config.toml").imap
    assert imap.inbox_folders == ("INBOX", "Clients")
    assert (imap.sent_folder, imap.sent_copy, imap.read_sent) == ("Sent Items", "never", True)
    (tmp_path / "config.toml").write_text(
        '[owner]\nname = "Alex"\nemail = "alex@example.com"\n\n[imap]\nfolder = "Work"\n'
    )
    assert load_config(tmp_path / "config.toml").imap.inbox_folders == ("Work",)
