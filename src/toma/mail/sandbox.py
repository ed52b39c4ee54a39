"""The Jinja sandbox templates run in, and compiled templates whose errors name lines.

Three environments share one sandbox (immutable, strict about undefined values,
reading dictionaries by key first): the text part as written, the HTML part with
every substituted value escaped for Markdown, and the layout with Jinja's HTML
autoescaping. A :class:`Unit` is one compiled piece (subject, body or layout) that
knows where its first line sits in the file, so :func:`runtime_error` can name the
line a user sees in their editor.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from jinja2 import Template, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markdown_it import MarkdownIt
from markupsafe import Markup

from toma.errors import TemplateError

# Characters that are Markdown syntax anywhere in a line. A backslash before any
# ASCII punctuation renders as the character itself, so escaping is always safe.
_MD_INLINE = re.compile(r"([\\`*_\[\]<>&~|!])")
# ... and constructs that only mean something at the start of a line.
_MD_LINE_START = re.compile(r"^([ \t]*)([#+=-]|\d+[.)])", re.MULTILINE)
# Jinja's messages for a missing value: "'x' is undefined", "'dict object' has no
# attribute 'x'", "... has no element 0".
_UNDEFINED_NAME = re.compile(
    r"^'(?P<name>.+)' is undefined$|has no attribute '(?P<attr>.+)'$"
    r"|has no element (?P<element>.+)$"
)


class Environment(ImmutableSandboxedEnvironment):
    """The sandbox, reading dictionaries by key first.

    Contexts are dictionaries of data, so ``contact.items`` is a custom field
    named "items", not the ``dict.items`` method Jinja would otherwise prefer.
    Immutable: a template cannot change the data other templates will see.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)


def escape_markdown(text: str) -> str:
    return _MD_LINE_START.sub(_escape_line_start, _MD_INLINE.sub(r"\\\1", text))


def _escape_line_start(match: re.Match[str]) -> str:
    indent, mark = match.groups()
    # "1." starts a list: the backslash goes before the punctuation, not the digits.
    return f"{indent}{mark[:-1]}\\{mark[-1]}"


def _markdown_value(value: Any) -> Any:
    """Values substituted into the Markdown for the HTML part are text, not markup."""
    if isinstance(value, Undefined | Markup):
        # Undefined: let it fail (or print) as strict undefined does; Markup: `|safe`.
        return value
    return escape_markdown(str(value))


def environment(*, autoescape: bool, markdown_values: bool = False) -> Environment:
    return Environment(
        autoescape=autoescape,
        undefined=StrictUndefined,
        # Block tags on their own line leave no blank line behind: in Markdown a
        # stray blank line ends a list or a paragraph.
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_markdown_value if markdown_values else None,
        auto_reload=False,
        cache_size=0,
    )


def markdown() -> MarkdownIt:
    md = MarkdownIt(
        "commonmark",
        {
            # Raw HTML in the body would let a field value carry markup into the
            # HTML part; HTML belongs in the layout.
            "html": False,
            # An email is a letter: "Best,\nJane" must stay on two lines in HTML
            # as it does in the text part.
            "breaks": True,
            "typographer": True,
        },
    )
    # Curly quotes only: the "replacements" rule would turn "(c)" into "©" in the
    # HTML while the text part keeps "(c)".
    md.enable(["smartquotes", "table", "strikethrough"])
    if importlib.util.find_spec("linkify_it") is not None:
        md.options["linkify"] = True
        md.enable("linkify")
    return md


@dataclass(frozen=True)
class Unit:
    """One compiled piece (subject, body, layout) and how to point into its file."""

    template: Template
    file: Path
    code_name: str  # the file name Jinja gave the compiled code, found in tracebacks
    first_line: int  # the line of the file where the piece's line 1 is
    paths: tuple[tuple[int, str, str], ...]  # (line, last name, expression as written)
    key: str | None = None

    def line(self, piece_line: int | None) -> int:
        return self.first_line + max((piece_line or 1) - 1, 0)


