"""Contacts from files: CSV as spreadsheets write it, and vCards (pure).

The rows are read by :mod:`toma.core.spreadsheet`; this module says what a row
means: known columns fill the known fields, every other column is kept as a
custom field, and each bad row is an :class:`ImportProblem` naming its row and
line, while the rest go on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from toma.core.contacts import (
    FIELD_NAME,
    KNOWN_FIELDS,
    Contact,
    make_contact,
    split_tags,
)
from toma.core.spreadsheet import read_table
from toma.errors import ContactError, ImportProblem

_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")

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
    "sender": "owner",
}


@dataclass(frozen=True)
class ImportResult:
    """What a file yielded: contacts to merge, and the rows that were refused."""

    contacts: tuple[Contact, ...]
    problems: tuple[ImportProblem, ...]
    rows: int
    encoding: str = "utf-8"  # what the file was read as (see spreadsheet.decode)


def column_name(header: str) -> str:
    """A CSV header as a field name: "First Name" → first_name, "E-mail" → email."""
    key = re.sub(r"[\s-]+", "_", header.strip().lower()) if header else ""
    return _ALIASES.get(key, _ALIASES.get(header.strip().lower(), key))


def parse_csv(text: str, *, file: str, added_at: str = "") -> ImportResult:
    """Contacts from CSV text with a header row (read as :func:`read_table` says).

    Known columns fill the known fields; every other column is kept as a custom
    field, with its line breaks folded into spaces. A bad row becomes an
    :class:`ImportProblem` naming its row (data rows count from 1, after the
    header) and the line it starts on in the file; the rest go on.
    """
    table = read_table(text, file=file, column=column_name, key="email", example="email,first_name")
    header, columns, first_line = table.header, table.columns, table.first_line
    if "email" not in columns:
        raise ImportProblem(
            f"no email column among {', '.join(h for h in header if h)}"[:300],
            file=file,
            line=first_line,
        )
    for raw, name in zip(header, columns, strict=True):
        if name and name not in KNOWN_FIELDS and not FIELD_NAME.match(name):
            raise ImportProblem(
                f"the column {raw!r:.80} cannot be a field name: use letters, digits and '_'",
                file=file,
                line=first_line,
            )
    contacts: list[Contact] = []
    problems: list[ImportProblem] = list(table.problems)
    seen: dict[str, int] = {}
    for row in table.rows:
        values = row.values
        custom = {k: _LINE_BREAKS.sub(" ", v) for k, v in values.items() if k not in KNOWN_FIELDS}
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
                owner=values.get("owner", ""),
            )
        except ContactError as exc:
            problems.append(
                ImportProblem(
                    f"{row.where}: {exc.message}", file=file, line=row.line, contact=exc.contact
                )
            )
            continue
        if contact.email in seen:
            problems.append(
                ImportProblem(
                    f"{row.where}: {contact.email} is already on row {seen[contact.email]}; "
                    "the two rows are merged",
                    file=file,
                    line=row.line,
                    contact=contact.email,
                )
            )
        seen.setdefault(contact.email, row.number)
        contacts.append(contact)
    # Problems in file order: the reader's and this module's are interleaved by line.
    problems.sort(key=lambda problem: problem.line or 0)
    return ImportResult(tuple(contacts), tuple(problems), table.count)


def parse_vcards(text: str, *, file: str, added_at: str = "") -> ImportResult:
    """Contacts from vCard text (FN, N, EMAIL, ORG, NOTE, CATEGORIES, X-TOMA-OWNER)."""
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
                owner=_vtext(card, "x-toma-owner"),
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
