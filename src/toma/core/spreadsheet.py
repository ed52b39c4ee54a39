"""CSV as spreadsheets write it: the one reader behind every import (contacts, invoices).

Theory of operation
-------------------

A file arrives as bytes from a spreadsheet program, and is hostile until read:

* :func:`decode` takes what spreadsheets write — UTF-8 with or without a BOM,
  UTF-16 with a BOM, Excel's plain "CSV" in Windows-1252 — and names the line
  of bytes that are none of these.
* :func:`read_table` reads the text as RFC 4180 has it and as Excel writes it:
  fields quoted with '"', a quote inside doubled, line breaks inside quotes,
  rows ending in CRLF or LF. The separator (",", ";" or a tab) is decided from
  the header row alone — the one that reads it into the most columns, the key
  column among them — or by Excel's first line ``sep=;``; nothing else is
  guessed. A row with more cells than columns, a cell over :data:`CELL_LIMIT`,
  or text csv cannot read is a problem naming its row and the line it starts
  on; the rest of the file goes on (text csv cannot read ends it).

What a row means is the caller's: :mod:`toma.core.contactfiles` and
:mod:`toma.core.invoicefiles` turn cells into values and their own problems.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from toma.errors import ImportProblem

# A cell longer than this is refused (its row is a problem): no field needs it,
# and a file of such cells is a way to fill the store.
CELL_LIMIT = 128 * 1024  # characters
_SEPARATORS = (",", ";", "\t")
_SEP_LINE = re.compile(r"sep=([,;\t|])\r?\n", re.IGNORECASE)
_HEADER_PREFIX = 64 * 1024  # where the header row must end, for choosing the separator

_UNDECODABLE = {
    "utf-16": "not valid UTF-16 text",
    "utf-8-sig": "not valid UTF-8 text",
    "cp1252": "neither UTF-8 nor Windows-1252 text",
}


def decode(raw: bytes, *, file: str) -> tuple[str, str]:
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


def _decode(raw: bytes, encoding: str, file: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ImportProblem(
            f"{_UNDECODABLE[encoding]}: save the file as CSV UTF-8",
            file=file,
            line=raw[: exc.start].count(b"\n") + 1,
        ) from None


@dataclass(frozen=True)
class Row:
    number: int  # data rows count from 1, after the header; blank rows are not counted
    line: int  # the line of the file where the row starts
    values: dict[str, str]  # column name -> the cell, stripped; unnamed columns left out

    @property
    def where(self) -> str:
        return f"row {self.number}"


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]  # as written
    columns: tuple[str, ...]  # as the caller's ``column`` names them ("" = ignored)
    first_line: int  # the header's line (2 after Excel's "sep=" line)
    rows: tuple[Row, ...]  # the readable rows
    problems: tuple[ImportProblem, ...]  # the rows that are not
    count: int  # rows that are not blank, readable or not


def read_table(
    text: str, *, file: str, column: Callable[[str], str], key: str, example: str
) -> Table:
    """The rows of CSV ``text``, each a mapping of column names to cells.

    ``column`` names a header cell ("E-mail" → "email"); ``key`` is the column
    that decides between separators; ``example`` is a header row to suggest when
    the file has none. A file without a header row, or with a column twice, is
    an :class:`ImportProblem`; bad rows are listed in :attr:`Table.problems`.
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
        separator = separator or _separator(text, column, key)
        return _read(text, separator, first_line, file=file, column=column, example=example)


def _separator(text: str, column: Callable[[str], str], key: str) -> str:
    """The separator that reads the header row into the most columns, ``key`` being one."""
    head = text[:_HEADER_PREFIX]
    best, best_score = ",", (False, 0)
    for separator in _SEPARATORS:
        header = next(csv.reader(io.StringIO(head, newline=""), csv.excel, delimiter=separator), [])
        score = (key in (column(name) for name in header), len(header))
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


def _read(
    text: str,
    separator: str,
    first_line: int,
    *,
    file: str,
    column: Callable[[str], str],
    example: str,
) -> Table:
    reader = csv.reader(io.StringIO(text, newline=""), csv.excel, delimiter=separator)
    offset = first_line - 1  # lines before the reader's first
    header = next(reader, [])
    if not any(name.strip() for name in header):
        raise ImportProblem(
            f"the file is empty: expected a header row such as {example}",
            file=file,
            line=first_line,
        )
    columns = [column(name) for name in header]
    for index, (raw, name) in enumerate(zip(header, columns, strict=True)):
        if name and columns.index(name) != index:
            raise ImportProblem(f"the column {raw!r:.80} appears twice", file=file, line=first_line)
    rows: list[Row] = []
    problems: list[ImportProblem] = []
    number = 0
    while True:
        line = offset + reader.line_num + 1  # where the next row starts
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(
                ImportProblem(
                    f"row {number + 1}: not readable as CSV ({exc}); "
                    "the rest of the file is not read",
                    file=file,
                    line=line,
                )
            )
            break
        if not any(cell.strip() for cell in cells):
            continue
        number += 1
        if len(cells) > len(columns):
            problems.append(
                ImportProblem(
                    f"row {number}: {len(cells)} cells but {len(columns)} columns",
                    file=file,
                    line=line,
                )
            )
            continue
        if any(len(cell) > CELL_LIMIT for cell in cells):
            problems.append(
                ImportProblem(
                    f"row {number}: a cell is longer than {CELL_LIMIT // 1024} KB",
                    file=file,
                    line=line,
                )
            )
            continue
        values = {name: cell.strip() for name, cell in zip(columns, cells, strict=False) if name}
        rows.append(Row(number, line, values))
    return Table(tuple(header), tuple(columns), first_line, tuple(rows), tuple(problems), number)
