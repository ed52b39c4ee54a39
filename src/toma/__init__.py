"""toma — top of mind: keep in touch with the people you already know.

The library under the ``toma`` command. The CLI is a thin layer over these::

    from toma import load_config, open_store, addressbook, make_contact

Each name is imported when it is first used (PEP 562), so that ``toma --version``
and ``toma --help`` do not pay for the whole library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# name -> (module, attribute; "" for the module itself)
_LAZY: dict[str, tuple[str, str]] = {
    "Composer": ("toma.mail.compose", "Composer"),
    "Config": ("toma.config", "Config"),
    "ConfigError": ("toma.errors", "ConfigError"),
    "Contact": ("toma.core.contacts", "Contact"),
    "ContactError": ("toma.errors", "ContactError"),
    "Enrolment": ("toma.core.enrolments", "Enrolment"),
    "ImportProblem": ("toma.errors", "ImportProblem"),
    "PermanentFailure": ("toma.errors", "PermanentFailure"),
    "Plan": ("toma.core.planner", "Plan"),
    "PlanState": ("toma.core.planner", "PlanState"),
    "PlannedSend": ("toma.core.planner", "PlannedSend"),
    "Rendered": ("toma.mail.render", "Rendered"),
    "Sequence": ("toma.core.sequences", "Sequence"),
    "SequenceError": ("toma.errors", "SequenceError"),
    "Status": ("toma.core.contacts", "Status"),
    "Store": ("toma.store", "Store"),
    "StoreError": ("toma.errors", "StoreError"),
    "StoreLocked": ("toma.errors", "StoreLocked"),
    "TemplateError": ("toma.errors", "TemplateError"),
    "Templates": ("toma.mail.render", "Templates"),
    "TemporaryFailure": ("toma.errors", "TemporaryFailure"),
    "TickReport": ("toma.daemon.tick", "TickReport"),
    "TomaError": ("toma.errors", "TomaError"),
    "TransportError": ("toma.errors", "TransportError"),
    "Worker": ("toma.daemon.worker", "Worker"),
    "addressbook": ("toma.store.records.contacts", ""),  # the module itself
    "load_config": ("toma.config", "load_config"),
    "load_sequences": ("toma.project.sequences", "load_sequences"),
    "make_contact": ("toma.core.contacts", "make_contact"),
    "normalize_address": ("toma.core.contacts", "normalize_address"),
    "open_store": ("toma.store", "open_store"),
    "plan": ("toma.core.planner", "plan"),
}

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


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'toma' has no attribute {name!r}") from None
    found = importlib.import_module(module)
    value = getattr(found, attribute) if attribute else found
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
