"""One template, one contact, one moment: the exact bytes that go out.

``toma preview`` and the daemon both build a :class:`toma.daemon.builder.Job` and
hand it to :func:`toma.daemon.builder.build_all`, which calls :meth:`Composer.compose`,
so a preview is what will be sent. Templates are compiled once per
:class:`Composer` (once per tick), never once per contact.

What a message offers as a way out is said for each message (``unsubscribe``,
see :data:`toma.core.messages.WayOut`): nothing for a personal note or an invoice,
the list headers, or the headers and a footer in both parts (every newsletter).
A message that needs them from a :class:`Composer` without the signer is an
error, never a message sent without its way out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from toma.config import Config
from toma.core.contacts import Contact
from toma.core.messages import WAYS_OUT, WayOut
from toma.errors import TemplateError, TomaError
from toma.mail.mime import Built, build_message
from toma.mail.render import Templates, base_context
from toma.mail.unsubscribe import Unsubscribe


@dataclass(frozen=True)
class Recipe:
    """How to make the same :class:`Composer` in another process: values, not a path.

    A worker process that read the config and the secret again for itself could
    find them changed, or not find the secret at all; it is handed these instead.
    """

    config: Config
    unsubscribe: Unsubscribe | None
    templates: Path
    layouts: Path

    def composer(self) -> Composer:
        return Composer(
            self.config,
            Templates(self.templates, layouts=self.layouts),
            unsubscribe=self.unsubscribe,
        )


class Composer:
    def __init__(
        self,
        config: Config,
        templates: Templates | None = None,
        unsubscribe: Unsubscribe | None = None,
    ) -> None:
        self.config = config
        self.templates = templates or Templates(config.paths.templates)
        self.unsubscribe = unsubscribe
        self._newsletters: Templates | None = None

    def recipe(self) -> Recipe:
        return Recipe(self.config, self.unsubscribe, self.templates.folder, self.templates.layouts)

    @property
    def newsletters(self) -> Templates:
        """The issues of the newsletters folder, framed by the templates' layouts."""
        if self._newsletters is None:
            from toma.project.newsletters import newsletter_templates

            paths = self.config.paths
            self._newsletters = newsletter_templates(
                paths.newsletters, templates_layouts=paths.templates / "layouts"
            )
        return self._newsletters

    def compose(
        self,
        template: str,
        contact: Contact,
        *,
        now: datetime,
        extra: Mapping[str, Any] | None = None,
        in_reply_to: str | None = None,
        references: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        unsubscribe: WayOut = "none",
        templates: Templates | None = None,
        attachments: Sequence[str] = (),
    ) -> Built:
        """Render ``template`` for ``contact`` and build the message dated ``now``.

        ``unsubscribe`` is the way out the message offers: ``"headers"`` adds
        List-Unsubscribe (and List-Unsubscribe-Post for one-click), ``"footer"``
        those and the footer (the postal address and the link, in the text and
        the HTML part; templates see ``unsubscribe_url`` / ``unsubscribe_mailto``).
        Raises :class:`TemplateError` naming the template, line and contact, and
        :class:`TomaError` when the message needs a way out and this composer
        has no signer to make one.
        """
        owner = self.config.owner
        leave: dict[str, Any] = {}
        options: dict[str, Any] = {}
        if unsubscribe not in WAYS_OUT:
            raise ValueError(
                f"unsubscribe must be one of {', '.join(WAYS_OUT)}, not {unsubscribe!r}"
            )
        if unsubscribe != "none":
            if self.unsubscribe is None:
                raise TomaError(
                    "this message must carry unsubscribe links, and they cannot "
                    "be made without the unsubscribe secret",
                    file=template,
                    contact=contact.email,
                )
            links, headers_options = self.unsubscribe.for_message(contact)
            options = dict(headers_options)
            if unsubscribe == "footer":
                leave = dict(links)
        context = base_context(self.config, contact, **leave, **(extra or {}))
        rendered = (templates or self.templates).render(template, context, contact=contact.email)
        files = [self._read_attachment(path, template, contact.email) for path in attachments]
        try:
            return build_message(
                rendered,
                sender_name=owner.name,
                sender_email=owner.email,
                to_name=contact.name,
                to_email=contact.email,
                date=now,
                domain=owner.domain,
                in_reply_to=in_reply_to,
                references=references,
                headers=headers or {},
                attachments=files,
                **options,
            )
        except ValueError as exc:
            raise TemplateError(str(exc), file=template, contact=contact.email) from None

    def _read_attachment(self, path: str, template: str, contact: str) -> tuple[str, bytes]:
        """A file to attach; a relative path is taken from the config's folder."""
        file = Path(path).expanduser()
        if not file.is_absolute():
            file = self.config.root / file
        try:
            return file.name, file.read_bytes()
        except OSError as exc:
            raise TemplateError(
                f"cannot attach {file}: {exc.strerror}", file=template, contact=contact
            ) from None


@dataclass(frozen=True)
class Job:
    """One message to render and build: plain values, so that it crosses to a worker process."""

    key: str
    template: str
    contact: Mapping[str, Any]  # Contact.to_doc(): plain data crosses processes cheaply
    now: datetime
    extra: Mapping[str, Any] | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    unsubscribe: WayOut = "none"  # see toma.core.messages.WayOut
    newsletter: bool = False  # an issue of the newsletters folder: always with its footer
    attachments: tuple[str, ...] = ()  # paths of files to attach
