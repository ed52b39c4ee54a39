"""CSV as RFC 4180 says and as spreadsheet programs save it, byte for byte.

Each file below is what a program writes for the same three people when saving
the same sheet: Excel's "CSV UTF-8", its plain "CSV" (the Windows code page),
its "Unicode Text", in an English and a German locale (where the list separator
is ";"), LibreOffice Calc's defaults and its "quote all text cells", and Google
Sheets' download. Quoting is each program's: a cell is quoted when it holds the
separator, a quote or a line break (a quote inside is doubled), and line breaks
inside a cell are LF while rows end as the program ends them.

Ann's note is the attack: a quoted cell holding doubled quotes and a line break,
after which a row-like text names mallory@example.org. Read with the wrong
dialect that text became a contact nobody asked for.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from toma.core.contactfiles import parse_csv
from toma.errors import ImportProblem
from toma.store.records.contacts import read_import_file

NOW = datetime(2026, 3, 2, 10, tzinfo=UTC)

EXCEL_UTF8_COMMA = (
    b"\xef\xbb\xbfEmail,First Name,Company,Notes,met_where\r\n"
    b'ann@example.org,Ann,"Acme ""Best"" Ltd","She wrote: ""call me""\n'
    b'mallory@example.org,Mal,met,x",Berlin\r\n'
    b'zoe@example.org,Zo\xc3\xab,\xc3\x85ngstr\xc3\xb6m AB,,"the ""Big"" fair, Hall 2"\r\n'
    b"bo@example.org,Bo,,,Hamburg\r\n"
)
EXCEL_UTF8_SEMICOLON = (  # Excel in a German locale: "CSV UTF-8 (durch Trennzeichen getrennt)"
    b"\xef\xbb\xbfEmail;First Name;Company;Notes;met_where\r\n"
    b'ann@example.org;Ann;"Acme ""Best"" Ltd";"She wrote: ""call me""\n'
    b'mallory@example.org,Mal,met,x";Berlin\r\n'
    b'zoe@example.org;Zo\xc3\xab;\xc3\x85ngstr\xc3\xb6m AB;;"the ""Big"" fair, Hall 2"\r\n'
    b"bo@example.org;Bo;;;Hamburg\r\n"
)
EXCEL_CP1252_COMMA = (  # plain "CSV (Comma delimited)": the ANSI code page, no BOM
    b"Email,First Name,Company,Notes,met_where\r\n"
    b'ann@example.org,Ann,"Acme ""Best"" Ltd","She wrote: ""call me""\n'
    b'mallory@example.org,Mal,met,x",Berlin\r\n'
    b'zoe@example.org,Zo\xeb,\xc5ngstr\xf6m AB,,"the ""Big"" fair, Hall 2"\r\n'
    b"bo@example.org,Bo,,,Hamburg\r\n"
)
EXCEL_CP1252_SEMICOLON = (  # "CSV (Trennzeichen-getrennt)" in a German locale
    b"Email;First Name;Company;Notes;met_where\r\n"
    b'ann@example.org;Ann;"Acme ""Best"" Ltd";"She wrote: ""call me""\n'
    b'mallory@example.org,Mal,met,x";Berlin\r\n'
    b'zoe@example.org;Zo\xeb;\xc5ngstr\xf6m AB;;"the ""Big"" fair, Hall 2"\r\n'
    b"bo@example.org;Bo;;;Hamburg\r\n"
)
EXCEL_UNICODE_TEXT = (  # "Unicode Text (*.txt)": UTF-16 LE with a BOM, tab separated
    "\ufeffEmail\tFirst Name\tCompany\tNotes\tmet_where\r\n"
    'ann@example.org\tAnn\t"Acme ""Best"" Ltd"\t"She wrote: ""call me""\n'
    'mallory@example.org,Mal,met,x"\tBerlin\r\n'
    'zoe@example.org\tZoë\tÅngström AB\t\t"the ""Big"" fair, Hall 2"\r\n'
    "bo@example.org\tBo\t\t\tHamburg\r\n"
).encode("utf-16-le")
LIBREOFFICE_DEFAULT = (  # Calc: "Text CSV", UTF-8, "," and '"', LF
    b"Email,First Name,Company,Notes,met_where\n"
    b'ann@example.org,Ann,"Acme ""Best"" Ltd","She wrote: ""call me""\n'
    b'mallory@example.org,Mal,met,x",Berlin\n'
    b'zoe@example.org,Zo\xc3\xab,\xc3\x85ngstr\xc3\xb6m AB,,"the ""Big"" fair, Hall 2"\n'
    b"bo@example.org,Bo,,,Hamburg\n"
)
LIBREOFFICE_QUOTE_ALL = (  # Calc with "Quote all text cells"; empty cells stay bare
    b'"Email","First Name","Company","Notes","met_where"\n'
    b'"ann@example.org","Ann","Acme ""Best"" Ltd","She wrote: ""call me""\n'
    b'mallory@example.org,Mal,met,x","Berlin"\n'
    b'"zoe@example.org","Zo\xc3\xab","\xc3\x85ngstr\xc3\xb6m AB",,"the ""Big"" fair, Hall 2"\n'
    b'"bo@example.org","Bo",,,"Hamburg"\n'
)
GOOGLE_SHEETS = (  # File > Download > CSV: UTF-8 without BOM, CRLF, no newline at the end
    b"Email,First Name,Company,Notes,met_where\r\n"
    b'ann@example.org,Ann,"Acme ""Best"" Ltd","She wrote: ""call me""\n'
    b'mallory@example.org,Mal,met,x",Berlin\r\n'
    b'zoe@example.org,Zo\xc3\xab,\xc3\x85ngstr\xc3\xb6m AB,,"the ""Big"" fair, Hall 2"\r\n'
    b"bo@example.org,Bo,,,Hamburg"
)

SAVED = {
    "excel-csv-utf8.csv": (EXCEL_UTF8_COMMA, "utf-8"),
    "excel-csv-utf8-de.csv": (EXCEL_UTF8_SEMICOLON, "utf-8"),
    "excel-csv.csv": (EXCEL_CP1252_COMMA, "cp1252"),
    "excel-csv-de.csv": (EXCEL_CP1252_SEMICOLON, "cp1252"),
    "excel-unicode-text.txt": (EXCEL_UNICODE_TEXT, "utf-16"),
    "libreoffice.csv": (LIBREOFFICE_DEFAULT, "utf-8"),
    "libreoffice-quoted.csv": (LIBREOFFICE_QUOTE_ALL, "utf-8"),
    "google-sheets.csv": (GOOGLE_SHEETS, "utf-8"),
}


@pytest.mark.parametrize("name", list(SAVED))
def test_files_saved_by_spreadsheets_import_exactly_their_rows(tmp_path: Path, name: str) -> None:
    """Three people, no phantom, every quoted cell as it was typed."""
    data, encoding = SAVED[name]
    path = tmp_path / name
    path.write_bytes(data)
    result = read_import_file(path, now=NOW)
    assert result.problems == ()
    assert result.encoding == encoding
    assert [c.email for c in result.contacts] == [
        "ann@example.org",
        "zoe@example.org",
        "bo@example.org",
    ]
    ann, zoe, bo = result.contacts
    assert ann.company == 'Acme "Best" Ltd'
    # A line break inside a custom cell is folded into a space: fields are single lines.
    assert ann.fields["notes"] == 'She wrote: "call me" mallory@example.org,Mal,met,x'
    assert ann.fields["met_where"] == "Berlin"
    assert (zoe.first_name, zoe.company) == ("Zoë", "Ångström AB")
    assert zoe.fields["met_where"] == 'the "Big" fair, Hall 2'
    assert "notes" not in zoe.fields or zoe.fields["notes"] == ""
    assert (bo.first_name, bo.fields["met_where"]) == ("Bo", "Hamburg")


def test_the_phantom_row_of_the_issue_is_not_imported() -> None:
    """The report's file, as parse_csv sees it once decoded."""
    text = (
        "email,first_name,company,note\n"
        'ann@example.org,Ann,"Acme ""Best"" Ltd","She wrote: ""call me""\n'
        'mallory@example.org,Mal,met,x"\n'
    )
    result = parse_csv(text, file="people.csv")
    assert [c.email for c in result.contacts] == ["ann@example.org"]
    assert result.contacts[0].company == 'Acme "Best" Ltd'
    assert result.problems == ()


