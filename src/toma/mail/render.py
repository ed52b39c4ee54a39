"""Templates: YAML front matter, a sandboxed strict Jinja2 body in Markdown, an HTML layout.

Theory of operation
-------------------

A template file is front matter between ``---`` lines, then a Jinja2 body
written in Markdown::

    ---
    subject: "Good to meet you at {{ contact.met_where }}"
    layout: default            # templates/layouts/default.html (the default)
    ---
    Hi {{ contact.first_name }},
    ...

:class:`Templates` is made once per tick. It compiles each template the first
time it is asked for and keeps the result (or the error): compiling costs
milliseconds, rendering microseconds, and a tick renders one template for many
contacts. Each body is compiled twice, for two outputs:

* the **text** part is the body rendered as written: the Markdown source, which
  reads well as plain text;
* the **HTML** part is the body rendered with every substituted value escaped
  for Markdown (a value is data, so a company called ``*NSYNC`` or a name like
  ``[click](http://…)`` shows as written instead of turning into markup; ``|safe``
  opts out), then turned into HTML by Markdown with raw HTML disabled — so no
  field can put markup into the HTML part — and framed by the layout, where
  Jinja's HTML autoescaping applies.

All three run in Jinja's immutable sandbox with strict undefined values: a field
a contact lacks is a :class:`TemplateError`, never a "Hi ," in someone's inbox,
unless the template gives a default (``{{ contact.nickname | default(contact.first_name) }}``).

Every error names the template file and the line a user sees in their editor
(front matter lines included), and for a missing field, the field as written
(``contact.met_where is not defined``).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, Final

import yaml
from jinja2 import Template, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from toma.config import Config, Owner, close
from toma.core.contacts import Contact
from toma.errors import TemplateError
from toma.mail._skeletons import Collector, Shapes

LAYOUTS = "layouts"
DEFAULT_LAYOUT = "default"
# The front matter of a template: ``purpose`` (optional) says why the message is
# sent, for whoever edits it; it is never sent. ``pitch: ok`` silences the tone
# check of `toma check` (toma.core.tone); it is never sent either.
TEMPLATE_KEYS: Final = ("subject", "layout", "purpose", "pitch")
# Keys people reach for that a template cannot set: the envelope is the config's.
_HEADER_KEYS: Final = frozenset({"from", "to", "cc", "bcc", "reply_to", "reply-to", "sender"})
# The layout variables that show the way out: a layout naming none of them gets
# the footer put in before </body>.
_FOOTER_NAMES: Final = frozenset({"footer", "unsubscribe_url", "unsubscribe_mailto"})
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)

_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_LAYOUT_NAME = re.compile(r"[\w-][\w.-]*(/[\w-][\w.-]*)*")
_BLANK_LINES = re.compile(r"\n{3,}")
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


@dataclass(frozen=True)
class Rendered:
    """One template rendered for one recipient."""

    subject: str  # a single line
    text: str  # the plain-text part: the rendered Markdown source
    html: str  # the HTML part: Markdown -> HTML inside the layout
    front: dict[str, Any] = field(hash=False)  # every front-matter key, as YAML read it
    template: str = ""  # the name, relative to the templates folder


def sender_view(owner: Owner) -> dict[str, Any]:
    """What templates see as ``sender``.

    As for ``contact``, an empty value is absent, so that
    ``{{ sender.signature | default(sender.first_name) }}`` means what it says.
    """
    name = owner.name.strip()
    view = {
        "name": name,
        "first_name": name.split()[0] if name else "",
        "email": owner.email,
        "signature": owner.signature.strip("\n"),
        "postal_address": owner.postal_address.strip(),
    }
    return {key: value for key, value in view.items() if value}


def base_context(config: Config, contact: Contact, **extra: Any) -> dict[str, Any]:
    """The context every message starts from: ``contact`` and ``sender``, plus ``extra``.

    Nothing here depends on the moment: the same inputs render the same message,
    so a preview shows exactly what will be sent.
    """
    return {"contact": contact.template_view(), "sender": sender_view(config.owner), **extra}


# --------------------------------------------------------------------------- Jinja


class _Environment(ImmutableSandboxedEnvironment):
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


def _escape_markdown(text: str) -> str:
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
    return _escape_markdown(str(value))


def _environment(*, autoescape: bool, markdown_values: bool = False) -> _Environment:
    return _Environment(
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


def _markdown() -> MarkdownIt:
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
class _Unit:
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
class _Compiled:
    name: str
    file: Path
    front: Mapping[str, Any]
    subject: _Unit
    text: _Unit
    markdown: _Unit
    layout: _Unit
    skeleton: _Unit


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


def _compile(
    env: _Environment,
    source: str,
    *,
    file: Path,
    code_name: str,
    first_line: int,
    key: str | None = None,
) -> _Unit:
    try:
        tree = env.parse(source, name=code_name, filename=code_name)
        code = env.compile(tree, name=code_name, filename=code_name)
    except TemplateSyntaxError as exc:
        line = first_line + max((exc.lineno or 1) - 1, 0)
        raise TemplateError(
            exc.message or "template syntax error", file=file, line=line, key=key
        ) from None
    template = env.template_class.from_code(env, code, env.make_globals(None))
    return _Unit(template, file, code_name, first_line, _paths(tree), key)


def _frames(tb: TracebackType | None) -> Iterator[TracebackType]:
    while tb is not None:
        yield tb
        tb = tb.tb_next


def _runtime_error(exc: Exception, unit: _Unit, contact: str | None) -> TemplateError:
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


def _undefined_message(jinja_message: str, unit: _Unit, piece_line: int | None) -> str:
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


# --------------------------------------------------------------------------- files


def _read(file: Path) -> str:
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise TemplateError(f"cannot read the template: {exc.strerror}", file=file) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise TemplateError("the file is not UTF-8 text", file=file, line=line) from None
    # Files written on Windows: lines are counted as the editor shows them.
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


@dataclass(frozen=True)
class _Source:
    front: dict[str, Any]
    lines: dict[str, tuple[int, int]]  # key -> (line of the key, line of its value)
    body: str
    body_line: int


def _split(file: Path, text: str) -> _Source:
    lines = text.split("\n")
    if lines[0].rstrip() != "---":
        raise TemplateError(
            "a template starts with front matter: a line '---', 'subject: …', then '---' again",
            file=file,
            line=1,
        )
    for index in range(1, len(lines)):
        if lines[index].rstrip() == "---":
            close = index
            break
    else:
        raise TemplateError(
            "the front matter opened on line 1 is never closed by a line '---'", file=file, line=1
        )
    front, key_lines = _front_matter(file, "\n".join(lines[1:close]), lines)
    return _Source(front, key_lines, "\n".join(lines[close + 1 :]), close + 2)


def _front_matter(
    file: Path, text: str, lines: list[str]
) -> tuple[dict[str, Any], dict[str, tuple[int, int]]]:
    # Front matter starts on line 2 of the file; PyYAML counts from 0.
    offset = 2
    loader = _YAML_LOADER(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + offset if mark is not None else 1
        problem = exc.problem or "cannot be read"
        context = f" ({exc.context})" if exc.context else ""
        hint = ""
        if 0 < line <= len(lines) and re.match(r"\s*\w+:\s*\{", lines[line - 1]):
            hint = ' — a value starting with {{ must be quoted: subject: "{{ … }}"'
        raise TemplateError(
            f"the front matter is not valid YAML: {problem}{context}{hint}", file=file, line=line
        ) from None
    except yaml.YAMLError as exc:
        raise TemplateError(
            f"the front matter is not valid YAML: {exc}", file=file, line=1
        ) from None
    except RecursionError:
        # The pure-Python loader (and the C one's merge keys) descend once per level.
        raise TemplateError(
            "the front matter is nested too deeply to be read: write 'key: value' lines",
            file=file,
            line=offset,
        ) from None
    finally:
        loader.dispose()
    if node is None:  # nothing between the --- lines
        return {}, {}
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise TemplateError(
            "the front matter must be 'key: value' lines, such as 'subject: …'",
            file=file,
            line=offset,
        )
    key_lines: dict[str, tuple[int, int]] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value)
        here = (key_node.start_mark.line + offset, value_node.start_mark.line + offset)
        if key in key_lines:
            raise TemplateError(
                f"{key} is given twice (lines {key_lines[key][0]} and {here[0]})",
                file=file,
                line=here[0],
                key=key,
            )
        key_lines[key] = here
    return {str(k): v for k, v in data.items()}, key_lines


# --------------------------------------------------------------------------- Templates


class Templates:
    """The templates of one folder, compiled on first use and kept for the tick.

    ``layouts`` defaults to ``folder/layouts``; a folder of newsletters can share
    the templates' layouts by naming them. ``keys`` are the front-matter keys a
    file may have (``kind`` names them in errors): any other is an error, since a
    misspelt ``subjct:`` or a ``from:`` silently ignored is a message gone wrong.
    """

    def __init__(
        self,
        folder: Path,
        *,
        layouts: Path | None = None,
        keys: Collection[str] = TEMPLATE_KEYS,
        kind: str = "front-matter",
    ) -> None:
        self.folder = Path(folder)
        self.layouts = Path(layouts) if layouts is not None else self.folder / LAYOUTS
        self.keys = tuple(keys)
        self.kind = kind
        self._text_env = _environment(autoescape=False)
        self._markdown_env = _environment(autoescape=False, markdown_values=True)
        self._collector = Collector()
        self._skeleton_env = _environment(autoescape=False)
        self._skeleton_env.finalize = self._collector
        self._html_env = _environment(autoescape=True)
        self._md = _markdown()
        self._shapes = Shapes(self._md.render)
        self._compiled: dict[str, _Compiled | TemplateError] = {}
        self._layouts: dict[str, _Unit | TemplateError | None] = {}

    def names(self) -> list[str]:
        """Every template, as a path relative to the folder (``acquaintance/nice-to-meet.md``)."""
        if not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.rglob("*.md"):
            relative = path.relative_to(self.folder)
            if any(part.startswith(".") for part in relative.parts) or not path.is_file():
                continue
            if path.is_relative_to(self.layouts):
                continue
            found.append(relative.as_posix())
        return sorted(found)

    def check(self, name: str) -> None:
        """Compile ``name`` and its layout without rendering; raise what is wrong."""
        self._get(name, contact=None)

    def check_all(self) -> list[TemplateError]:
        """Every problem :meth:`check` finds, one per broken template."""
        problems = []
        for name in self.names():
            try:
                self.check(name)
            except TemplateError as exc:
                problems.append(exc)
        return problems

    def front(self, name: str) -> dict[str, Any]:
        """The front matter of ``name`` (``subject``, ``purpose``, ``send_at``, …)."""
        return dict(self._get(name, contact=None).front)

    def render(
        self, name: str, context: Mapping[str, Any], *, contact: str | None = None
    ) -> Rendered:
        """``name`` rendered with ``context``; ``contact`` (an address) is put on errors."""
        compiled = self._get(name, contact=contact)
        subject = " ".join(self._run(compiled.subject, context, contact).split())
        if not subject:
            raise TemplateError(
                "the subject is empty once rendered",
                file=compiled.file,
                line=compiled.subject.first_line,
                key="subject",
                contact=contact,
            )
        text = _tidy(self._run(compiled.text, context, contact))
        body = self._body(compiled, context, contact)
        frame = dict(context)
        for optional in ("unsubscribe_url", "unsubscribe_mailto"):
            if frame.get(optional) is None:
                # Lenient for the layout only, which serves messages with and without
                # them: falsy and printing as "" (so `{% if unsubscribe_url %}` works),
                # yet `is defined` is false.
                frame[optional] = Undefined(name=optional)
        if "postal_address" not in frame:
            sender = context.get("sender")
            frame["postal_address"] = (
                sender.get("postal_address", "") if isinstance(sender, Mapping) else ""
            )
        links = tuple(
            str(link)
            for link in (context.get("unsubscribe_url"), context.get("unsubscribe_mailto"))
            if link
        )
        footer = Footer(links, str(frame["postal_address"] or "")) if links else None
        if footer is not None and not footer.postal_address.strip():
            raise TemplateError(
                "a message with an unsubscribe footer (a newsletter, a sequence with "
                'unsubscribe = "footer") shows your postal address: set [owner] '
                "postal_address in config.toml",
                file=compiled.file,
                contact=contact,
            )
        frame["subject"] = subject
        frame["body"] = Markup(body)  # noqa: S704 - Markdown output, built with raw HTML off
        frame["footer"] = footer.html() if footer else Markup("")
        html = self._run(compiled.layout, frame, contact)
        if footer is not None:
            text = f"{text}\n{footer.text()}"
            html = self._with_footer(html, footer, compiled.layout)
        return Rendered(
            subject=subject, text=text, html=html, front=dict(compiled.front), template=name
        )

    def _with_footer(self, html: str, footer: Footer, layout: _Unit) -> str:
        """``html`` showing the way out and the postal address, or a TemplateError.

        A layout that names none of ``footer``, ``unsubscribe_url`` or
        ``unsubscribe_mailto`` gets the footer before ``</body>``; one that names
        them must show them.
        """
        if not any(_root(path) in _FOOTER_NAMES for _line, _last, path in layout.paths):
            ends = list(_BODY_END.finditer(html))
            at = ends[-1].start() if ends else len(html)
            return f"{html[:at]}{footer.html()}\n{html[at:]}"
        missing = footer.missing_from(html)
        if missing:
            raise TemplateError(
                f"the layout does not show {missing}, which every message with a way out "
                "carries: put {{ footer }} where it should go",
                file=layout.file,
            )
        return html

    # ------------------------------------------------------------------ internals

    def _body(self, compiled: _Compiled, context: Mapping[str, Any], contact: str | None) -> str:
        """The HTML of the body (see :mod:`toma.mail._skeletons` for the shortcut)."""

        def ordinary() -> str:
            rendered: str = self._md.render(self._run(compiled.markdown, context, contact))
            return rendered

        values: list[str] = []
        self._collector.values = values
        try:
            skeleton: str = compiled.skeleton.template.render(context)
        except Exception:  # noqa: BLE001 - NotPlain, or an error the ordinary path reports
            return ordinary()
        return self._shapes.html(compiled.name, skeleton, values, ordinary)

    def _run(self, unit: _Unit, context: Mapping[str, Any], contact: str | None) -> str:
        try:
            return unit.template.render(context)
        except Exception as exc:  # noqa: BLE001 - a template is user code: any error is theirs
            raise _runtime_error(exc, unit, contact) from None

    def _get(self, name: str, *, contact: str | None) -> _Compiled:
        key = PurePosixPath(name).as_posix()
        found = self._compiled.get(key)
        if found is None:
            try:
                found = self._compile_template(key)
            except TemplateError as exc:
                found = exc
            self._compiled[key] = found
        if isinstance(found, TemplateError):
            # A fresh exception each time: re-raising one object grows its traceback.
            raise TemplateError(
                found.message, file=found.file, line=found.line, key=found.key, contact=contact
            )
        return found

    def _file(self, name: str) -> Path:
        relative = PurePosixPath(name)
        file = self.folder / relative
        if relative.is_absolute() or ".." in relative.parts or relative.suffix != ".md":
            raise TemplateError(
                f"{name!r} is not a template name: use a path inside the templates folder "
                "ending in .md, such as acquaintance/nice-to-meet.md",
                file=file,
            )
        if not file.is_file():
            raise TemplateError(f"no template {name!r} in {self.folder}", file=file)
        return file

    def _compile_template(self, name: str) -> _Compiled:
        file = self._file(name)
        source = _split(file, _read(file))
        front = source.front
        for key, (line, _value_line) in source.lines.items():
            if key not in self.keys:
                raise TemplateError(self._unknown_key(key), file=file, line=line, key=key)
        if "subject" not in front:
            raise TemplateError(
                "the front matter has no subject: …", file=file, line=1, key="subject"
            )
        subject_line = source.lines["subject"][1]
        subject = front["subject"]
        if isinstance(subject, bool) or not isinstance(subject, str | int | float):
            hint = (
                ' (a subject starting with {{ must be quoted: "{{ … }}")'
                if isinstance(subject, dict)
                else ""
            )
            raise TemplateError(
                f"the subject must be text{hint}", file=file, line=subject_line, key="subject"
            )
        if not str(subject).strip():
            raise TemplateError("the subject is empty", file=file, line=subject_line, key="subject")
        code_name = str(file)
        subject_unit = _compile(
            self._text_env,
            str(subject),
            file=file,
            code_name=f"{code_name}#subject",
            first_line=subject_line,
            key="subject",
        )
        text_unit = _compile(
            self._text_env, source.body, file=file, code_name=code_name, first_line=source.body_line
        )
        markdown_unit = _compile(
            self._markdown_env,
            source.body,
            file=file,
            code_name=code_name,
            first_line=source.body_line,
        )
        layout = front.get("layout", DEFAULT_LAYOUT)
        layout_line = source.lines["layout"][1] if "layout" in source.lines else 1
        layout_unit = self._layout(layout, file, layout_line)
        skeleton_unit = _compile(
            self._skeleton_env,
            source.body,
            file=file,
            code_name=code_name,
            first_line=source.body_line,
        )
        return _Compiled(
            name, file, front, subject_unit, text_unit, markdown_unit, layout_unit, skeleton_unit
        )

    def _unknown_key(self, key: str) -> str:
        known = ", ".join(self.keys)
        if key.lower() in _HEADER_KEYS:
            return (
                f"{key!r} is not a {self.kind} key: a template cannot set {key}; the "
                f"sender is [owner] in config.toml (keys: {known})"
            )
        near = close(key, set(self.keys))
        hint = f" (did you mean {near}?)" if near else ""
        return f"{key!r} is not a {self.kind} key{hint}: use {known}"

    def _layout(self, layout: Any, template_file: Path, line: int) -> _Unit:
        if (
            not isinstance(layout, str)
            or not _LAYOUT_NAME.fullmatch(layout)
            or ".." in layout.split("/")
        ):
            raise TemplateError(
                f"{layout!r} is not a layout name: use a file name in "
                f"{self.layouts} without .html, such as 'default'",
                file=template_file,
                line=line,
                key="layout",
            )
        name = layout.removesuffix(".html")
        if name not in self._layouts:
            file = self.layouts / f"{name}.html"
            unit: _Unit | TemplateError | None = None
            if file.is_file():
                try:
                    unit = _compile(
                        self._html_env, _read(file), file=file, code_name=str(file), first_line=1
                    )
                except TemplateError as exc:
                    unit = exc
            self._layouts[name] = unit
        found = self._layouts[name]
        if found is None:
            raise TemplateError(
                f"the layout {name!r} does not exist: expected {self.layouts / (name + '.html')}",
                file=template_file,
                line=line,
                key="layout",
            )
        if isinstance(found, TemplateError):
            raise TemplateError(found.message, file=found.file, line=found.line)
        return found


@dataclass(frozen=True)
class Footer:
    """The postal address and the way out, as the text and the HTML part show them."""

    links: tuple[str, ...]  # the one-click page, the mailto: the first is shown
    postal_address: str

    @property
    def link(self) -> str:
        return self.links[0]

    def text(self) -> str:
        # "-- " is the signature separator: mail programs grey the footer out and
        # leave it out of the quote when someone replies.
        lines = [line.strip() for line in self.postal_address.splitlines() if line.strip()]
        return (
            "\n".join(["-- ", *lines, f"Rather not hear from me? Unsubscribe: {self.link}"]) + "\n"
        )

    def html(self) -> Markup:
        lines = [line.strip() for line in self.postal_address.splitlines() if line.strip()]
        address = "".join(f"{escape(line)}<br>" for line in lines)
        return Markup(  # noqa: S704 - every value escaped above and below
            '<p style="margin-top:32px;font-size:12px;color:#777777;">'
            f"{address}Rather not hear from me? "
            f'<a href="{escape(self.link)}" style="color:#777777;">Unsubscribe</a>.</p>'
        )

    def missing_from(self, html: str) -> str:
        """What of the footer ``html`` does not show: "" when it shows it all."""
        absent = []
        if not any(link in html or escape(link) in html for link in self.links):
            absent.append("the unsubscribe link")
        for line in self.postal_address.splitlines():
            if line.strip() and escape(line.strip()) not in html:
                absent.append("the postal address ([owner] postal_address)")
                break
        return " and ".join(absent)


def _root(path: str) -> str:
    """``contact`` of ``contact.met_where`` or ``contact['x']``."""
    return re.split(r"[.\[]", path, maxsplit=1)[0]


def _tidy(text: str) -> str:
    """The text part as a person reads it: no trailing spaces, no runs of blank lines."""
    lines = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", lines).strip("\n") + "\n"
