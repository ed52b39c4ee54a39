"""The embedded store's documents in memory, frozen, and a transaction's view of them.

Theory of operation: see :mod:`toma.store.embedded.tinydb`. Every committed
document is held as a frozen tuple (:data:`Frozen`): plain tuples of shared
strings, which the garbage collector stops tracking after one look, so that a
million documents neither cost a dict each nor slow every collection down. A
:class:`Transaction` reads the committed state through its own writes.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator, Mapping
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from toma.errors import StoreError
from toma.store.base import META, TABLES, Changed, ChangeMark, Document
from toma.store.embedded import journal, snapshot
from toma.store.embedded.snapshot import STORE_META_KEY

# Changes remembered for the change feed; a reader further behind reloads everything.
_FEED_LIMIT = 1 << 16

_intern = sys.intern


# -- documents -----------------------------------------------------------------


Shape = tuple[tuple[str, ...], tuple[int, ...], int]
"""The names of the fields whose values a frozen dict holds, the positions among
them that hold a frozen dict or list, and the number of the dict's template in
:data:`_TEMPLATES` (``_NO_TEMPLATE`` when every field is held)."""

Frozen = tuple[Any, ...]
"""A frozen dict, ``(*values, shape)``, or a frozen list, ``(*values, _FLAT_LIST)`` or
``(*values, _DEEP_LIST)`` when it holds dicts or lists itself.

