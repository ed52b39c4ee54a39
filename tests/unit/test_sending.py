"""The last check before the hand-over, as a pure rule: who may still get what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from toma.core.lastcheck import Withheld, withheld
from toma.core.outbox import MessageKind, OutboxRecord, new_record

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def record(kind: MessageKind) -> OutboxRecord:
    return new_record(
        key=f"{kind}/x/mira@example.org",
        contact="mira@example.org",
        kind=kind,
        ref="x",
        template="t.md",
        due_at=NOW,
        at=NOW,
    )


def contact(**fields: str) -> dict[str, str]:
    return {"email": "mira@example.org", "status": "active", **fields}


@pytest.mark.parametrize("kind", ["sequence", "newsletter", "invoice"])
def test_an_active_contact_gets_everything(kind: MessageKind) -> None:
    assert withheld(record(kind), contact(), NOW) is None


@pytest.mark.parametrize("kind", ["sequence", "newsletter", "invoice"])
def test_a_forgotten_contact_gets_nothing_and_leaves_no_record(kind: MessageKind) -> None:
    assert withheld(record(kind), None, NOW) == Withheld("forget", "the contact was forgotten")


def test_unsubscribed_stops_all_but_invoice_reminders() -> None:
    gone = contact(status="unsubscribed")
    for kind in ("sequence", "newsletter"):
        stop = withheld(record(kind), gone, NOW)  # type: ignore[arg-type]
        assert stop is not None and stop.action == "skip" and "unsubscribed" in stop.reason
    assert withheld(record("invoice"), gone, NOW) is None


@pytest.mark.parametrize("kind", ["sequence", "newsletter", "invoice"])
def test_bounced_skips_and_paused_waits(kind: MessageKind) -> None:
    bounced = withheld(record(kind), contact(status="bounced"), NOW)
    assert bounced is not None and bounced.action == "skip"
    paused = withheld(record(kind), contact(status="paused"), NOW)
    assert paused is not None and paused.action == "wait"


def test_a_hold_stops_sequences_only_and_only_until_it_ends() -> None:
    later = (NOW + timedelta(days=3)).isoformat()
    held = contact(hold_until=later)
    stop = withheld(record("sequence"), held, NOW)
    assert stop == Withheld("wait", f"the contact is held until {later}")
    assert withheld(record("newsletter"), held, NOW) is None
    assert withheld(record("sequence"), contact(hold_until=NOW.isoformat()), NOW) is None


def test_an_unreadable_document_holds_the_message_instead_of_stopping_the_send() -> None:
    stop = withheld(record("sequence"), contact(hold_until="soon"), NOW)
    assert stop is not None and stop.action == "wait"
    odd = withheld(record("sequence"), contact(status="on-holiday"), NOW)
    assert odd is not None and odd.action == "wait"


def test_notices_are_not_checked() -> None:
    assert withheld(record("notice"), None, NOW) is None
