"""Newsletter issues: one Markdown file each, with a purpose and an audience.

Theory of operation
-------------------

An issue is a file in the newsletters folder, written like a template::

    ---
    subject: "What I learned this year, {{ contact.first_name }}"
    purpose: Share three lessons from this year's projects and ask what is ahead for them.
    audience: (client or past-client) and not no-news
    send_at: 2026-12-08          # or 2026-12-08T10:00:00+01:00; absent: when sent
    layout: default              # from templates/layouts
    ---
    Hi {{ contact.first_name }}, …

``purpose`` is required and may not be empty: an issue nobody can say the point
of should not go out, and writing the sentence down is the cheapest check there
is. ``audience`` is an expression over tags and fields (:mod:`toma.core.audience`);
without one the issue is for every active contact. Any other key is refused:
a misspelt ``audiance:`` would otherwise silently send to everyone.

``send_at`` is a moment with a UTC offset, or a date. A date means "that day,
in each recipient's own zone": the issue goes at the first opening of the
sending window on or after that day, as everything toma sends does
(:func:`send_time`). A moment is the same, from that moment on.

Issues are rendered by :class:`toma.mail.render.Templates` over the newsletters
folder, with the layouts of the templates folder; templates see ``newsletter``
(``name``, ``purpose``) besides ``contact``, ``sender`` and the unsubscribe links.

At most once: each (issue, contact) has a key (:func:`newsletter_key`). Once
the outbox holds an attempted record for it the contact is done, so a send that
was killed half-way resumes with exactly :func:`pending` — the ones not yet
tried — and an edit of the audience afterwards never sends anyone a second copy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from toma.config import Window
from toma.core.audience import EVERYONE, Audience, AudienceError, parse_audience
from toma.core.contacts import Contact
from toma.core.outbox import OutboxRecord, ever_attempted
from toma.core.windows import next_opening
from toma.errors import TemplateError, TomaError
from toma.mail.render import DEFAULT_LAYOUT, Rendered, Templates
from toma.timeutil import parse_moment

KEYS: Final = ("subject", "purpose", "audience", "send_at", "layout")
KEY_PREFIX: Final = "newsletter"
PURPOSE_REQUIRED: Final = "purpose is required: say why this issue is sent and what the reader gets"

# A top-level key of the front matter, as a person writes it: "purpose: …".
_FRONT_KEY = re.compile(r"""^(?P<key>[^\s#:'"-][^:]*?|"[^"]*"|'[^']*')\s*:(?:\s|$)""")


@dataclass(frozen=True)
class Newsletter:
    """One issue, checked: it compiles, has a purpose, and its audience parses."""

    name: str  # relative to the newsletters folder: "2026-12-year-in-review.md"
    subject: str  # as written, Jinja included
    purpose: str
    audience: Audience
    send_at: datetime | date | None  # an aware moment, a day, or "when sent"
    file: Path
    folder: Path  # the newsletters folder
    layouts: Path  # the layouts folder it is framed from
    layout: str = DEFAULT_LAYOUT

    def view(self) -> dict[str, Any]:
        """What templates see as ``newsletter``."""
        return {"name": self.name, "purpose": self.purpose}

    def not_before(self, tz: ZoneInfo) -> datetime | None:
        """The earliest moment it may reach someone in zone ``tz``; None: no schedule."""
        if self.send_at is None:
            return None
        if isinstance(self.send_at, datetime):
            return self.send_at
        return datetime.combine(self.send_at, time(0), tzinfo=tz)


def newsletter_key(name: str, contact: Contact | str) -> str:
    """The idempotency key of issue ``name`` for ``contact``: ``newsletter:NAME:EMAIL``.

    Unambiguous although a name may hold ":": a normalised address never does,
    so the key splits at its last colon.
    """
    email = contact.email if isinstance(contact, Contact) else contact
    return f"{KEY_PREFIX}:{name}:{email}"


def split_key(key: str) -> tuple[str, str] | None:
    """(issue name, address) of a newsletter key; None for any other key."""
    prefix = f"{KEY_PREFIX}:"
    if not key.startswith(prefix):
        return None
    name, _, email = key[len(prefix) :].rpartition(":")
    return (name, email) if name and email else None


def recipients(newsletter: Newsletter, contacts: Iterable[Contact]) -> list[Contact]:
    """The active contacts the audience selects, in the order given, each once.

    Paused, unsubscribed and bounced contacts never receive an issue, whatever
    the audience says.
    """
    chosen: list[Contact] = []
    seen: set[str] = set()
    audience = newsletter.audience
    for contact in contacts:
        if contact.active and contact.email not in seen and audience.matches(contact):
            seen.add(contact.email)
            chosen.append(contact)
    return chosen


def pending(
    newsletter: Newsletter, contacts: Iterable[Contact], history: Mapping[str, OutboxRecord]
) -> list[Contact]:
    """The :func:`recipients` with no attempted record for their key: still to send.

    ``history`` maps keys to outbox records. A record still ``planned`` is
    pending; one ``sending``, ``sent``, ``unknown``, ``failed`` or ``skipped``
    is not — an interrupted send is reported by ``toma status``, never repeated.
    """
    name = newsletter.name
    left: list[Contact] = []
    for contact in recipients(newsletter, contacts):
        record = history.get(newsletter_key(name, contact))
        if record is None or not ever_attempted(record.state):
            left.append(contact)
    return left


def send_time(newsletter: Newsletter, *, now: datetime, window: Window, tz: ZoneInfo) -> datetime:
    """When the issue can go to a recipient in zone ``tz``: the first opening of
    ``window`` at or after both ``now`` and the issue's ``send_at``."""
    start = newsletter.not_before(tz)
    moment = now if start is None or start < now else start
    return next_opening(moment, window, tz)


# --------------------------------------------------------------------------- files


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
