"""Contacts: the people toma keeps in touch with.

A contact is keyed by its normalised address: one contact per address, however
it was typed. Its status only ever moves away from ``active`` by a decision
(the owner pausing it, the person unsubscribing, an address bouncing); an
import never moves it back, so that nobody who left is written to again.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from email_validator import EmailNotValidError, validate_email

from toma.core._frozen import maker
from toma.errors import ContactError, ImportProblem
from toma.timeutil import is_zone

KNOWN_FIELDS = ("email", "first_name", "last_name", "company", "timezone", "tags")
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TAG = re.compile(r"^[\w][\w.-]*$")


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
    if not _FIELD_NAME.match(key):
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
    )


def with_status(contact: Contact, status: Status, *, at: str, reason: str = "") -> Contact:
    """``contact`` moved to ``status``; leaving a final status needs the person's own action."""
    return replace(contact, status=status, status_at=at, status_reason=reason)


# --- Import -----------------------------------------------------------------

_ALIASES = {
    "e-mail": "email",
    "email_address": "email",
    "mail": "email",
    "firstname": "first_name",
    "first": "first_name",
    "given_name": "first_name",
    "lastname": "last_name",
    "last": "last_name",
    "surname": "last_name",
    "family_name": "last_name",
    "organization": "company",
    "organisation": "company",
    "org": "company",
    "tz": "timezone",
    "time_zone": "timezone",
    "tag": "tags",
    "categories": "tags",
}


@dataclass(frozen=True)
class ImportResult:
    """What a file yielded: contacts to merge, and the rows that were refused."""

    contacts: tuple[Contact, ...]
    problems: tuple[ImportProblem, ...]
    rows: int
    encoding: str = "utf-8"  # what the file was read as (see decode_import)


def column_name(header: str) -> str:
    """A CSV header as a field name: "First Name" → first_name, "E-mail" → email."""
    key = re.sub(r"[\s-]+", "_", header.strip().lower()) if header else ""
    return _ALIASES.get(key, _ALIASES.get(header.strip().lower(), key))


# A cell longer than this is refused (its row is a problem): no contact field
# needs it, and a file of such cells is a way to fill the store.
CELL_LIMIT = 128 * 1024  # characters
_SEPARATORS = (",", ";", "\t")
_SEP_LINE = re.compile(r"sep=([,;\t|])\r?\n", re.IGNORECASE)
_HEADER_PREFIX = 64 * 1024  # where the header row must end, for choosing the separator
_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


def decode_import(raw: bytes, *, file: str) -> tuple[str, str]:
    """The text of an imported file, and the encoding it was read in.

    What spreadsheets write: UTF-8 with a BOM (Excel's "CSV UTF-8") or without
    (LibreOffice, Google Sheets, Numbers); UTF-16 with a BOM (Excel's "Unicode
    Text"); and Excel's plain "CSV", in the Windows code page, which in the
    west is Windows-1252. Text that is not UTF-8 is read as Windows-1252 —
    the caller should say so, since another code page would read wrongly —
    and bytes that are neither are an :class:`ImportProblem` naming the line.
    """
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _decode(raw, "utf-16", file), "utf-16"
    if raw.startswith(codecs.BOM_UTF8):
        return _decode(raw, "utf-8-sig", file), "utf-8"
    if b"\0" in raw:
        raise ImportProblem(
            "this looks like UTF-16 text without a byte order mark: save the file as CSV UTF-8",
            file=file,
            line=raw[: raw.index(b"\0")].count(b"\n") + 1,
        )
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    return _decode(raw, "cp1252", file), "cp1252"


_UNDECODABLE = {
    "utf-16": "not valid UTF-16 text",
    "utf-8-sig": "not valid UTF-8 text",
    "cp1252": "neither UTF-8 nor Windows-1252 text",
}


