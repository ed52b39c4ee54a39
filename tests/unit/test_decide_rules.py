"""What a message does, by kind: the rules of core.reading.decide, each on its own.

A reply follows each sequence's ``on_reply`` (stop, pause for a while, pause
until the owner resumes, continue) and pauses an answered invoice's
reminders; a bounce counts towards ``inbox.soft_bounce_limit`` or, when hard,
marks the address at once; a request to stop unsubscribes. Pure: a Reading, a
Match and the contact in, a Decision out, ``now`` given.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from toma.config import Config, load_config
from toma.core.contacts import Contact, Status, make_contact
from toma.core.enrolments import Enrolment
from toma.core.reading.classify import Reading
from toma.core.reading.decide import Decision, decide
from toma.core.reading.match import Match, Sent
from toma.core.sequences import OnReply
from toma.core.sequences import Sequence as SequenceFile
from toma.timeutil import parse_duration

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
MIRA = "mira@example.org"
ON_HER_THREAD = Match(
    contact=MIRA,
    answers=Sent(key="keep/mira/hello", contact=MIRA, kind="sequence", ref="keep/hello"),
    via="in-reply-to",
)
ON_HER_INVOICE = Match(
    contact=MIRA,
    answers=Sent(key="invoice:2026/07:+7d", contact=MIRA, kind="invoice", ref="2026/07/+7d"),
    via="in-reply-to",
)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    folder = tmp_path_factory.mktemp("project")
    (folder / "config.toml").write_text(
        '[owner]\nname = "Alex"\nemail = "alex@example.com"\ntimezone = "Europe/Berlin"\n'
    )
    return load_config(folder / "config.toml")


def reading(kind: str, *, hard: bool | None = None, reason: str = "test") -> Reading:
    return Reading(
        kind=kind,  # type: ignore[arg-type]
        reason=reason,
        sender=MIRA,
        subject="s",
        message_id="<in-1@example.org>",
        in_reply_to="<mira-1@alex.example>",
        references=(),
        date=None,
        hard=hard,
        recipients=(MIRA,),
        original_message_id="<mira-1@alex.example>",
        text="hello",
        back_on=None,
        problems=(),
    )


def mira(**changes: object) -> Contact:
    contact = make_contact(MIRA, first_name="Mira", added_at="2026-01-01T00:00:00+00:00")
    return replace(contact, **changes)  # type: ignore[arg-type]


def sequence(on_reply: OnReply) -> dict[str, SequenceFile]:
    return {
        "keep": SequenceFile(
            name="keep",
            description="",
            enroll_tag=None,
            on_reply=on_reply,
            window="default",
            steps=(),
            repeat=None,
            file=Path("keep.toml"),
        )
    }


ENROLLED = Enrolment(contact=MIRA, sequence="keep", enrolled_at=NOW - timedelta(days=30))


def reply(
    config: Config,
    on_reply: OnReply | None,
    *,
    found: Match = ON_HER_THREAD,
    contact: Contact | None = None,
) -> Decision:
    return decide(
        reading("reply"),
        found,
        contact=contact or mira(),
        enrolments=(ENROLLED,),
        sequences=sequence(on_reply) if on_reply is not None else {},
        config=config,
        now=NOW,
    )


# -- a reply and on_reply ------------------------------------------------------------------


class TestOnReply:
    """Each enrolment of the contact follows its own sequence's ``on_reply``."""

    def test_stop_stops_the_enrolment_for_good(self, config: Config) -> None:
        decision = reply(config, OnReply("stop"))
        assert decision.enrolments == (ENROLLED.stopped("replied"),)
        assert decision.enrolments[0].state == "stopped"
        assert decision.actions == ("stopped keep",)
        assert decision.notify_owner

    def test_pause_with_a_duration_resumes_by_itself(self, config: Config) -> None:
        decision = reply(config, OnReply("pause", parse_duration("30d")))
        (paused,) = decision.enrolments
        assert paused.state == "paused"
        assert paused.paused_until == NOW + timedelta(days=30)
        assert decision.actions == ("paused keep until 2026-04-01",)

    def test_pause_without_a_duration_waits_for_the_owner(self, config: Config) -> None:
        """``on_reply = "pause"``: paused with no end, until ``toma contacts resume``."""
        decision = reply(config, OnReply("pause", None))
        (paused,) = decision.enrolments
        assert paused.state == "paused"
        assert paused.paused_until is None
        assert decision.actions == ("paused keep until the owner resumes it",)

    def test_continue_changes_no_enrolment(self, config: Config) -> None:
        decision = reply(config, OnReply("continue"))
        assert decision.enrolments == ()
        assert decision.actions == ("logged",)
        assert decision.notify_owner

    def test_a_sequence_whose_file_cannot_be_read_is_paused(self, config: Config) -> None:
        decision = reply(config, None)
        (paused,) = decision.enrolments
        assert paused.state == "paused" and paused.paused_until is None
        assert decision.actions == ("paused keep (its file cannot be read)",)

    def test_a_stopped_enrolment_stays_as_it_is(self, config: Config) -> None:
        decision = decide(
            reading("reply"),
            ON_HER_THREAD,
            contact=mira(),
            enrolments=(ENROLLED.stopped("by hand"),),
            sequences=sequence(OnReply("pause", None)),
            config=config,
            now=NOW,
        )
        assert decision.enrolments == ()

    def test_a_reply_clears_the_soft_bounces(self, config: Config) -> None:
        decision = reply(config, OnReply("continue"), contact=mira(soft_bounces=2))
        assert decision.contact is not None and decision.contact.soft_bounces == 0
        assert reply(config, OnReply("continue")).contact is None  # nothing to clear

    def test_a_reply_on_an_invoice_thread_pauses_its_reminders(self, config: Config) -> None:
        decision = reply(config, OnReply("continue"), found=ON_HER_INVOICE)
        assert decision.invoice_paused_until == config.invoices.pause_on_reply.after(NOW)
        assert decision.actions == (
            f"paused reminders of 2026/07 until {decision.invoice_paused_until:%Y-%m-%d}",
        )

    def test_the_owner_is_not_told_when_notices_are_off(self, config: Config) -> None:
        quiet = replace(config, inbox=replace(config.inbox, notify="off"))
        assert not reply(quiet, OnReply("stop")).notify_owner


