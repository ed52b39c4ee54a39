"""Contacts: the people toma keeps in touch with.

A contact is keyed by its normalised address: one contact per address, however
it was typed. Its status only ever moves away from ``active`` by a decision
(the owner pausing it, the person unsubscribing, an address bouncing); an
import never moves it back, so that nobody who left is written to again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from email_validator import EmailNotValidError, validate_email

from toma.core._frozen import maker
from toma.errors import ContactError
from toma.timeutil import is_zone

KNOWN_FIELDS = ("email", "first_name", "last_name", "company", "timezone", "tags", "owner")
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_TAG = re.compile(r"^[\w][\w.-]*\Z")


class Status(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"

    @property
    def final(self) -> bool:
        """Statuses that only the person (or their mail server) can have caused."""
        return self in (Status.UNSUBSCRIBED, Status.BOUNCED)


@dataclass(frozen=True, slots=True)
class Contact:
    email: str
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    timezone: str = ""  # empty: the owner's zone
    tags: tuple[str, ...] = ()
    fields: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    status: Status = Status.ACTIVE
    added_at: str = ""
    status_at: str = ""
    status_reason: str = ""
    hold_until: str = ""  # ISO moment: no automated mail before it (an out-of-office return)
    soft_bounces: int = 0  # temporary delivery failures since the last successful reply
    owner: str = ""  # the sender whose contact this is (its address); empty: the default one

    @property
    def name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)

    @property
    def active(self) -> bool:
        return self.status is Status.ACTIVE

    def has_tag(self, tag: str) -> bool:
        return tag in self.tags

    def template_view(self) -> dict[str, Any]:
        """What templates see as ``contact``: the known fields and every custom one."""
        view: dict[str, Any] = dict(self.fields)
        view.update(
            email=self.email,
            first_name=self.first_name,
            last_name=self.last_name,
            name=self.name,
            company=self.company,
            timezone=self.timezone,
            tags=list(self.tags),
        )
        # An empty known field is "not known": a template must say what to write instead.
        return {key: value for key, value in view.items() if value != ""}

    def to_doc(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "company": self.company,
            "timezone": self.timezone,
            "tags": list(self.tags),
            "fields": dict(self.fields),
            "status": self.status.value,
            "added_at": self.added_at,
            "status_at": self.status_at,
            "status_reason": self.status_reason,
            "hold_until": self.hold_until,
            "soft_bounces": self.soft_bounces,
            # Only when set: most contacts are the default sender's, and stay as they were.
            **({"owner": self.owner} if self.owner else {}),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Contact:
        # The daemon decodes every contact when it starts: this is kept lean.
        status = doc.get("status", "active")
        return _make_contact(
            email=doc["email"],
            first_name=doc.get("first_name", ""),
            last_name=doc.get("last_name", ""),
            company=doc.get("company", ""),
            timezone=doc.get("timezone", ""),
            tags=tuple(doc.get("tags", ())),
            fields=MappingProxyType(dict(doc.get("fields", {}))),
            status=_STATUSES.get(status) or Status(status),
            added_at=doc.get("added_at", ""),
            status_at=doc.get("status_at", ""),
            status_reason=doc.get("status_reason", ""),
            hold_until=doc.get("hold_until", ""),
            soft_bounces=int(doc.get("soft_bounces", 0)),
            owner=doc.get("owner", ""),
        )


_STATUSES = {status.value: status for status in Status}
_make_contact = maker(Contact)  # from_doc's values are complete and of the right types


def normalize_address(text: str) -> str:
    """The one spelling of an address: syntax checked, domain in IDNA-decoded lower case.

    The local part is lowered too: providers that treat case as significant are
    vanishingly rare, and two contacts for one person are a real harm.
    """
    candidate = text.strip()
    if candidate.startswith("<") and candidate.endswith(">"):
        candidate = candidate[1:-1].strip()
    if not candidate:
        raise ContactError("an email address is required")
    if any(ch in candidate for ch in "\r\n\0"):
        raise ContactError(f"{candidate!r} is not an email address: it contains a line break")
    try:
        # SMTPUTF8 (a non-ASCII local part) is refused: few servers accept it, and
        # the address would fail at send time instead of now.
        valid = validate_email(candidate, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ContactError(f"{candidate!r} is not an email address: {exc}") from None
    return valid.normalized.lower()


def clean_tag(tag: str) -> str:
    tag = tag.strip().lower()
    if not _TAG.match(tag):
        raise ContactError(f"{tag!r} is not a tag: use letters, digits, '-', '_' or '.'")
    return tag


def clean_tags(tags: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for tag in tags:
        if tag.strip():
            seen[clean_tag(tag)] = None
    return tuple(seen)


def split_tags(text: str) -> list[str]:
    """Tags as written in one cell: separated by commas, semicolons or spaces."""
    return [part for part in re.split(r"[,;\s]+", text) if part]


def clean_field_name(name: str) -> str:
    key = name.strip()
    if not FIELD_NAME.match(key):
        raise ContactError(
            f"{name!r} cannot be a field name: use letters, digits and '_', "
            "starting with a letter (templates write it as contact.NAME)"
        )
    return key


def _single_line(name: str, value: str) -> str:
    # No field may carry a line break: it could end up in a header or a greeting.
    if any(ch in value for ch in "\r\n\0"):
        raise ContactError(f"{name} must be a single line, got {value!r}")
    return value.strip()


def make_contact(
    email: str,
    *,
    first_name: str = "",
    last_name: str = "",
    company: str = "",
    timezone: str = "",
    tags: Iterable[str] = (),
    fields: Mapping[str, str] | None = None,
    added_at: str = "",
    owner: str = "",
) -> Contact:
    """A validated new contact; :class:`ContactError` says what is wrong."""
    address = normalize_address(email)
    zone = timezone.strip()
    if zone and not is_zone(zone):
        raise ContactError(
            f"{zone!r} is not a time zone: use an IANA name such as Europe/Berlin",
            contact=address,
        )
    custom = {}
    for key, value in (fields or {}).items():
        name = clean_field_name(key)
        if name in KNOWN_FIELDS or name in ("name", "status", "fields"):
            raise ContactError(f"{name!r} is a built-in field, not a custom one", contact=address)
        custom[name] = _single_line(name, str(value))
    try:
        return Contact(
            email=address,
            first_name=_single_line("first_name", first_name),
            last_name=_single_line("last_name", last_name),
            company=_single_line("company", company),
            timezone=zone,
            tags=clean_tags(tags),
            fields=MappingProxyType(custom),
            added_at=added_at,
            owner=owner_address(owner),
        )
    except ContactError as exc:
        exc.contact = address
        raise


def merge(existing: Contact | None, incoming: Contact) -> Contact:
    """What a re-import or a second ``add`` makes of a contact.

    Fields the incoming record names replace the old values; fields it leaves
    empty or does not name are kept; tags are added, never removed; the status
    is never changed (an unsubscribed person stays unsubscribed).
    """
    if existing is None:
        return incoming
    fields = dict(existing.fields)
    fields.update({k: v for k, v in incoming.fields.items() if v != ""})
    return replace(
        existing,
        first_name=incoming.first_name or existing.first_name,
        last_name=incoming.last_name or existing.last_name,
        company=incoming.company or existing.company,
        timezone=incoming.timezone or existing.timezone,
        tags=clean_tags((*existing.tags, *incoming.tags)),
        fields=MappingProxyType(fields),
        owner=incoming.owner or existing.owner,
    )


def owner_address(text: str) -> str:
    """A contact's ``owner`` as stored: a sender's address, normalised; "" for the default."""
    if not text.strip():
        return ""
    try:
        return normalize_address(text)
    except ContactError as exc:
        raise ContactError(f"owner: {exc.message}") from None


def with_status(contact: Contact, status: Status, *, at: str, reason: str = "") -> Contact:
    """``contact`` moved to ``status``; leaving a final status needs the person's own action."""
    return replace(contact, status=status, status_at=at, status_reason=reason)
