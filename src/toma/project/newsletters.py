"""The project's ``newsletters/`` folder, read: each issue file checked and loaded.

What an issue is and who gets it is pure (:mod:`toma.core.newsletters`); this
module reads the files, points each error at its file, line and key, and
renders an issue through the folder's templates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from toma.core.audience import EVERYONE, Audience, AudienceError, parse_audience
from toma.core.messages import DEFAULT_LAYOUT
from toma.core.newsletters import KEYS, PURPOSE_REQUIRED, Newsletter
from toma.errors import TemplateError, TomaError
from toma.mail.render import Rendered, Templates
from toma.timeutil import parse_moment

# A top-level key of the front matter, as a person writes it: "purpose: …".
_FRONT_KEY = re.compile(r"""^(?P<key>[^\s#:'"-][^:]*?|"[^"]*"|'[^']*')\s*:(?:\s|$)""")


def newsletter_templates(folder: Path, *, templates_layouts: Path) -> Templates:
    """The issues of ``folder`` as templates, framed by the templates' layouts.

    Their front matter has the newsletter's :data:`KEYS`; any other is an error.
    """
    return Templates(folder, layouts=templates_layouts, keys=KEYS, kind="newsletter")


def load_newsletter(
    path: Path,
    *,
    templates_layouts: Path,
    folder: Path | None = None,
    templates: Templates | None = None,
) -> Newsletter:
    """The issue in ``path``, checked; :class:`TemplateError` says file, line and key.

    ``folder`` is the newsletters folder (default: the file's own folder); the
    name is the path relative to it. ``templates`` may be a
    :func:`newsletter_templates` of that folder to share its compiled files.
    """
    file = Path(path)
    root = Path(folder) if folder is not None else file.parent
    try:
        name = file.relative_to(root).as_posix()
    except ValueError:
        raise TemplateError(
            f"the issue is not inside the newsletters folder {root}", file=file
        ) from None
    if templates is None:
        templates = newsletter_templates(root, templates_layouts=templates_layouts)
    elif templates.folder != root:
        raise ValueError(f"templates of {templates.folder} cannot load an issue in {root}")
    # Subject, layout, Jinja syntax and unknown keys (a misspelt audience would
    # otherwise send to everyone), each with its line.
    templates.check(name)
    front = templates.front(name)
    lines = _key_lines(file)

    def fail(message: str, key: str) -> TemplateError:
        return TemplateError(message, file=file, line=lines.get(key, 1), key=key)

    purpose = front.get("purpose")
    if purpose is None:
        raise fail(PURPOSE_REQUIRED, "purpose")
    if not isinstance(purpose, str):
        raise fail(
            "purpose must be a sentence: why this issue is sent and what the reader gets", "purpose"
        )
    if not purpose.strip():
        raise fail(f"purpose is empty; {PURPOSE_REQUIRED}", "purpose")

    audience = _audience(front.get("audience"), fail)
    send_at = _send_at(front.get("send_at"), fail)
    return Newsletter(
        name=name,
        subject=str(front["subject"]),
        purpose=" ".join(purpose.split()),
        audience=audience,
        send_at=send_at,
        file=file,
        folder=root,
        layouts=templates.layouts,
        layout=str(front.get("layout", DEFAULT_LAYOUT)),
    )


def load_newsletters(
    folder: Path, *, templates_layouts: Path
) -> tuple[list[Newsletter], list[TomaError]]:
    """Every issue in ``folder`` that loads, and the problems of those that do not."""
    templates = newsletter_templates(folder, templates_layouts=templates_layouts)
    loaded: list[Newsletter] = []
    problems: list[TomaError] = []
    for name in templates.names():
        try:
            loaded.append(
                load_newsletter(
                    folder / name,
                    templates_layouts=templates_layouts,
                    folder=folder,
                    templates=templates,
                )
            )
        except TomaError as exc:
            problems.append(exc)
    return loaded, problems


def render_newsletter(
    newsletter: Newsletter,
    context: Mapping[str, Any],
    *,
    templates: Templates | None = None,
    contact: str | None = None,
) -> Rendered:
    """The issue rendered with ``context`` plus ``newsletter``.

    ``context`` must carry ``unsubscribe_url`` or ``unsubscribe_mailto``
    (:meth:`toma.mail.unsubscribe.Unsubscribe.context`): an issue always offers a way
    out. ``contact`` (an address) is put on errors.
    """
    if not (context.get("unsubscribe_url") or context.get("unsubscribe_mailto")):
        raise ValueError("a newsletter is rendered with unsubscribe_url or unsubscribe_mailto")
    if templates is None:
        templates = newsletter_templates(newsletter.folder, templates_layouts=newsletter.layouts)
    return templates.render(
        newsletter.name, {**context, "newsletter": newsletter.view()}, contact=contact
    )


# --------------------------------------------------------------------------- parts


_Fail = Callable[[str, str], TemplateError]  # (message, key) -> the error at that key's line


def _audience(value: Any, fail: _Fail) -> Audience:
    if value is None:
        return EVERYONE
    if not isinstance(value, str):
        raise fail("audience must be an expression such as: client and not no-news", "audience")
    try:
        return parse_audience(value)
    except AudienceError as exc:
        raise fail(exc.message, "audience") from None


def _send_at(value: Any, fail: _Fail) -> datetime | date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        return value
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            try:
                return date.fromisoformat(text)
            except ValueError:
                raise fail(f"{text!r} is not a date", "send_at") from None
        try:
            moment = parse_moment(text)
        except TomaError as exc:
            raise fail(exc.message, "send_at") from None
    else:
        raise fail(
            "send_at must be a date (2026-12-08) or a moment with a UTC offset "
            "(2026-12-08T10:00:00+01:00)",
            "send_at",
        )
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise fail(
            f"{moment.isoformat()} has no UTC offset: add one, such as +01:00, or give "
            "a date to send in each recipient's own morning",
            "send_at",
        )
    return moment


def _key_lines(file: Path) -> dict[str, int]:
    """The line of each top-level front-matter key, to point errors at.

    The file has already been read and checked by :class:`Templates`; this only
    finds lines, so it reads leniently.
    """
    try:
        text = file.read_bytes().decode("utf-8", "replace")
    except OSError:
        return {}
    lines = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    found: dict[str, int] = {}
    for number, line in enumerate(lines[1:], start=2):
        if line.rstrip() == "---":
            break
        match = _FRONT_KEY.match(line)
        if match:
            found.setdefault(match["key"].strip("'\""), number)
    return found
