"""From the files and the store to the planner's input, and back to the calendar.

The planner (:mod:`toma.planner`) is pure; this module is the thin layer that
reads what it needs: the sequence files as they are now (a broken file is
reported and its sequence held), and the contacts, enrolments and outbox
history from the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from toma.config import Config
from toma.contacts import Contact
from toma.errors import SequenceError
from toma.outbox import OutboxRecord
from toma.planner import Plan, PlanState, plan
from toma.sequences import Enrolment, Sequence, held_sequences, load_sequences
from toma.store import CONTACTS, ENROLMENTS, MESSAGES, Reader
from toma.timeutil import parse_moment


@dataclass(frozen=True)
class Files:
    """The sequence files as read at one moment."""

    sequences: dict[str, Sequence]
    problems: list[SequenceError] = field(default_factory=list)
    held: frozenset[str] = frozenset()


def read_sequences(config: Config) -> Files:
    sequences, problems = load_sequences(config.paths.sequences, windows=set(config.windows))
    return Files(sequences, problems, held_sequences(problems))


def plan_state(reader: Reader, config: Config, files: Files) -> PlanState:
    contacts = {key: Contact.from_doc(doc) for key, doc in reader.all(CONTACTS)}
    enrolments = [Enrolment.from_doc(doc) for _key, doc in reader.all(ENROLMENTS)]
    history = {key: OutboxRecord.from_doc(doc) for key, doc in reader.all(MESSAGES)}
    return PlanState(
        contacts=MappingProxyType(contacts),
        enrolments=enrolments,
        history=MappingProxyType(history),
        sequences=MappingProxyType(files.sequences),
        held=files.held,
        windows=config.windows,
        pace=config.pace,
        default_tz=config.owner.timezone,
        contact_hold_until=MappingProxyType(
            {
                email: parse_moment(contact.hold_until)
                for email, contact in contacts.items()
                if contact.hold_until
            }
        ),
    )


def calendar(reader: Reader, config: Config, *, now: datetime, until: datetime) -> Plan:
    """What goes to whom and when, from ``now`` to ``until`` (``toma plan``)."""
    return plan(plan_state(reader, config, read_sequences(config)), now, until=until)
