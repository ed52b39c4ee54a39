"""The one exception family of toma.

Every error a user can act on is a :class:`TomaError` that knows where the
problem is — a file and line, a config key, a contact — so that the command
line can print it in one or two lines instead of a traceback::

    TomaError
    ├── ConfigError            config.toml: unknown key, wrong type, bad zone, missing secret
    ├── SequenceError          sequences/*.toml
    │   └── SequenceProblem    … and the sequence it holds (core.sequences)
    ├── TemplateError          templates/**.md: front matter, syntax, undefined field
    ├── ContactError           an address or a contact field that cannot be accepted
    ├── ImportProblem          one bad row of an import (reported, the rest goes on)
    ├── InvoiceError           an invoice that cannot be accepted or changed (core.invoices)
    ├── AudienceError          a newsletter audience that cannot be read (core.audience)
    ├── IllegalTransition      an outbox record asked to move backwards (core.outbox)
    ├── TooLargeToHold         a store larger than the dashboard may hold (web.snapshot)
    ├── StoreError             the data directory: unreadable, corrupt
    │   └── StoreLocked        another toma process holds the data directory
    ├── TransportError         sending failed (see ``transports``)
    │   ├── TemporaryFailure   4xx, dropped connection: retry later
    │   └── PermanentFailure   5xx: this message will not go
    ├── InboxError             the mailbox cannot be read as configured (inbox.base)
    │   ├── InboxLoginError    the server refused the sign-in: retrying will not help
    │   └── InboxUnavailable   the server cannot be reached: worth trying again later
    └── AuthError              OAuth2 sign-in or token refresh failed (auth.errors)
        ├── SignInNeeded       no usable refresh token: run `toma auth login`
        └── TokenUnavailable   the token endpoint cannot be reached now: try later

The errors without a module named are defined here; the others live beside the
code that raises them. ``tests/unit/test_error_tree.py`` checks this drawing
against the classes.
"""

from __future__ import annotations

from pathlib import Path


class TomaError(Exception):
    """A problem the user can act on, with the place it was found."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        key: str | None = None,
        contact: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.key = key
        self.contact = contact

    @property
    def where(self) -> str:
        """``file:line: key`` (whichever parts are known), or ``""``."""
        parts = []
        if self.file:
            parts.append(f"{self.file}:{self.line}" if self.line else self.file)
        if self.key:
            parts.append(self.key)
        if self.contact:
            parts.append(f"contact {self.contact}")
        return ": ".join(parts)

    def __str__(self) -> str:
        where = self.where
        return f"{where}: {self.message}" if where else self.message


class ConfigError(TomaError):
    """config.toml cannot be used as written."""


class SequenceError(TomaError):
    """A sequence file cannot be used as written."""


class TemplateError(TomaError):
    """A template cannot be parsed or rendered."""


class ContactError(TomaError):
    """An address or contact field cannot be accepted."""


class ImportProblem(TomaError):
    """One row of an import was refused; the other rows are not affected."""


class StoreError(TomaError):
    """The data store cannot be read or written."""


class StoreLocked(StoreError):
    """Another toma process holds the data directory."""


class TransportError(TomaError):
    """A message could not be handed to the transport."""

    def __init__(self, message: str, *, code: int | None = None, **where: str | None) -> None:
        super().__init__(message, **where)  # type: ignore[arg-type]
        self.code = code


class TemporaryFailure(TransportError):
    """Worth trying again later: a 4xx answer or a dropped connection."""


class PermanentFailure(TransportError):
    """A 5xx answer: this message to this recipient will not go."""
