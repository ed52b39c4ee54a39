"""Contacts: one per address, imports that report bad rows and lose nothing."""

from __future__ import annotations

import pytest

from toma.core.contactfiles import parse_csv, parse_vcards
from toma.core.contacts import (
    Status,
    make_contact,
    merge,
    normalize_address,
    with_status,
)
from toma.errors import ContactError


@pytest.mark.parametrize(
    ("typed", "normal"),
    [
        ("Mira@Example.ORG", "mira@example.org"),
        ("  <mira@example.org> ", "mira@example.org"),
        ("joerg@bücher.example", "joerg@bücher.example"),
        ("jorg@XN--BCHER-KVA.example", "jorg@bücher.example"),
    ],
)
def test_address_is_normalised(typed: str, normal: str) -> None:
    assert normalize_address(typed) == normal


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "mira",
        "mira@",
        "@example.org",
        "mira@@example.org",
        "a b@example.org",
        "mira@example.org\r\nBcc: x@example.org",
        "jörg@example.org",
    ],
)
def test_bad_address_is_refused(bad: str) -> None:
    with pytest.raises(ContactError):
        normalize_address(bad)


def test_field_with_line_break_is_refused() -> None:
    """No contact field may carry a line break into a header or a greeting."""
    with pytest.raises(ContactError, match="single line"):
        make_contact("eve@example.org", first_name="Eve\r\nBcc: someone@example.com")


def test_bad_timezone_names_the_contact() -> None:
    with pytest.raises(ContactError, match="not a time zone") as caught:
        make_contact("a@example.org", timezone="Mars/Olympus")
    assert caught.value.contact == "a@example.org"


def csv_text(bad_row: int, rows: int = 10) -> str:
    lines = ["Email,First Name,Company,Tags,met_where"]
    for number in range(1, rows + 1):
        address = "not-an-address" if number == bad_row else f"p{number}@example.org"
        lines.append(f'{address},P{number},Firm {number},"met, client",Hamburg')
    return "\n".join(lines) + "\n"


def test_csv_bad_row_is_reported_and_the_rest_imported() -> None:
    """A bad address on row 7: rows 1–6 and 8+ are imported, row 7 named."""
    result = parse_csv(csv_text(bad_row=7), file="people.csv")
    assert [c.email for c in result.contacts] == [
        f"p{n}@example.org" for n in (1, 2, 3, 4, 5, 6, 8, 9, 10)
    ]
    assert len(result.problems) == 1
    problem = result.problems[0]
    assert problem.file == "people.csv"
    assert problem.line == 8  # the header is line 1
    assert str(problem).startswith("people.csv:8: row 7: 'not-an-address' is not an email")


def test_csv_maps_known_columns_and_keeps_the_others() -> None:
    result = parse_csv(csv_text(bad_row=0, rows=1), file="x.csv")
    contact = result.contacts[0]
    assert (contact.first_name, contact.company, contact.tags) == (
        "P1",
        "Firm 1",
        ("met", "client"),
    )
    assert dict(contact.fields) == {"met_where": "Hamburg"}


def test_csv_with_semicolons_and_bom() -> None:
    text = "\ufeffemail;first_name\nA@example.org;Ann\n".lstrip("\ufeff")
    result = parse_csv(text, file="x.csv")
    assert [(c.email, c.first_name) for c in result.contacts] == [("a@example.org", "Ann")]


def test_csv_without_email_column_is_an_error() -> None:
    from toma.errors import ImportProblem

    with pytest.raises(ImportProblem, match="no email column"):
        parse_csv("name,company\nAnn,X\n", file="x.csv")


VCARDS = """BEGIN:VCARD
VERSION:3.0
FN:Zoë Ångström
N:Ångström;Zoë;;;
EMAIL;TYPE=work:Zoe@Example.org
ORG:Ångström AB;Research
NOTE:Met at the Lund meetup
CATEGORIES:met,research
END:VCARD
BEGIN:VCARD
VERSION:3.0
FN:No Mail
END:VCARD
BEGIN:VCARD
VERSION:3.0
FN:Ken Sato
EMAIL:ken@example.jp
END:VCARD
"""


def test_vcard_reads_names_org_note_and_categories() -> None:
    result = parse_vcards(VCARDS, file="book.vcf")
    zoe, ken = result.contacts
    assert (zoe.email, zoe.first_name, zoe.last_name, zoe.company) == (
        "zoe@example.org",
        "Zoë",
        "Ångström",
        "Ångström AB",
    )
    assert zoe.tags == ("met", "research")
    assert zoe.fields["note"] == "Met at the Lund meetup"
    assert (ken.first_name, ken.last_name) == ("Ken", "Sato")
    assert len(result.problems) == 1
    assert "card 2 (No Mail) has no EMAIL" in str(result.problems[0])


def test_merge_keeps_status_unnamed_fields_and_adds_tags() -> None:
    """Re-import never resurrects an unsubscribed contact nor drops fields it does not name."""
    old = make_contact(
        "a@example.org",
        first_name="Ann",
        tags=["met"],
        fields={"met_where": "Lund", "project": "X"},
    )
    old = with_status(old, Status.UNSUBSCRIBED, at="2026-01-01T00:00:00+00:00")
    new = make_contact(
        "a@example.org", first_name="Anna", tags=["client"], fields={"met_where": "Malmö"}
    )
    merged = merge(old, new)
    assert merged.status is Status.UNSUBSCRIBED
    assert merged.first_name == "Anna"
    assert merged.tags == ("met", "client")
    assert dict(merged.fields) == {"met_where": "Malmö", "project": "X"}
