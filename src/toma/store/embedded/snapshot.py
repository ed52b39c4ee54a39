"""The embedded store's documents as bytes, and its snapshots: written whole, read in blocks.

A snapshot is a TinyDB database, one document per line (:func:`encode_snapshot`),
read back a few thousand documents at a time (:func:`read_snapshot`); the file
layout and why are in :mod:`toma.store.embedded.journal`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

from toma.errors import StoreError
from toma.store.base import SCHEMA_VERSION, Document

log = logging.getLogger(__name__)

KEY_FIELD = "_key"  # each stored document carries its store key in this field
STORE_META_KEY = "store"  # meta/store: the schema version and the generation

# Documents per piece of a snapshot written or read: enough to keep the work
# in the C encoder and decoder, few enough never to hold a big table twice.
_SNAPSHOT_CHUNK_DOCS = 2000
# The lines of encode_snapshot's layout that open a table, and start a document.
_TABLE_LINE = re.compile(rb'("(?:[^"\\\n]|\\.)*"):\{\n')
_DOC_LINE = re.compile(rb'"\d+":\{')

# One encoder for every document: json.dumps with options builds a new encoder
# per call, which costs as much as encoding a small document.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_DECODER = json.JSONDecoder()
# The types JSON gives back unchanged (a float's repr reads back as the same float).
_EXACT = frozenset({str, int, float, bool, type(None)})

# -- documents -------------------------------------------------------------


def encode_doc(doc: Mapping[str, Any]) -> bytes:
    """The JSON of one document; ValueError, TypeError or UnicodeError if it has none."""
    return _ENCODER.encode(doc).encode()


def json_text(doc: Mapping[str, Any]) -> str:
    """The JSON of one document as text, refused as :func:`encode_doc` refuses it: for
    a store that keeps no copy (PostgreSQL), with neither the bytes nor the copy made."""
    text = _ENCODER.encode(doc)
    if not text.isascii():
        text.encode()  # a lone surrogate has no UTF-8: UnicodeEncodeError, as encode_doc
    return text


def normalise_doc(doc: Mapping[str, Any]) -> tuple[bytes, Document]:
    """The JSON of ``doc`` and the document that JSON reads back as (a deep copy).

    ValueError, TypeError or UnicodeError if ``doc`` cannot be JSON.
    """
    text = _ENCODER.encode(doc)
    data = text.encode()
    if all(type(key) is str and type(value) in _EXACT for key, value in doc.items()):
        # A flat document of plain values reads back equal to itself: a copy of it
        # is what decoding would give, for less.
        return data, dict(doc)
    copy: Document = _DECODER.decode(text)
    return data, copy


def encode_str(text: str) -> bytes:
    return _ENCODER.encode(text).encode()


def encode_snapshot(
    tables: Iterable[tuple[str, Iterable[tuple[str, Document]]]],
) -> Iterator[bytes]:
    """TinyDB's JSON for ``(table, [(key, doc), ...])``, one document per line, in pieces.

    Document ids are numbered from 1 in each table, in the order given::

        {
        "contacts":{
        "1":{"_key":"ana@example.com",...},
        "2":{"_key":"bo@example.com",...}
        },
        "meta":{
        "1":{"_key":"store","schema_version":1,"generation":2}
        }
        }

    The JSON encoder escapes every control character inside strings, so a
    newline in the file only ever ends a line of this layout.
    """
    yield b"{\n"
    for number, (name, docs) in enumerate(tables):
        yield (b",\n" if number else b"") + encode_str(name) + b":{"
        doc_id = 0
        items = iter(docs)
        while piece := list(islice(items, _SNAPSHOT_CHUNK_DOCS)):
            lines = []
            for key, doc in piece:
                doc_id += 1
                lines.append(b'"%d":' % doc_id + encode_doc({KEY_FIELD: key, **doc}))
            yield (b",\n" if doc_id > len(piece) else b"\n") + b",\n".join(lines)
        yield b"\n}"
    yield b"\n}\n"


def store_meta(generation: int, schema_version: int = SCHEMA_VERSION) -> Document:
    """The store's own document in the meta table (key ``store``)."""
    return {"schema_version": schema_version, "generation": generation}


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise StoreError(f"cannot read: {exc.strerror}", file=path) from exc


