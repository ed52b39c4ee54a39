"""toma — top of mind: keep in touch with the people you already know.

The library under the ``toma`` command. The CLI is a thin layer over these::

    from toma import load_config, open_store, addressbook, make_contact
"""

from __future__ import annotations

from toma.config import Config, load_config
from toma.core.contacts import Contact, Status, make_contact, normalize_address
from toma.core.enrolments import Enrolment
from toma.core.planner import Plan, PlannedSend, PlanState, plan
from toma.core.sequences import Sequence
from toma.daemon.tick import TickReport
from toma.daemon.worker import Worker
from toma.errors import (
    ConfigError,
    ContactError,
    ImportProblem,
    PermanentFailure,
    SequenceError,
    StoreError,
    StoreLocked,
    TemplateError,
    TemporaryFailure,
    TomaError,
    TransportError,
)
from toma.mail.compose import Composer
from toma.mail.render import Rendered, Templates
from toma.project.sequences import load_sequences
from toma.store import Store, open_store
from toma.store.records import contacts as addressbook

__all__ = [
    "Composer",
    "Config",
    "ConfigError",
    "Contact",
    "ContactError",
    "Enrolment",
    "ImportProblem",
    "PermanentFailure",
    "Plan",
    "PlanState",
    "PlannedSend",
    "Rendered",
    "Sequence",
    "SequenceError",
    "Status",
    "Store",
    "StoreError",
    "StoreLocked",
    "TemplateError",
    "Templates",
    "TemporaryFailure",
    "TickReport",
    "TomaError",
    "TransportError",
    "Worker",
    "addressbook",
    "load_config",
    "load_sequences",
    "make_contact",
    "normalize_address",
    "open_store",
    "plan",
]
