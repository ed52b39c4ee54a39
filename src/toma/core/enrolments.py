"""Enrolments: one contact in one sequence, and who a sequence's tag enrols.

An enrolment is keyed by sequence and contact (:func:`enrolment_key`), so a
contact is in a sequence at most once; a stopped enrolment is never restarted
by its tag.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from toma.core._frozen import maker
from toma.core.contacts import Contact, Status
from toma.core.sequences import Sequence
from toma.errors import TomaError
from toma.timeutil import stored_moment

EnrolmentState = Literal["active", "stopped", "paused"]
EnrolmentSource = Literal["tag", "hand"]


def enrolment_key(contact: str, sequence: str) -> str:
    """The store key of ``contact``'s enrolment in ``sequence``."""
    return f"{sequence}/{contact}"


@dataclass(frozen=True, slots=True)
class Enrolment:
    """One contact in one sequence.

    ``paused_until`` is set only while ``state`` is ``"paused"``; without it a
    pause lasts until the owner resumes. Moments are aware UTC datetimes.
    """

    contact: str
    sequence: str
    enrolled_at: datetime
    state: EnrolmentState = "active"
    paused_until: datetime | None = None
    source: EnrolmentSource = "hand"
    stopped_reason: str = ""

    @property
    def key(self) -> str:
        return enrolment_key(self.contact, self.sequence)

    def stopped(self, reason: str) -> Enrolment:
        return replace(self, state="stopped", paused_until=None, stopped_reason=reason)

    def paused(self, until: datetime | None) -> Enrolment:
        return replace(self, state="paused", paused_until=until.astimezone(UTC) if until else None)

    def resumed(self) -> Enrolment:
        return replace(self, state="active", paused_until=None, stopped_reason="")

    def to_doc(self) -> dict[str, Any]:
        return {
            "contact": self.contact,
            "sequence": self.sequence,
            "enrolled_at": _iso(self.enrolled_at),
            "state": self.state,
            "paused_until": _iso(self.paused_until) if self.paused_until else None,
            "source": self.source,
            "stopped_reason": self.stopped_reason,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Enrolment:
        state = doc.get("state", "active")
        if state not in ("active", "stopped", "paused"):
            raise TomaError(f"enrolment state {state!r} is not active, stopped or paused")
        source = doc.get("source", "hand")
        if source not in ("tag", "hand"):
            raise TomaError(f"enrolment source {source!r} is not tag or hand")
        enrolled_at = stored_moment(doc["enrolled_at"])
        if enrolled_at is None:
            raise TomaError(f"enrolment {doc.get('sequence')}/{doc.get('contact')} has no date")
        return _make_enrolment(
            contact=doc["contact"],
            sequence=doc["sequence"],
            enrolled_at=enrolled_at,
            state=state,
            paused_until=stored_moment(doc.get("paused_until")),
            source=source,
            stopped_reason=doc.get("stopped_reason", ""),
        )


_make_enrolment = maker(Enrolment)  # from_doc has checked every value


def tag_enrolments(
    contacts: Iterable[Contact],
    sequences: Mapping[str, Sequence],
    enrolled: Collection[tuple[str, str]],
    *,
    now: datetime,
) -> list[Enrolment]:
    """New enrolments for active contacts carrying a sequence's ``enroll_tag``.

    ``enrolled`` holds the (contact, sequence) pairs that already have an
    enrolment in any state: a stopped enrolment is not restarted by its tag.
    """
    tagged = sorted(
        (sequence.enroll_tag, name) for name, sequence in sequences.items() if sequence.enroll_tag
    )
    if not tagged:
        return []
    moment = now.astimezone(UTC)
    found: list[Enrolment] = []
    for contact in contacts:
        if contact.status is not Status.ACTIVE:
            continue
        for tag, name in tagged:
            if tag in contact.tags and (contact.email, name) not in enrolled:
                found.append(
                    Enrolment(
                        contact=contact.email, sequence=name, enrolled_at=moment, source="tag"
                    )
                )
    return found


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()