@dataclass(frozen=True)
class Compiled:
    name: str
    file: Path
    front: Mapping[str, Any]
    subject: Unit
    text: Unit
    markdown: Unit
    layout: Unit
    skeleton: Unit


def _expression(node: nodes.Node) -> str | None:
    """``contact.met_where`` for the node that reads it, or None if not a plain path."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        base = _expression(node.node)
        return None if base is None else f"{base}.{node.attr}"
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        base = _expression(node.node)
        return None if base is None else f"{base}[{node.arg.value!r}]"
    return None


def _paths(tree: nodes.Template) -> tuple[tuple[int, str, str], ...]:
    found = []
    for node in tree.find_all((nodes.Name, nodes.Getattr, nodes.Getitem)):
        text = _expression(node)
        if text is None or getattr(node, "ctx", "load") != "load":
            continue
        if isinstance(node, nodes.Name):
            last = node.name
        elif isinstance(node, nodes.Getattr):
            last = node.attr
        else:
            assert isinstance(node, nodes.Getitem)  # noqa: S101 - _expression checked it
            assert isinstance(node.arg, nodes.Const)  # noqa: S101
            last = node.arg.value if isinstance(node.arg.value, str) else repr(node.arg.value)
        found.append((node.lineno, last, text))
    return tuple(found)


def compile_unit(
    env: Environment,
    source: str,
    *,
    file: Path,
    code_name: str,
    first_line: int,
    key: str | None = None,
) -> Unit:
    try:
        tree = env.parse(source, name=code_name, filename=code_name)
        code = env.compile(tree, name=code_name, filename=code_name)
    except TemplateSyntaxError as exc:
        line = first_line + max((exc.lineno or 1) - 1, 0)
        raise TemplateError(
            exc.message or "template syntax error", file=file, line=line, key=key
        ) from None
    template = env.template_class.from_code(env, code, env.make_globals(None))
    return Unit(template, file, code_name, first_line, _paths(tree), key)


def _frames(tb: TracebackType | None) -> Iterator[TracebackType]:
    while tb is not None:
        yield tb
        tb = tb.tb_next


def runtime_error(exc: Exception, unit: Unit, contact: str | None) -> TemplateError:
    """What went wrong while rendering, said in the template's terms, at its line."""
    piece_line = None
    for tb in _frames(exc.__traceback__):
        # Jinja rewrites tracebacks so that template frames carry the template's
        # own file name and line; the deepest is where the template failed.
        if tb.tb_frame.f_code.co_filename == unit.code_name:
            piece_line = tb.tb_lineno
    if isinstance(exc, SecurityError):
        message = f"not allowed in a template: {exc}"
    elif isinstance(exc, UndefinedError):
        message = _undefined_message(str(exc), unit, piece_line)
    else:
        message = f"the template failed: {type(exc).__name__}: {exc}"
    return TemplateError(
        message, file=unit.file, line=unit.line(piece_line), key=unit.key, contact=contact
    )


def _undefined_message(jinja_message: str, unit: Unit, piece_line: int | None) -> str:
    match = _UNDEFINED_NAME.search(jinja_message)
    if not match:
        return jinja_message
    name = match["name"] or match["attr"] or match["element"]
    candidates = [(line, text) for line, last, text in unit.paths if last == name]
    # Jinja reports the line of the statement; an expression may span lines, so
    # the nearest candidate at or before that line is the one that was read.
    before = [c for c in candidates if piece_line is None or c[0] <= (piece_line or 0)]
    chosen = max(before, key=lambda c: c[0]) if before else (candidates[0] if candidates else None)
    written = chosen[1] if chosen else name
    return (
        f"{written} is not defined (give a default, as in "
        f'{{{{ {written} | default("…") }}}}, or test it with `is defined`)'
    )