def test_a_line_break_in_a_known_field_is_a_row_error() -> None:
    """A name or company spanning lines is refused, naming the row and its first line."""
    text = 'email,first_name\r\nann@example.org,"Ann\r\nMarie"\r\nbo@example.org,Bo\r\n'
    result = parse_csv(text, file="x.csv")
    assert [c.email for c in result.contacts] == ["bo@example.org"]
    [problem] = result.problems
    assert (problem.line, problem.contact) == (2, "ann@example.org")
    assert "row 1" in str(problem)


def test_the_header_row_alone_decides_the_separator() -> None:
    """Rows full of commas do not outvote a header separated by semicolons."""
    text = '"E-mail";Notes\n"ann@example.org";"a, b, c, d, e"\nbo@example.org;"f, g"\n'
    result = parse_csv(text, file="x.csv")
    assert [(c.email, c.fields["notes"]) for c in result.contacts] == [
        ("ann@example.org", "a, b, c, d, e"),
        ("bo@example.org", "f, g"),
    ]


def test_excel_sep_line_names_the_separator() -> None:
    """Excel writes and honours a first line "sep=;"."""
    result = parse_csv("sep=;\nemail;company\nann@example.org;Acme, Inc.\n", file="x.csv")
    assert [(c.email, c.company) for c in result.contacts] == [("ann@example.org", "Acme, Inc.")]
    assert result.rows == 1


