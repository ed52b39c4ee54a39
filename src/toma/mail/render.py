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

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Final

from jinja2 import Undefined
from markupsafe import Markup, escape

from toma.config import Config, Owner, close
from toma.core.contacts import Contact
from toma.core.messages import DEFAULT_LAYOUT
from toma.errors import TemplateError
from toma.mail._skeletons import Collector, Shapes
from toma.mail.frontmatter import read_text, split
from toma.mail.sandbox import (
    Compiled,
    Unit,
    compile_unit,
    environment,
    markdown,
    runtime_error,
)

LAYOUTS = "layouts"
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

_LAYOUT_NAME = re.compile(r"[\w-][\w.-]*(/[\w-][\w.-]*)*")
_BLANK_LINES = re.compile(r"\n{3,}")


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
        self._text_env = environment(autoescape=False)
        self._markdown_env = environment(autoescape=False, markdown_values=True)
        self._collector = Collector()
        self._skeleton_env = environment(autoescape=False)
        self._skeleton_env.finalize = self._collector
        self._html_env = environment(autoescape=True)
        self._md = markdown()
        self._shapes = Shapes(self._md.render)
        self._compiled: dict[str, Compiled | TemplateError] = {}
        self._layouts: dict[str, Unit | TemplateError | None] = {}

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

    def _with_footer(self, html: str, footer: Footer, layout: Unit) -> str:
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

    def _body(self, compiled: Compiled, context: Mapping[str, Any], contact: str | None) -> str:
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

    def _run(self, unit: Unit, context: Mapping[str, Any], contact: str | None) -> str:
        try:
            return unit.template.render(context)
        except Exception as exc:  # noqa: BLE001 - a template is user code: any error is theirs
            raise runtime_error(exc, unit, contact) from None

    def _get(self, name: str, *, contact: str | None) -> Compiled:
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

    def _compile_template(self, name: str) -> Compiled:
        file = self._file(name)
        source = split(file, read_text(file))
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
        subject_unit = compile_unit(
            self._text_env,
            str(subject),
            file=file,
            code_name=f"{code_name}#subject",
            first_line=subject_line,
            key="subject",
        )
        text_unit = compile_unit(
            self._text_env, source.body, file=file, code_name=code_name, first_line=source.body_line
        )
        markdown_unit = compile_unit(
            self._markdown_env,
            source.body,
            file=file,
            code_name=code_name,
            first_line=source.body_line,
        )
        layout = front.get("layout", DEFAULT_LAYOUT)
        layout_line = source.lines["layout"][1] if "layout" in source.lines else 1
        layout_unit = self._layout(layout, file, layout_line)
        skeleton_unit = compile_unit(
            self._skeleton_env,
            source.body,
            file=file,
            code_name=code_name,
            first_line=source.body_line,
        )
        return Compiled(
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

    def _layout(self, layout: Any, template_file: Path, line: int) -> Unit:
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
            unit: Unit | TemplateError | None = None
            if file.is_file():
                try:
                    unit = compile_unit(
                        self._html_env,
                        read_text(file),
                        file=file,
                        code_name=str(file),
                        first_line=1,
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
