"""One template, one contact, one moment: the exact bytes that go out.

``toma preview`` and the daemon both call :meth:`Composer.compose`, so a preview
is what will be sent. Templates are compiled once per :class:`Composer` (once
per tick), never once per contact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from toma.config import Config
from toma.contacts import Contact
from toma.errors import TemplateError
from toma.message import Built, build_message
from toma.render import Templates, base_context


class Composer:
    def __init__(self, config: Config, templates: Templates | None = None) -> None:
        self.config = config
        self.templates = templates or Templates(config.paths.templates)

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
    ) -> Built:
        """Render ``template`` for ``contact`` and build the message dated ``now``.

        Raises :class:`TemplateError` naming the template, line and contact.
        """
        owner = self.config.owner
        context = base_context(self.config, contact, **(extra or {}))
        rendered = self.templates.render(template, context, contact=contact.email)
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
            )
        except ValueError as exc:
            raise TemplateError(str(exc), file=template, contact=contact.email) from None