def read_snapshot(path: Path) -> Iterator[tuple[str, str, Document]]:
    """Every stored document as ``(table, key, doc without _key)``, in file order.

    A snapshot in the layout of :func:`encode_snapshot` is decoded a block of
    lines at a time, so that only one block is ever held twice; any other
    layout is decoded whole. Duplicate keys are the caller's to find.
    """
    try:
        with path.open("rb") as src:
            first, second = src.readline(), src.readline()
            if first == b"{\n" and (second == b"}\n" or _TABLE_LINE.fullmatch(second)):
                yield from _read_lines(src, second, path)
            else:
                src.seek(0)
                yield from _read_whole(src.read(), path)
    except OSError as exc:
        raise StoreError(f"cannot read: {exc.strerror}", file=path) from exc


def _read_lines(src: BinaryIO, line: bytes, path: Path) -> Iterator[tuple[str, str, Document]]:
    number = 2
    table: str | None = None
    block: list[bytes] = []
    after_doc = False  # the previous line was a document of this table
    more = True  # the previous line ended with a comma (or opened the database)
    while True:
        if table is None:
            if line == b"}\n" and not (more and number > 2):
                if src.read().strip():
                    raise StoreError("the snapshot goes on after its end", file=path, line=number)
                return
            found = _TABLE_LINE.fullmatch(line)
            if found is None or not more:
                raise StoreError(
                    "the snapshot is not one document per line", file=path, line=number
                )
            table, after_doc = json.loads(found.group(1)), False
        elif _DOC_LINE.match(line):
            if after_doc and not more:
                raise StoreError("a comma is missing in the snapshot", file=path, line=number)
            more, after_doc = line.endswith(b"},\n"), True
            block.append(line[: -2 if more else -1])
            if len(block) >= _SNAPSHOT_CHUNK_DOCS:
                yield from _decode_block(table, block, path, number)
                block = []
        elif line in (b"}\n", b"},\n"):
            if after_doc and more:
                raise StoreError("the snapshot has a stray comma", file=path, line=number)
            yield from _decode_block(table, block, path, number)
            table, block, more = None, [], line == b"},\n"
        else:
            raise StoreError("the snapshot is not one document per line", file=path, line=number)
        line = src.readline()
        number += 1
        if not line.endswith(b"\n"):
            raise StoreError("the snapshot ends early", file=path, line=number)


def _decode_block(
    table: str, block: list[bytes], path: Path, line: int
) -> Iterator[tuple[str, str, Document]]:
    if not block:
        return
    try:
        docs = json.loads(b"{" + b",".join(block) + b"}")
    except ValueError as exc:  # UnicodeDecodeError included
        raise StoreError(f"the snapshot is not valid JSON: {exc}", file=path, line=line) from exc
    except RecursionError:
        raise StoreError(
            "the snapshot holds a document nested too deeply", file=path, line=line
        ) from None
    if len(docs) != len(block):
        raise StoreError(f"table {table}: a document id is stored twice", file=path, line=line)
    for doc_id, doc in docs.items():
        yield table, _stored_key(table, doc_id, doc, path), doc


def _read_whole(data: bytes, path: Path) -> Iterator[tuple[str, str, Document]]:
    try:
        tables = json.loads(data)
    except ValueError as exc:
        raise StoreError(f"the snapshot is not valid JSON: {exc}", file=path) from exc
    except RecursionError:
        raise StoreError("the snapshot holds a document nested too deeply", file=path) from None
    del data
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise StoreError("the snapshot is not a TinyDB database", file=path)
    for name, docs in tables.items():
        for doc_id in list(docs):
            # Popped, so that each document is held once: here or by the caller.
            doc = docs.pop(doc_id)
            yield name, _stored_key(name, doc_id, doc, path), doc


def _stored_key(table: str, doc_id: str, doc: Any, path: Path) -> str:
    """The store key of a stored document, taken out of it."""
    key = doc.pop(KEY_FIELD, None) if isinstance(doc, dict) else None
    if not isinstance(key, str) or not (doc_id.isascii() and doc_id.isdigit()):
        raise StoreError(f"table {table}: document {doc_id} has no string {KEY_FIELD}", file=path)
    return key


def check_meta(meta: Document | None, path: Path, generation: int) -> None:
    """Refuse a snapshot whose ``store`` document is missing, too new, or of another generation."""
    meta = meta or {}
    version = meta.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise StoreError("the snapshot has no schema version", file=path)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the data store has schema version {version}, newer than this toma knows "
            f"({SCHEMA_VERSION}); upgrade toma",
            file=path,
        )
    if meta.get("generation") != generation:
        raise StoreError(
            f"the snapshot says generation {meta.get('generation')}, its name {generation}",
            file=path,
        )
