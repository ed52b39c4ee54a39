"""One template, one contact, one moment: the exact bytes that go out.

``toma preview`` and the daemon both call :meth:`Composer.compose`, so a preview
is what will be sent. Templates are compiled once per :class:`Composer` (once
per tick), never once per contact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from toma.config import Config
from toma.contacts import Contact
from toma.errors import TemplateError
from toma.message import Built, build_message
from toma.render import Templates, base_context
from toma.unsubscribe import Unsubscribe


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

    @property
    def newsletters(self) -> Templates:
        """The issues of the newsletters folder, framed by the templates' layouts."""
        if self._newsletters is None:
            from toma.newsletters import newsletter_templates

            paths = self.config.paths
            self._newsletters = newsletter_templates(
                paths.newsletters, templates_layouts=paths.templates / "layouts")
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
        list_unsubscribe: bool = False,
        templates: Templates | None = None,
        attachments: Sequence[str] = (),
    ) -> Built:
        """Render ``template`` for ``contact`` and build the message dated ``now``.

        With ``list_unsubscribe`` (keep-in-touch mail and newsletters, not
        invoices) the message offers a way out: List-Unsubscribe headers, and
        ``unsubscribe_url`` / ``unsubscribe_mailto`` for the layout's footer.
        Raises :class:`TemplateError` naming the template, line and contact.
        """
        owner = self.config.owner
        leave: dict[str, Any] = {}
        options: dict[str, Any] = {}
        if list_unsubscribe and self.unsubscribe is not None:
            links, unsubscribe = self.unsubscribe.for_message(contact)
            leave, options = dict(links), dict(unsubscribe)
        context = base_context(self.config, contact, **leave, **(extra or {}))
        rendered = (templates or self.templates).render(template, context,
                                                        contact=contact.email)
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
            raise TemplateError(f"cannot attach {file}: {exc.strerror}", file=template,
                                contact=contact) from None
