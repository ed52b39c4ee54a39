"""The conversations table: what came in (and what the owner wrote by hand), as asked of it.

The inbox writes it (:mod:`toma.inbox.record`); the reports, the notices and the
inbox's own bookkeeping ask here, by the fields PostgreSQL indexes
(:func:`~toma.store.records.query.matching`) where the question allows.
"""

from __future__ import annotations

from collections.abc import Iterator

from toma.store import CONVERSATIONS, Document, Reader
from toma.store.records.query import matching


def documents(reader: Reader) -> Iterator[Document]:
    """Every conversation entry, in store order."""
    return (doc for _key, doc in reader.all(CONVERSATIONS))


def find(reader: Reader, key: str) -> Document | None:
    return reader.get(CONVERSATIONS, key)


def about(reader: Reader, email: str) -> list[Document]:
    """The entries of ``email``'s conversation, and the untied bounces that name them
    (which belong to nobody, but are shown with each contact they name)."""
    own = [doc for _key, doc in matching(reader, CONVERSATIONS, contact=email)]
    named = [
        doc
        for _key, doc in matching(reader, CONVERSATIONS, kind="bounce")
        if doc.get("contact") != email and email in (doc.get("named") or ())
    ]
    return own + named


def set_aside_or_untied(reader: Reader) -> list[Document]:
    """The messages kept aside unread, and the bounces tied to nothing toma sent."""
    return [doc for doc in documents(reader) if doc.get("set_aside") or doc.get("untied")]


def not_notified(reader: Reader) -> list[tuple[str, Document]]:
    """The entries about a contact that no notice has told the owner of yet."""
    return [
        (key, doc)
        for key, doc in reader.all(CONVERSATIONS)
        if not doc.get("notified", True) and doc.get("contact")
    ]


def in_digest(reader: Reader, ref: str) -> list[Document]:
    """The entries a daily digest (``ref``) told of."""
    return [doc for doc in documents(reader) if doc.get("digest") == ref]


def read_sources(reader: Reader) -> tuple[set[str], set[str]]:
    """The mailbox keys already recorded, and the digests of the messages set aside."""
    seen: set[str] = set()
    aside: set[str] = set()
    for doc in documents(reader):
        seen.add(doc.get("source_key") or "")
        if doc.get("set_aside") and doc.get("sha256"):
            aside.add(doc["sha256"])
    return seen, aside
