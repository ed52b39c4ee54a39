"""``toma export``: contacts, conversations and invoices as JSON or CSV.

Each row is a stored document with its key first (``key``). JSON keeps the
documents as they are. CSV has one column per field found in any row (in the
order first seen); a list or a mapping is written as JSON in its cell.

A cell that a spreadsheet would run as a formula (one starting with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return) gets a leading ``'``: contact
names and subjects come from outside, and "=HYPERLINK(…)" in a first name must
stay text when the owner opens the export (CSV injection).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from toma.store.base import CONTACTS, CONVERSATIONS, INVOICES, Reader

EXPORTABLE = (CONTACTS, CONVERSATIONS, INVOICES)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def rows(store: Reader, table: str) -> list[dict[str, Any]]:
    """Every document of ``table``, its key first, in key order."""
    return [{"key": key, **doc} for key, doc in sorted(store.all(table))]


def export_all(
    store: Reader, tables: Sequence[str] = EXPORTABLE
) -> dict[str, list[dict[str, Any]]]:
    return {table: rows(store, table) for table in tables}


def safe_cell(value: Any) -> str:
    """One CSV cell: text as is (defused if a spreadsheet would run it), the rest as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float):
        return json.dumps(value)
    else:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return "'" + text if text.startswith(_FORMULA_START) else text


def to_csv(documents: Iterable[Mapping[str, Any]]) -> str:
    documents = list(documents)
    columns: dict[str, None] = {}
    for doc in documents:
        columns.update(dict.fromkeys(doc))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(list(columns))
    for doc in documents:
        writer.writerow([safe_cell(doc.get(column)) for column in columns])
    return out.getvalue()