Values are strings (shared, see :class:`Freezer`), numbers, booleans, None or
frozen dicts and lists. Only plain tuples of such values: the garbage collector
stops tracking them after one look, so a million documents do not slow every
collection down (a dict in a shape would keep every document tracked; hence
the template's number rather than the template).
"""


# The ends of frozen lists (a frozen dict ends with its shape, a tuple).
_FLAT_LIST = None
_DEEP_LIST = False

# A field whose value is null or "" is left out of its frozen dict, and put back
# from the shape's template: documents are full of them (no error code, no retry
# date, an unknown last name), a slot each. Found by a dict lookup, which never
# takes 0, False or 0.0 for "" (they hash alike but compare unequal).
_OMITTED: dict[Any, int] = {None: 0, "": 1}
_OMITTED_VALUES: tuple[Any, ...] = (None, "")

# Every field of a dict in its order, with the omitted values: a thawed dict is a
# copy of its template with the held values put in, so it keeps the order of the
# dict that was frozen. Shared by every store of the process; never changed once
# added, and as few as the distinct (fields, omitted fields) seen.
_TEMPLATES: list[Document] = []
_TEMPLATE_NUMBERS: dict[tuple[tuple[str, ...], tuple[int | None, ...]], int] = {}
_NO_TEMPLATE = -1

# The types of the values of the frozen lists and dicts that are shared.
_SHAREABLE = frozenset({str, type(None), tuple})

_Fields = tuple[tuple[str, ...], tuple[int, ...]]
"""A dict's field names, and the positions of the dicts and lists among its values."""


class _Layout(NamedTuple):
    """How to freeze the dicts of some fields, some of them null or "" (see Freezer)."""

    # The omitted values of a dict, taken out of its values (None: nothing is
    # omitted); a dict can be frozen so if they equal ``omitted``.
    probe: Callable[[list[Any]], Any] | None
    omitted: Any
    shape: Shape
    # The frozen dict, from its values followed by the shape.
    pick: Callable[[list[Any]], Frozen]


def _make_layout(fields: _Fields, codes: tuple[int | None, ...], values: list[Any]) -> _Layout:
    """The layout of the dicts of ``fields`` that omits the values ``codes`` name (the
    codes of ``_OMITTED`` of ``values``, one of those dicts)."""
    names, nested = fields
    held = [i for i, code in enumerate(codes) if code is None]
    stored_names = tuple([_intern(names[i]) for i in held])
    if len(held) == len(names):
        return _Layout(None, None, (stored_names, nested, _NO_TEMPLATE), tuple)
    number = _TEMPLATE_NUMBERS.get((names, codes))
    if number is None:
        template = {
            _intern(name): None if code is None else _OMITTED_VALUES[code]
            for name, code in zip(names, codes, strict=True)
        }
        _TEMPLATES.append(template)
        number = _TEMPLATE_NUMBERS[names, codes] = len(_TEMPLATES) - 1
    # Dicts and lists are never omitted: their positions among the held values.
    shape = (stored_names, tuple([held.index(i) for i in nested]), number)
    probe = itemgetter(*[i for i, code in enumerate(codes) if code is not None])
    # itemgetter of one position gives the item itself, not a tuple of it.
    pick = itemgetter(*held, len(names)) if held else _shape_only
    return _Layout(probe, probe(values), shape, pick)


def _shape_only(values: list[Any]) -> Frozen:
    return (values[-1],)


class Freezer:
    """Makes frozen dicts, keeping one :data:`Shape` per distinct set of fields and
    omitted values.

    Equal values are shared: one string object for every copy of a string (a
    contact's address is its key, its ``email`` and the ``contact`` of each of
    its enrolments and messages), and one frozen list or dict for every copy
    of a flat one of strings (tags, custom fields). The tables that find them
    are the store's own rather than :func:`sys.intern`'s, so that they can
    forget what is not shared (see :meth:`prune`): at 100k contacts the strings
    held in one place only (message keys, message ids, enrolment keys) would
    otherwise cost tens of MB of table for nothing.

    The null and "" values of a dict are left out (see ``_OMITTED``). Which
    fields are left out is decided per set of fields, from the last dict that
    did not fit: a dict whose values are null or "" where the last one's were
    is frozen without asking anything else of it; a dict that has a few more
    of them merely keeps those.
    """

    def __init__(self) -> None:
        self._layouts: dict[_Fields, _Layout] = {}  # the last one used, per set of fields
        self._every_layout: dict[tuple[_Fields, tuple[int | None, ...]], _Layout] = {}
        self._strings: dict[str, str] = {}
        self._flat: dict[Frozen, Frozen] = {}
        self._pruned_size = 0

    def share(self, text: str) -> str:
        """The shared copy of ``text``."""
        return self._strings.setdefault(text, text)

    def freeze(self, doc: Mapping[str, Any]) -> Frozen:
        """``doc`` frozen; it must be a dict of JSON values (str, int, float, bool, None,
        dict, list), as json decodes them."""
        share = self._strings.setdefault
        values = [share(v, v) if type(v) is str else v for v in doc.values()]
        nested: tuple[int, ...] = ()
        # A dict holding only strings, numbers and None is not tracked by the
        # garbage collector (see gc.is_tracked): most documents skip the search.
        if gc.is_tracked(doc):
            nested = tuple([i for i, v in enumerate(values) if type(v) is dict or type(v) is list])
            for i in nested:
                values[i] = self._freeze_nested(values[i])
        fields = (tuple(doc), nested)
        layout = self._layouts.get(fields)
        if layout is None or (layout.probe is not None and layout.probe(values) != layout.omitted):
            key = (fields, tuple(map(_OMITTED.get, values)))
            layout = self._every_layout.get(key)
            if layout is None:
                layout = self._every_layout[key] = _make_layout(fields, key[1], values)
            self._layouts[fields] = layout
        values.append(layout.shape)
        return layout.pick(values)

    def _freeze_nested(self, value: Any) -> Frozen:
        if type(value) is dict:
            frozen = self.freeze(value)
            flat = not frozen[-1][1]
        else:
            share = self._strings.setdefault
            items = [share(v, v) if type(v) is str else v for v in value]
            end = _FLAT_LIST
            for i, item in enumerate(items):
                if type(item) is dict or type(item) is list:
                    items[i], end = self._freeze_nested(item), _DEEP_LIST
            items.append(end)
            frozen = tuple(items)
            flat = end is _FLAT_LIST
        # Only strings and None (and the shape, the one tuple in a flat dict):
        # equal numbers of other types (1, 1.0, True) would be taken for one another.
        if flat and all(map(_SHAREABLE.__contains__, map(type, frozen))):
            return self._flat.setdefault(frozen, frozen)
        return frozen

    def prune(self) -> None:
        """Forget the values held in fewer than :data:`_SHARED_PLACES` places.

        A value that a document or two hold (a message id, a key) is not worth
        its place in a table; one that many hold (a sequence name, a moment
        written by one commit, an address) is kept, for the documents to come.
        Whatever the documents no longer hold at all goes too, so that the
        tables never keep removed documents alive.
        """
        self._strings = _shared(self._strings)
        self._flat = _shared(self._flat)
        self._pruned_size = len(self._strings) + len(self._flat)

    def prune_if_grown(self) -> None:
        """:meth:`prune` once the tables have doubled since it last ran."""
        if len(self._strings) + len(self._flat) > max(2 * self._pruned_size, _PRUNE_MIN):
            self.prune()


# How many places (documents, table keys, or anything else) must hold a value for
# the freezer's tables to keep it through a prune. A message's key is held by its
# table and its document, and in the daemon twice more by the planner's model:
# four places, and still not a value that documents to come will repeat.
_SHARED_PLACES = 5
# References to a value while _shared looks at it: the table's key and value, the
# comprehension's variable, getrefcount's argument.
_TABLE_REFS = 4
# Tables smaller than this are never pruned between loads: not worth the pass.
_PRUNE_MIN = 1 << 16


def _shared(table: dict[Any, Any]) -> dict[Any, Any]:
    """The entries of ``table`` whose value is held in at least _SHARED_PLACES places."""
    count = sys.getrefcount
    limit = _TABLE_REFS + _SHARED_PLACES
    return {value: value for value in table if count(value) >= limit}


def thaw(frozen: Frozen) -> Document:
    """A new dict (and new nested dicts and lists) from a frozen one."""
    fields, nested, template = frozen[-1]
    # zip stops at the last field, before the shape.
    if template == _NO_TEMPLATE:
        doc = dict(zip(fields, frozen, strict=False))
    else:
        # Copying a dict and replacing values is no slower than building one.
        doc = _TEMPLATES[template].copy()
        doc.update(zip(fields, frozen, strict=False))
    for i in nested:
        doc[fields[i]] = _thaw_nested(frozen[i])
    return doc


def _thaw_nested(frozen: Frozen) -> Any:
    end = frozen[-1]
    if end is _FLAT_LIST:
        return list(frozen[:-1])
    if end is _DEEP_LIST:
        return [_thaw_nested(v) if type(v) is tuple else v for v in frozen[:-1]]
    return thaw(frozen)


# -- memory ------------------------------------------------------------------------------


class Memory:
    """The tables as of one point of the files: ``generation``, ``journal_end``."""

    def __init__(self, generation: int, snapshot_size: int) -> None:
        self.tables: dict[str, dict[str, Frozen]] = {name: {} for name in TABLES}
        # A freezer per memory: its tables find the values this memory holds.
        self.freezer = Freezer()
        self.generation = generation
        self.snapshot_size = snapshot_size
        self.journal_end = 0
        self.journal_lines = 0
        self.journal_checked = False  # a line of the journal so far had a checksum
        self.torn: journal.TornTail | None = None  # found at the journal's end, not yet cut
        # The change feed (see the module docstring): ``feed[i]`` is change number
        # ``feed_start + i`` of this memory, whose identity is ``feed_token``.
        self.feed_token = object()
        self.feed: list[Changed] = []
        self.feed_start = 0
        self.feeding = False  # off while loading: a new memory starts a new feed anyway

    def has(self, table: str, key: str) -> bool:
        return key in self.tables.get(table, {})

    def get(self, table: str, key: str) -> Document | None:
        frozen = self.tables.get(table, {}).get(key)
        return None if frozen is None else thaw(frozen)

    def items(self, table: str) -> Iterator[tuple[str, Document]]:
        docs = self.tables.get(table, {})
        # Keys are taken now, so writes during the iteration cannot break it.
        return self._yield(docs, list(docs))

    @staticmethod
    def _yield(docs: dict[str, Frozen], keys: list[str]) -> Iterator[tuple[str, Document]]:
        for key in keys:
            frozen = docs.get(key)
            if frozen is not None:
                yield key, thaw(frozen)

    def count(self, table: str) -> int:
        return len(self.tables.get(table, {}))

    def apply(self, table: str, key: str, frozen: Frozen | None) -> None:
        docs = self.tables.setdefault(table, {})
        if frozen is None:
            if docs.pop(key, None) is None:
                return
        else:
            key = self.freezer.share(key)
            # Replacing in place keeps the document's position in all().
            docs[key] = frozen
        if self.feeding:
            feed = self.feed
            feed.append((table, key, frozen is None))
            if len(feed) > _FEED_LIMIT:
                drop = len(feed) // 2
                del feed[:drop]
                self.feed_start += drop

    def mark(self) -> ChangeMark:
        return ChangeMark(self.feed_token, self.feed_start + len(self.feed))

    def changed_since(self, mark: ChangeMark) -> list[Changed] | None:
        if mark.source is not self.feed_token or mark.position < self.feed_start:
            return None
        return self.feed[mark.position - self.feed_start :]

    def snapshot_docs(self, table: str, meta: Document) -> Iterator[tuple[str, Document]]:
        """The documents of ``table`` to write to a snapshot whose store document is ``meta``."""
        for key, frozen in self.tables[table].items():
            if table == META and key == STORE_META_KEY:
                yield key, meta
            else:
                yield key, thaw(frozen)


# -- checks shared by the store and its transactions -------------------------------------


def check_table(table: str, data_dir: Path) -> None:
    if table not in TABLES:
        raise StoreError(f"unknown table {table!r} (known: {', '.join(TABLES)})", file=data_dir)


def check_key(table: str, key: str, data_dir: Path) -> None:
    check_table(table, data_dir)
    if not isinstance(key, str):
        raise StoreError(f"{table}: a key must be a string, not {key!r}", file=data_dir)
    if table == META and key == STORE_META_KEY:
        raise StoreError(f"{META}/{STORE_META_KEY} is kept by the store itself", file=data_dir)


# -- transactions ------------------------------------------------------------------------


class Write(NamedTuple):
    encoded: bytes | None  # None: delete
    frozen: Frozen | None


DELETE = Write(None, None)


class MemoryTransaction:
    """Committed state plus this transaction's own writes."""

    def __init__(self, memory: Memory, data_dir: Path) -> None:
        self._memory = memory
        self._freezer = memory.freezer
        self._dir = data_dir
        self._writes: dict[str, dict[str, Write]] = {}
        self._open = True

    def get(self, table: str, key: str) -> Document | None:
        self._check(table)
        write = self._writes.get(table, {}).get(key)
        if write is None:
            return self._memory.get(table, key)
        return None if write.frozen is None else thaw(write.frozen)

    def all(self, table: str) -> Iterator[tuple[str, Document]]:
        self._check(table)
        return self._merged(table, dict(self._writes.get(table, {})))

    def _merged(self, table: str, mine: dict[str, Write]) -> Iterator[tuple[str, Document]]:
        committed = self._memory.items(table)
        new = [(key, w) for key, w in mine.items() if not self._memory.has(table, key)]
        for key, doc in committed:
            write = mine.get(key)
            if write is None:
                yield key, doc
            elif write.frozen is not None:
                yield key, thaw(write.frozen)
        for key, write in new:
            if write.frozen is not None:
                yield key, thaw(write.frozen)

    def count(self, table: str) -> int:
        self._check(table)
        count = self._memory.count(table)
        for key, write in self._writes.get(table, {}).items():
            exists = self._memory.has(table, key)
            count += (write.frozen is not None and not exists) - (write.frozen is None and exists)
        return count

    def put(self, table: str, key: str, doc: Document) -> None:
        self._check(table)
        check_key(table, key, self._dir)
        where = f"{table}/{key}"
        if not isinstance(doc, dict):
            raise StoreError(f"{where}: a document must be a dict", file=self._dir)
        if snapshot.KEY_FIELD in doc:
            raise StoreError(f"{where}: the field {snapshot.KEY_FIELD} is reserved", file=self._dir)
        try:
            encoded, copy = snapshot.normalise_doc(doc)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{where}: the document is not JSON: {exc}", file=self._dir) from exc
        self._writes.setdefault(table, {})[key] = Write(encoded, self._freezer.freeze(copy))

    def delete(self, table: str, key: str) -> None:
        self._check(table)
        check_key(table, key, self._dir)
        self._writes.setdefault(table, {})[key] = DELETE

    def changes(self) -> list[tuple[str, str, Write]]:
        """The writes that change something; deleting an absent key does not."""
        return [
            (table, key, write)
            for table, writes in self._writes.items()
            for key, write in writes.items()
            if write.frozen is not None or self._memory.has(table, key)
        ]

    def close(self) -> None:
        self._open = False

    def _check(self, table: str) -> None:
        if not self._open:
            raise StoreError("the transaction is over; open a new one", file=self._dir)
        check_table(table, self._dir)
