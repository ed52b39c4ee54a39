"""toma — top of mind: keep in touch with the people you already know.

The library under the ``toma`` command. The CLI is a thin layer over these::

    from toma import load_config, open_store, addressbook, make_contact
"""

from __future__ import annotations

from toma import addressbook
from toma.compose import Composer
from toma.config import Config, load_config
from toma.contacts import Contact, Status, make_contact, normalize_address
from toma.daemon import TickReport, Worker
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
from toma.planner import Plan, PlannedSend, PlanState, plan
from toma.render import Rendered, Templates
from toma.sequences import Enrolment, Sequence, load_sequences
from toma.store import Store, open_store

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
