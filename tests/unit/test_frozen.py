from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toma.core._frozen import maker
from toma.core.contacts import Contact, Status
from toma.core.enrolments import Enrolment
from toma.core.outbox import MessageState, OutboxRecord

MOMENT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
texts = st.text(max_size=12)


@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    x: int
    y: int = 0


class TestMaker:
    def test_makes_what_the_constructor_makes(self) -> None:
        made = maker(Point)(x=1, y=2)
        assert made == Point(1, 2)
        assert type(made) is Point

    def test_the_instance_stays_frozen(self) -> None:
        made = maker(Point)(x=1, y=2)
        with pytest.raises(dataclasses.FrozenInstanceError):
            made.x = 3  # type: ignore[misc]

    def test_every_field_must_be_given_by_name(self) -> None:
        make = maker(Point)
        with pytest.raises(TypeError):
            make(x=1)
        with pytest.raises(TypeError):
            make(1, 2)
        with pytest.raises(TypeError):
            make(x=1, y=2, z=3)

    def test_only_frozen_dataclasses_with_slots(self) -> None:
        @dataclasses.dataclass(slots=True)
        class Loose:
            x: int

        @dataclasses.dataclass(frozen=True)
        class NoSlots:
            x: int

        for cls in (Loose, NoSlots, int):
            with pytest.raises(TypeError, match="frozen dataclass with slots"):
                maker(cls)


@given(
    first=texts,
    tags=st.lists(texts, max_size=3),
    fields=st.dictionaries(texts, texts, max_size=3),
    status=st.sampled_from(Status),
    bounces=st.integers(0, 9),
)
def test_contacts_decode_as_they_were(
    first: str, tags: list[str], fields: dict[str, str], status: Status, bounces: int
) -> None:
    contact = Contact(
        email="ana@example.org",
        first_name=first,
        tags=tuple(tags),
        fields=MappingProxyType(fields),
        status=status,
        soft_bounces=bounces,
    )
    assert Contact.from_doc(contact.to_doc()) == contact


@given(
    state=st.sampled_from(["active", "paused", "stopped"]),
    reason=texts,
    source=st.sampled_from(["tag", "hand"]),
)
def test_enrolments_decode_as_they_were(state: str, reason: str, source: str) -> None:
    enrolment = Enrolment(
        contact="ana@example.org",
        sequence="keep",
        enrolled_at=MOMENT,
        state=state,
        source=source,
        stopped_reason=reason,
    )  # type: ignore[arg-type]
    assert Enrolment.from_doc(enrolment.to_doc()) == enrolment


@given(
    state=st.sampled_from(MessageState),
    attempts=st.integers(0, 5),
    code=st.none() | st.integers(200, 599),
    detail=texts,
    subject=texts,
)
def test_outbox_records_decode_as_they_were(
    state: MessageState, attempts: int, code: int | None, detail: str, subject: str
) -> None:
    record = OutboxRecord(
        key="keep/ana@example.org/hello",
        contact="ana@example.org",
        kind="sequence",
        ref="keep/hello",
        sequence="keep",
        step="hello",
        template="hello.md",
        state=state,
        due_at=MOMENT,
        attempts=attempts,
        sent_at=MOMENT if state is MessageState.SENT else None,
        message_id="<1@example.com>",
        code=code,
        detail=detail,
        updated_at=MOMENT,
        subject=subject,
    )
    decoded = OutboxRecord.from_doc(record.to_doc())
    assert decoded == record
    assert decoded.state is state
