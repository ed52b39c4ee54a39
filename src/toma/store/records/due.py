"""Which contacts can have a sequence step ready: asked of a store that indexes it.

A store that keeps where each enrolment stands (PostgreSQL, see
:mod:`toma.store.postgres.due`) answers with the contacts that can have a step
ready by a horizon (:mod:`toma.core.earliest`), and the daemon plans those
only. The embedded store keeps every table in memory and the daemon plans
from its decoded model; it answers None: everybody.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Protocol, runtime_checkable

from toma.core.earliest import Earliest
from toma.store.base import Reader


@runtime_checkable
class Indexed(Protocol):
    def due_contacts(self, earliest: Earliest, horizon: datetime) -> set[str]: ...


def indexed(reader: Reader) -> bool:
    """Whether ``reader`` can say which contacts can have something due."""
    return isinstance(reader, Indexed)


@runtime_checkable
class TagIndexed(Protocol):
    def tagged_unenrolled(
        self, tag: str, sequence: str, among: Collection[str] | None = None
    ) -> set[str]: ...


def can_be_due(reader: Reader, earliest: Earliest, horizon: datetime) -> set[str] | None:
    """The contacts that can have a step ready by ``horizon``; None: the store cannot say."""
    if isinstance(reader, Indexed):
        return reader.due_contacts(earliest, horizon)
    return None


def tagged_unenrolled(
    reader: Reader, tag: str, sequence: str, among: Collection[str] | None = None
) -> set[str]:
    """Active contacts carrying ``tag`` never enrolled in ``sequence`` (among ``among`` when
    given), asked of a store that indexes it; the embedded store's daemon finds them in
    its decoded model instead (:func:`toma.core.enrolments.tag_enrolments`)."""
    if not isinstance(reader, TagIndexed):
        raise TypeError("only a store that says who can be due answers tagged_unenrolled")
    return reader.tagged_unenrolled(tag, sequence, among)
