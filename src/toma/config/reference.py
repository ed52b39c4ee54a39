"""The configuration reference: every key config.toml accepts, with its description.

Two sources, each the authority for its half:

- *which* keys exist is what the parser accepts: every section function of
  :mod:`toma.config.sections` is run on empty tables with a :class:`Reader`
  that records each ``table()`` call and its allowed keys;
- *what a key means* is the comment beside it, or the comment block above it,
  in the starter ``config.example.toml`` (a key written commented-out, ``#
  key = …``, counts, and so does ``or: key = …`` in a trailing comment).

:func:`reference` joins them and names what is missing on either side; the
documentation (``docs/hooks/config_reference.py``) renders it, and
``tests/ops/test_config_reference.py`` fails while a key is accepted without a
description or described without being accepted.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path

from toma.config import sections
from toma.config.load import TOP_LEVEL
from toma.config.reader import Reader
from toma.config.senders import SENDER_KEYS
from toma.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "project" / "starter" / "config.toml"
WINDOW = "windows.NAME"
# Keys the parser takes only to refuse them with a message: documented, never shown as examples.
REFUSED = {
    "password": "refused, with a message: a password belongs in the environment "
    "(password_env) or a file (password_file), never in config.toml",
    "dsn": "refused, with a message: a DSN holds a password and belongs in the environment "
    "(dsn_env) or a file (dsn_file), never in config.toml",
}

_SECTION = re.compile(r"^#?\s*\[\[?([A-Za-z_][\w.]*)\]\]?\s*$")  # [table], [[array]]
_KEY = re.compile(r"^(#?)\s*([A-Za-z_]\w*)\s*=\s*(.*)$")
_ALIAS = re.compile(r"\bor:\s*([A-Za-z_]\w*)\s*=\s*(.*)$")


def _section_name(name: str) -> str:
    return WINDOW if name.startswith("windows.") else name


def accepted_keys() -> dict[str, frozenset[str]]:
    """Section -> the keys the parser accepts there (``windows.NAME`` for every window)."""
    reader = Reader(Path("config.toml"), "")
    raw: dict[str, dict[str, object]] = {name: {} for name in TOP_LEVEL}
    raw["windows"] = {"default": {}}
    for name in sorted(TOP_LEVEL):
        function = getattr(sections, name, None)
        if function is None:
            continue
        required = [
            p
            for p in inspect.signature(function).parameters.values()
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        extra = len(required) - 2
        with contextlib.suppress(ConfigError):
            function(reader, raw, *(["UTC"] * extra))
    accepted = {_section_name(name): keys for name, keys in reader.tables.items()}
    # [[senders]] is an array of tables, read by toma.config.senders, not by a section.
    accepted["senders"] = frozenset(SENDER_KEYS)
    return accepted


@dataclass(frozen=True)
class Described:
    section: str
    key: str
    example: str  # the value as the example writes it
    description: str
    commented: bool  # written "# key = …": optional, off unless set


def described_keys(text: str) -> list[Described]:
    """Every key written in the example, with the prose that describes it."""
    found: list[Described] = []
    section = ""
    prose: list[str] = []  # the comment block that applies to the keys that follow
    after_key = False
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line:
            prose, after_key = [], False
            continue
        header = _SECTION.match(line)
        if header:
            section, prose, after_key = _section_name(header.group(1)), [], False
            continue
        key = _KEY.match(line)
        if key and section:
            value, _, trailing = key.group(3).partition("  #")
            trailing = trailing.strip().lstrip("#").strip()
            alias = _ALIAS.search(trailing)
            own = _ALIAS.sub("", trailing).strip().rstrip(";,").strip()
            text_of = " ".join([*prose, own]).strip()
            commented = bool(key.group(1))
            found.append(Described(section, key.group(2), value.strip(), text_of, commented))
            if alias:
                found.append(
                    Described(section, alias.group(1), alias.group(2).strip(), text_of, commented)
                )
            after_key = True
            continue
        if line.startswith("#"):
            if after_key:
                prose, after_key = [], False
            prose.append(line.lstrip("#").strip())
    return found


@dataclass(frozen=True)
class Reference:
    sections: dict[str, list[Described]] = field(default_factory=dict)
    undescribed: list[str] = field(default_factory=list)  # accepted, no description
    unknown: list[str] = field(default_factory=list)  # described, not accepted


def reference(text: str | None = None) -> Reference:
    """The accepted keys with their descriptions, in the example's order."""
    accepted = accepted_keys()
    written = described_keys(EXAMPLE.read_text(encoding="utf-8") if text is None else text)
    result = Reference()
    seen: set[tuple[str, str]] = set()
    for item in written:
        if item.key not in accepted.get(item.section, frozenset()):
            result.unknown.append(f"{item.section}.{item.key}")
            continue
        if (item.section, item.key) in seen:
            continue
        seen.add((item.section, item.key))
        if not item.description:
            result.undescribed.append(f"{item.section}.{item.key}")
            continue
        result.sections.setdefault(item.section, []).append(item)
    for section, keys in sorted(accepted.items()):
        for key in sorted(keys):
            if (section, key) in seen:
                continue
            if key in REFUSED:
                item = Described(section, key, "…", REFUSED[key], commented=True)
                result.sections.setdefault(section, []).append(item)
            else:
                result.undescribed.append(f"{section}.{key}")
    return result


def markdown(ref: Reference) -> str:
    """The reference as Markdown: a table per section."""
    out: list[str] = []
    for section, items in ref.sections.items():
        out += [f"### `[{section}]`", "", "| key | example | what it is |", "|---|---|---|"]
        for item in items:
            example = item.example.replace("|", "\\|")
            note = " *(optional)*" if item.commented else ""
            description = item.description.replace("|", "\\|")
            out.append(f"| `{item.key}` | `{example}` | {description}{note} |")
        out.append("")
    return "\n".join(out)
