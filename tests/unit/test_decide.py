"""Who may act on a contact: the rules of core.reading.match and core.reading.decide, case by case.

Pure functions: a Reading (as the classifier would give it), the sent index and
the contact in, a Match and a Decision out.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from toma.config import Config, load_config
from toma.core.contacts import Contact, make_contact
from toma.core.enrolments import Enrolment
from toma.core.reading.classify import Reading, read_message
from toma.core.reading.decide import decide
from toma.core.reading.match import Match, Sent, match
from toma.core.sequences import OnReply
from toma.core.sequences import Sequence as SequenceFile

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
MIRA = "mira@example.org"
JONAS = "jonas@example.net"
SENT = {
    "mira-1@alex.example": Sent(
        key="keep/mira/hello", contact=MIRA, kind="sequence", ref="keep/hello"
    )
}
CONTACTS = {MIRA, JONAS}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    folder = tmp_path_factory.mktemp("project")
    (folder / "config.toml").write_text(
        '[owner]\nname = "Alex"\nemail = "alex@example.com"\ntimezone = "Europe/Berlin"\n'
    )
    return load_config(folder / "config.toml")


def reading(
    kind: str,
    *,
    sender: str | None = MIRA,
    in_reply_to: str | None = None,
    original: str | None = None,
    recipients: tuple[str, ...] = (),
    hard: bool | None = None,
    back_on: date | None = None,
) -> Reading:
    return Reading(
        kind=kind,
        reason="test",
        sender=sender,
        subject="s",  # type: ignore[arg-type]
        message_id="<in-1@example.org>",
        in_reply_to=in_reply_to,
        references=(),
        date=None,
        hard=hard,
        recipients=recipients,
        original_message_id=original,
        text="hello",
        back_on=back_on,
        problems=(),
    )


def contact(address: str) -> Contact:
    return make_contact(address, first_name="X", added_at="2026-01-01T00:00:00+00:00")


def act(config: Config, got: Reading, found: Match, who: Contact | None) -> tuple[str, ...]:
    decision = decide(got, found, contact=who, enrolments=(), sequences={}, config=config, now=NOW)
    return decision.actions


# -- bounces ---------------------------------------------------------------------------


def test_a_bounce_naming_a_contact_without_a_returned_message_is_untied() -> None:
    found = match(
        reading("bounce", sender="postmaster@evil.example", recipients=(JONAS,), hard=True),
        sent=SENT,
        contacts=CONTACTS,
    )
    assert found.contact is None and found.answers is None
    assert found.named == (JONAS,)
    assert found.untied == "it returns no message toma sent"


def test_a_bounce_with_a_guessed_message_id_is_untied() -> None:
    found = match(
        reading("bounce", original="<guess@alex.example>", recipients=(MIRA,), hard=True),
        sent=SENT,
        contacts=CONTACTS,
    )
    assert found.contact is None and found.untied


@pytest.mark.parametrize("where", ["original", "in_reply_to"])
def test_a_bounce_returning_what_toma_sent_there_is_tied(where: str) -> None:
    found = match(
        reading(
            "bounce",
            recipients=("Mira@Example.org".lower(),),
            hard=True,
            **{where: "<mira-1@alex.example>"},
        ),
        sent=SENT,
        contacts=CONTACTS,
    )
    assert (found.contact, found.untied) == (MIRA, None)
    assert found.answers is SENT["mira-1@alex.example"]


def test_a_bounce_of_miras_message_naming_jonas_ties_to_neither() -> None:
    found = match(
        reading("bounce", original="<mira-1@alex.example>", recipients=(JONAS,), hard=True),
        sent=SENT,
        contacts=CONTACTS,
    )
    assert found.contact is None
    assert found.named == (JONAS,)
    assert found.untied is not None and MIRA in found.untied and JONAS in found.untied


def test_a_bounce_naming_nobody_ties_to_nothing() -> None:
    found = match(
        reading("bounce", original="<mira-1@alex.example>", hard=True), sent=SENT, contacts=CONTACTS
    )
    assert found.contact is None and found.untied is not None


def test_an_untied_bounce_changes_nothing(config: Config) -> None:
    got = reading("bounce", recipients=(JONAS,), hard=True)
    found = match(got, sent=SENT, contacts=CONTACTS)
    decision = decide(got, found, contact=None, enrolments=(), sequences={}, config=config, now=NOW)
    assert decision.contact is None and not decision.enrolments and not decision.notify_owner
    assert decision.actions == ("untied bounce: it returns no message toma sent; nothing changed",)


def test_tied_bounces_still_mark(config: Config) -> None:
    got = reading("bounce", original="<mira-1@alex.example>", recipients=(MIRA,), hard=True)
    found = match(got, sent=SENT, contacts=CONTACTS)
    hard = decide(
        got, found, contact=contact(MIRA), enrolments=(), sequences={}, config=config, now=NOW
    )
    assert hard.contact is not None and hard.contact.status.value == "bounced"
    soft = decide(
        replace(got, hard=False),
        found,
        contact=contact(MIRA),
        enrolments=(),
        sequences={},
        config=config,
        now=NOW,
    )
    assert soft.contact is not None and soft.contact.soft_bounces == 1


# -- someone else on a contact's thread -------------------------------------------------


@pytest.mark.parametrize("kind", ["unsubscribe", "reply", "auto-reply"])
def test_someone_else_on_miras_thread_acts_on_nobody(config: Config, kind: str) -> None:
    got = reading(
        kind,
        sender="eve@evil.example",
        in_reply_to="<mira-1@alex.example>",
        back_on=date(2027, 3, 1),
    )
    found = match(got, sent=SENT, contacts=CONTACTS)
    assert found.contact == MIRA  # logged on her conversation
    decision = decide(
        got, found, contact=contact(MIRA), enrolments=(), sequences={}, config=config, now=NOW
    )
    assert decision.contact is None and not decision.enrolments
    assert decision.invoice_paused_until is None and not decision.confirm_unsubscribe
    assert decision.third_party
    assert decision.actions[0].endswith(f"from eve@evil.example, not from {MIRA}: nothing changed")
    # A person writing on the thread is worth telling the owner; a robot's notice is not.
    assert decision.notify_owner == (kind != "auto-reply")


def test_a_message_without_a_sender_on_a_thread_acts_on_nobody(config: Config) -> None:
    got = reading("unsubscribe", sender=None, in_reply_to="<mira-1@alex.example>")
    found = match(got, sent=SENT, contacts=CONTACTS)
    decision = decide(
        got, found, contact=contact(MIRA), enrolments=(), sequences={}, config=config, now=NOW
    )
    assert decision.third_party and decision.contact is None


def test_the_contact_herself_still_acts(config: Config) -> None:
    got = reading("unsubscribe", in_reply_to="<mira-1@alex.example>")
    found = match(got, sent=SENT, contacts=CONTACTS)
    decision = decide(
        got, found, contact=contact(MIRA), enrolments=(), sequences={}, config=config, now=NOW
    )
    assert decision.contact is not None and decision.contact.status.value == "unsubscribed"
    held = decide(
        reading("auto-reply", back_on=date(2026, 3, 23)),
        found,
        contact=contact(MIRA),
        enrolments=(),
        sequences={},
        config=config,
        now=NOW,
    )
    assert held.contact is not None and held.contact.hold_until.startswith("2026-03-24")


def test_the_signed_token_acts_whoever_sends_it(config: Config) -> None:
    got = reading("unsubscribe", sender="mira.private@example.com")
    found = Match(contact=MIRA, answers=None, via="token")
    decision = decide(
        got, found, contact=contact(MIRA), enrolments=(), sequences={}, config=config, now=NOW
    )
    assert decision.contact is not None and decision.contact.status.value == "unsubscribed"


def test_a_stranger_without_a_thread_is_kept_aside(config: Config) -> None:
    got = reading("unsubscribe", sender="eve@evil.example")
    found = match(got, sent=SENT, contacts=CONTACTS)
    assert found.contact is None
    assert act(config, got, found, None) == ("kept aside: no contact matches",)


# -- history: what arrived before toma read the mailbox ----------------------------------


def enrolled(at: datetime) -> Enrolment:
    return Enrolment(contact=MIRA, sequence="keep", enrolled_at=at)


def sequence_stopping_on_reply() -> dict[str, SequenceFile]:
    return {
        "keep": SequenceFile(
            name="keep",
            description="",
            enroll_tag=None,
            on_reply=OnReply(action="stop"),
            window="default",
            steps=(),
            repeat=None,
            file=Path("keep.toml"),
        )
    }


@pytest.mark.parametrize("kind", ["reply", "auto-reply", "bounce"])
def test_history_changes_nothing_and_tells_nobody(config: Config, kind: str) -> None:
    got = reading(
        kind,
        in_reply_to="<mira-1@alex.example>",
        original="<mira-1@alex.example>",
        recipients=(MIRA,),
        hard=True,
        back_on=date(2026, 3, 23),
    )
    found = match(got, sent=SENT, contacts=CONTACTS)
    decision = decide(
        got,
        found,
        contact=contact(MIRA),
        enrolments=(enrolled(NOW),),
        sequences=sequence_stopping_on_reply(),
        config=config,
        now=NOW,
        arrived=datetime(2025, 6, 12, tzinfo=UTC),
        since=NOW,
    )
    assert decision.history and decision.contact is None and not decision.enrolments
    assert not decision.notify_owner and not decision.confirm_unsubscribe
    assert decision.invoice_paused_until is None
    assert decision.actions == (
        "history: arrived 2025-06-12, before toma read this mailbox "
        "(since 2026-03-02); nothing changed",
    )


def test_an_old_request_to_stop_from_the_contact_is_honoured_quietly(config: Config) -> None:
    old = datetime(2025, 7, 1, tzinfo=UTC)
    mine = decide(
        reading("unsubscribe"),
        Match(contact=MIRA, answers=None, via="sender"),
        contact=contact(MIRA),
        enrolments=(),
        sequences={},
        config=config,
        now=NOW,
        arrived=old,
        since=NOW,
    )
    assert mine.contact is not None and mine.contact.status.value == "unsubscribed"
    assert not mine.notify_owner and not mine.confirm_unsubscribe and mine.history
    # From anybody else on her thread, an old request changes nothing.
    eve = reading("unsubscribe", sender="eve@evil.example", in_reply_to="<mira-1@alex.example>")
    theirs = decide(
        eve,
        match(eve, sent=SENT, contacts=CONTACTS),
        contact=contact(MIRA),
        enrolments=(),
        sequences={},
        config=config,
        now=NOW,
        arrived=old,
        since=NOW,
    )
    assert theirs.contact is None and not theirs.notify_owner


def test_a_reply_from_before_the_enrolment_leaves_that_sequence(config: Config) -> None:
    got = reading("reply")
    found = Match(contact=MIRA, answers=None, via="sender")
    earlier = decide(
        got,
        found,
        contact=contact(MIRA),
        enrolments=(enrolled(NOW),),
        sequences=sequence_stopping_on_reply(),
        config=config,
        now=NOW,
        arrived=NOW - timedelta(hours=1),
        since=NOW - timedelta(days=30),
    )
    assert not earlier.enrolments and not earlier.history
    assert earlier.actions[0] == "kept keep: the reply came before the enrolment (2026-03-02)"
    later = decide(
        got,
        found,
        contact=contact(MIRA),
        enrolments=(enrolled(NOW),),
        sequences=sequence_stopping_on_reply(),
        config=config,
        now=NOW,
        arrived=NOW + timedelta(hours=1),
        since=NOW - timedelta(days=30),
    )
    assert [e.state for e in later.enrolments] == ["stopped"]


def test_an_out_of_office_until_a_day_inclusive_is_not_logged_as_back_that_day(
    config: Config,
) -> None:
    """'bis einschließlich 18.12.': away through the 18th, back on the 19th. The log must not
    say 'back on 18.12.'; the hold runs to the 19th."""
    got = read_message(
        (
            "From: Mira <mira@example.org>\r\nTo: alex@example.com\r\n"
            "Subject: Abwesenheitsnotiz: Hallo\r\nAuto-Submitted: auto-replied\r\n"
            "Message-ID: <ooo-1@example.org>\r\nDate: Mon, 07 Dec 2026 09:00:00 +0100\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            "Vielen Dank für Ihre Nachricht. Ich bin bis einschließlich 18.12. nicht im Büro.\r\n"
        ).encode()
    )
    assert got.kind == "auto-reply"
    decision = decide(
        got,
        Match(contact=MIRA, answers=None, via="sender"),
        contact=contact(MIRA),
        enrolments=(),
        sequences={},
        config=config,
        now=datetime(2026, 12, 7, 9, 0, tzinfo=UTC),
    )
    assert decision.contact is not None and decision.contact.hold_until.startswith("2026-12-19")
    (action,) = decision.actions
    assert "back on 2026-12-18" not in action
    assert action == (
        "no automated mail before 2026-12-19: out of office until 2026-12-18, back on 2026-12-19"
    )


def test_an_out_of_office_back_on_a_day_is_logged_as_back_that_day(config: Config) -> None:
    """'wieder da am 18.12.': back on the 18th, and mail waits for the day after."""
    got = read_message(
        (
            "From: Mira <mira@example.org>\r\nTo: alex@example.com\r\n"
            "Subject: Abwesenheitsnotiz: Hallo\r\nAuto-Submitted: auto-replied\r\n"
            "Message-ID: <ooo-2@example.org>\r\nDate: Mon, 07 Dec 2026 09:00:00 +0100\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            "Vielen Dank für Ihre Nachricht. Ich bin ab dem 18.12. wieder im Büro.\r\n"
        ).encode()
    )
    assert (got.back_on, got.away_until) == (date(2026, 12, 18), None)
    decision = decide(
        got,
        Match(contact=MIRA, answers=None, via="sender"),
        contact=contact(MIRA),
        enrolments=(),
        sequences={},
        config=config,
        now=datetime(2026, 12, 7, 9, 0, tzinfo=UTC),
    )
    assert decision.actions == (
        "no automated mail before 2026-12-19: out of office, back on 2026-12-18",
    )