def test_a_cell_over_128_kb_is_a_row_error_and_the_rest_is_imported(tmp_path: Path) -> None:
    """csv's field_size_limit once ended the import with a traceback at such a cell.

    The huge cell hides a row-like line: it must not become a contact either.
    """
    huge = "x" * 200_000 + "\nmallory@example.org,Mal,,x\n" + "y" * 1000
    text = (
        "email,first_name,notes\n"
        "ann@example.org,Ann,short\n"
        f'bo@example.org,Bo,"{huge}"\n'
        "cy@example.org,Cy,short\n"
    )
    path = tmp_path / "big.csv"
    path.write_text(text, encoding="utf-8")
    result = read_import_file(path, now=NOW)
    assert [c.email for c in result.contacts] == ["ann@example.org", "cy@example.org"]
    [problem] = result.problems
    assert problem.line == 3
    assert str(problem).startswith(f"{path}:3: row 2: ")
    assert "128 KB" in str(problem)


def test_bytes_that_are_no_known_encoding_are_one_clear_error(tmp_path: Path) -> None:
    """0x81 is undefined in UTF-8 (alone) and in Windows-1252: not guessed any further."""
    path = tmp_path / "odd.csv"
    path.write_bytes(b"email,first_name\nann@example.org,A\x81n\n")
    with pytest.raises(ImportProblem, match="neither UTF-8 nor Windows-1252") as caught:
        read_import_file(path, now=NOW)
    assert caught.value.line == 2


def test_utf16_without_a_byte_order_mark_is_named(tmp_path: Path) -> None:
    path = tmp_path / "u16.csv"
    path.write_bytes("email\nann@example.org\n".encode("utf-16-le"))
    with pytest.raises(ImportProblem, match="UTF-16"):
        read_import_file(path, now=NOW)


def test_a_windows_1252_file_is_read_and_said_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(EXCEL_CP1252_COMMA)
    with caplog.at_level("WARNING", logger="toma"):
        read_import_file(path, now=NOW)
    [record] = [r for r in caplog.records if r.getMessage() == "import read as windows-1252"]
    assert record.levelname == "WARNING"