def _decode(raw: bytes, encoding: str, file: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ImportProblem(
            f"{_UNDECODABLE[encoding]}: save the file as CSV UTF-8",
            file=file,
            line=raw[: exc.start].count(b"\n") + 1,
        ) from None


def parse_csv(text: str, *, file: str, added_at: str = "") -> ImportResult:
    """Contacts from CSV text with a header row.

    The text is read as RFC 4180 has it and as Excel writes it: fields quoted
    with '"', a quote inside doubled, line breaks inside quotes, rows ending in
    CRLF or LF. The separator (",", ";" or a tab) is decided from the header row
    alone, or by Excel's first line "sep=;"; nothing else is guessed.

    Known columns fill the known fields; every other column is kept as a custom
    field, with its line breaks folded into spaces. A bad row becomes an
    :class:`ImportProblem` naming its row (data rows count from 1, after the
    header) and the line it starts on in the file; the rest go on.
    """
    text = text.removeprefix("\ufeff")
    first_line = 1
    separator = None
    if (found := _SEP_LINE.match(text)) is not None:
        separator, text, first_line = found.group(1), text[found.end() :], 2
    # No cell is longer than the text: with that limit csv never stops at a long
    # cell. Stopping there would resume reading inside the quoted cell, taking
    # what it holds for rows; cells over CELL_LIMIT are refused below instead.
    with _field_limit(len(text) + 1):
        separator = separator or _separator(text)
        return _read_rows(text, separator, first_line, file=file, added_at=added_at)


def _separator(text: str) -> str:
    """The separator that reads the header row into the most columns, one being email."""
    head = text[:_HEADER_PREFIX]
    best, best_score = ",", (False, 0)
    for separator in _SEPARATORS:
        header = next(csv.reader(io.StringIO(head, newline=""), csv.excel, delimiter=separator), [])
        score = ("email" in (column_name(name) for name in header), len(header))
        if score > best_score:
            best, best_score = separator, score
    return best


@contextmanager
def _field_limit(size: int) -> Iterator[None]:
    # csv's limit is the module's, for the whole process: restored on the way out.
    previous = csv.field_size_limit()
    csv.field_size_limit(max(previous, size))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _read_rows(
    text: str, separator: str, first_line: int, *, file: str, added_at: str
) -> ImportResult:
    reader = csv.reader(io.StringIO(text, newline=""), csv.excel, delimiter=separator)
    offset = first_line - 1  # lines before the reader's first
    header = next(reader, [])
    if not any(name.strip() for name in header):
        raise ImportProblem(
            "the file is empty: expected a header row such as email,first_name",
            file=file,
            line=first_line,
        )
    columns = [column_name(name) for name in header]
    if "email" not in columns:
        raise ImportProblem(
            f"no email column among {', '.join(h for h in header if h)}"[:300],
            file=file,
            line=first_line,
        )
    for index, (raw, name) in enumerate(zip(header, columns, strict=True)):
        if columns.index(name) != index and name:
            raise ImportProblem(f"the column {raw!r:.80} appears twice", file=file, line=first_line)
        if name and name not in KNOWN_FIELDS and not _FIELD_NAME.match(name):
            raise ImportProblem(
                f"the column {raw!r:.80} cannot be a field name: use letters, digits and '_'",
                file=file,
                line=first_line,
            )
    contacts: list[Contact] = []
    problems: list[ImportProblem] = []
    row_number = 0
    seen: dict[str, int] = {}
    while True:
        line = offset + reader.line_num + 1  # where the next row starts
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(
                ImportProblem(
                    f"row {row_number + 1}: not readable as CSV ({exc}); "
                    "the rest of the file is not read",
                    file=file,
                    line=line,
                )
            )
            break
        if not any(cell.strip() for cell in cells):
            continue
        row_number += 1
        where = f"row {row_number}"
        if len(cells) > len(columns):
            problems.append(
                ImportProblem(
                    f"{where}: {len(cells)} cells but {len(columns)} columns", file=file, line=line
                )
            )
            continue
        if any(len(cell) > CELL_LIMIT for cell in cells):
            problems.append(
                ImportProblem(
                    f"{where}: a cell is longer than {CELL_LIMIT // 1024} KB", file=file, line=line
                )
            )
            continue
        values = dict(zip(columns, (cell.strip() for cell in cells), strict=False))
        custom = {
            k: _LINE_BREAKS.sub(" ", v) for k, v in values.items() if k and k not in KNOWN_FIELDS
        }
        try:
            contact = make_contact(
                values.get("email", ""),
                first_name=values.get("first_name", ""),
                last_name=values.get("last_name", ""),
                company=values.get("company", ""),
                timezone=values.get("timezone", ""),
                tags=split_tags(values.get("tags", "")),
                fields=custom,
                added_at=added_at,
            )
        except ContactError as exc:
            problems.append(
                ImportProblem(f"{where}: {exc.message}", file=file, line=line, contact=exc.contact)
            )
            continue
        if contact.email in seen:
            problems.append(
                ImportProblem(
                    f"{where}: {contact.email} is already on row {seen[contact.email]}; "
                    "the two rows are merged",
                    file=file,
                    line=line,
                    contact=contact.email,
                )
            )
        seen.setdefault(contact.email, row_number)
        contacts.append(contact)
    return ImportResult(tuple(contacts), tuple(problems), row_number)


def parse_vcards(text: str, *, file: str, added_at: str = "") -> ImportResult:
    """Contacts from vCard text (FN, N, EMAIL, ORG, NOTE, CATEGORIES)."""
    import vobject  # imported here: only this path needs it, and it is slow to import

    contacts: list[Contact] = []
    problems: list[ImportProblem] = []
    number = 0
    try:
        cards = list(vobject.readComponents(text, ignoreUnreadable=True))
    except Exception as exc:  # noqa: BLE001 - vobject raises many unrelated types
        raise ImportProblem(f"not a readable vCard file: {exc}", file=file) from None
    for card in cards:
        number += 1
        where = f"card {number}"
        emails = [e.value for e in card.contents.get("email", []) if str(e.value).strip()]
        fn = _vtext(card, "fn")
        if not emails:
            problems.append(ImportProblem(f"{where} ({fn or 'no name'}) has no EMAIL", file=file))
            continue
        given = family = ""
        if "n" in card.contents:
            n = card.n.value
            given, family = str(n.given or "").strip(), str(n.family or "").strip()
        if not given and fn:
            given, _, rest = fn.partition(" ")
            family = family or rest
        org = card.org.value if "org" in card.contents else []
        company = (org[0] if isinstance(org, list) and org else str(org or "")).strip()
        tags: list[str] = []
        for cat in card.contents.get("categories", []):
            tags.extend(cat.value if isinstance(cat.value, list) else split_tags(str(cat.value)))
        note = _vtext(card, "note")
        try:
            contact = make_contact(
                emails[0],
                first_name=given,
                last_name=family,
                company=company,
                tags=[t for t in (tag.strip().replace(" ", "-") for tag in tags) if t],
                fields={"note": " ".join(note.split())} if note else {},
                added_at=added_at,
            )
        except ContactError as exc:
            problems.append(
                ImportProblem(
                    f"{where} ({fn or emails[0]}): {exc.message}", file=file, contact=exc.contact
                )
            )
            continue
        contacts.append(contact)
    return ImportResult(tuple(contacts), tuple(problems), number)


def _vtext(card: Any, name: str) -> str:
    if name not in card.contents:
        return ""
    return str(card.contents[name][0].value).strip()