# -- bounces -----------------------------------------------------------------------------


def bounce(config: Config, contact: Contact, *, hard: bool) -> Decision:
    found = Match(contact=MIRA, answers=ON_HER_THREAD.answers, via="original")
    return decide(
        reading("bounce", hard=hard, reason="mailbox full"),
        found,
        contact=contact,
        enrolments=(),
        sequences={},
        config=config,
        now=NOW,
    )


class TestSoftBounceLimit:
    """Soft bounces in a row mark the address bounced at ``inbox.soft_bounce_limit``."""

    def test_the_default_limit_is_three(self, config: Config) -> None:
        assert config.inbox.soft_bounce_limit == 3

    @pytest.mark.parametrize("limit", [1, 2, 3, 5])
    def test_below_the_limit_it_counts(self, config: Config, limit: int) -> None:
        limited = replace(config, inbox=replace(config.inbox, soft_bounce_limit=limit))
        for before in range(limit - 1):
            decision = bounce(limited, mira(soft_bounces=before), hard=False)
            assert decision.contact is not None
            assert decision.contact.status is Status.ACTIVE
            assert decision.contact.soft_bounces == before + 1
            assert decision.actions == (f"soft bounce {before + 1} of {limit}",)
            assert not decision.notify_owner

    @pytest.mark.parametrize("limit", [1, 2, 3, 5])
    def test_at_the_limit_the_address_is_bounced(self, config: Config, limit: int) -> None:
        limited = replace(config, inbox=replace(config.inbox, soft_bounce_limit=limit))
        decision = bounce(limited, mira(soft_bounces=limit - 1), hard=False)
        assert decision.contact is not None
        assert decision.contact.status is Status.BOUNCED
        assert decision.contact.soft_bounces == limit
        assert decision.actions == (f"marked bounced ({limit} soft bounces)",)
        assert decision.notify_owner

    def test_a_hard_bounce_does_not_wait_for_the_limit(self, config: Config) -> None:
        decision = bounce(config, mira(), hard=True)
        assert decision.contact is not None and decision.contact.status is Status.BOUNCED
        assert decision.actions == ("marked bounced (hard)",)

    @pytest.mark.parametrize("status", [Status.BOUNCED, Status.UNSUBSCRIBED])
    def test_an_address_already_gone_only_logs(self, config: Config, status: Status) -> None:
        gone = mira(status=status)
        decision = bounce(config, gone, hard=True)
        assert decision.contact is None
        assert decision.actions == (f"logged (bounce; already {status.value})",)


# -- a request to stop ----------------------------------------------------------------------


def test_a_request_to_stop_unsubscribes_once_and_confirms_once(config: Config) -> None:
    first = decide(
        reading("unsubscribe"),
        ON_HER_THREAD,
        contact=mira(),
        enrolments=(),
        sequences={},
        config=config,
        now=NOW,
    )
    assert first.contact is not None and first.contact.status is Status.UNSUBSCRIBED
    assert first.confirm_unsubscribe and first.notify_owner
    again = decide(
        reading("unsubscribe"),
        ON_HER_THREAD,
        contact=first.contact,
        enrolments=(),
        sequences={},
        config=config,
        now=NOW,
    )
    assert again.contact is None and not again.confirm_unsubscribe
    assert again.actions == ("logged (already unsubscribed)",)
