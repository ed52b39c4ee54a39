"""The dashboard's few safe actions: pause, resume, unenroll, mark an invoice paid.

Each is a POST carrying the CSRF token, one store transaction through the same
records functions as the CLI's commands, made on the pages' reading thread and
logged as one event. None sends mail: what follows from them (a thank-you for a
paid invoice) goes at the daemon's next tick, as after the command.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from toma.core.contacts import Status
from toma.errors import TomaError
from toma.logs import fields
from toma.store.records import contacts as addressbook
from toma.store.records import enrolments as enrolled
from toma.store.records import invoices as billing
from toma.web.server import BodyTooLarge, read_body

if TYPE_CHECKING:
    from toma.web.pages import Dashboard

log = logging.getLogger(__name__)

BY = "toma dashboard"  # how the actions are recorded, as the CLI's say "toma contacts pause"


class Actions:
    """The POST routes of a :class:`~toma.web.pages.Dashboard`."""

    def __init__(self, pages: Dashboard) -> None:
        self.pages = pages

    async def _form(self, request: Request) -> dict[str, str] | Response:
        try:
            body = await read_body(request)
        except BodyTooLarge:
            return PlainTextResponse("Too large.\n", status_code=413)
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if not self.pages.csrf.valid(form.get("csrf")):
            log.info("dashboard_csrf_refused", extra=fields(path=request.url.path))
            return self.pages.render(
                "missing.html",
                HTTPStatus.FORBIDDEN.value,
                page="",
                what="That form came without its token (reload the page and try again).",
            )
        return form

    async def contact_action(self, request: Request) -> Response:
        return await self._post(request, self._contact_action)

    async def invoice_paid(self, request: Request) -> Response:
        return await self._post(request, self._invoice_paid)

    async def _post(
        self, request: Request, work: Callable[[Request, dict[str, str]], Response]
    ) -> Response:
        """``work``'s answer to a POST whose form carries the CSRF token."""
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        return await self.pages.answer(work, request, form)

    def _contact_action(self, request: Request, form: dict[str, str]) -> Response:
        email = request.path_params["email"]
        action = request.path_params["action"]
        store = self.pages.store()
        now = self.pages.clock.now()
        try:
            if action in ("pause", "resume"):
                status = Status.PAUSED if action == "pause" else Status.ACTIVE
                addressbook.set_status(store, email, status, now=now, reason=f"{BY} {action}")
            elif action == "unenroll":
                enrolled.unenrol(store, email, form.get("sequence", ""))
            else:
                return PlainTextResponse("Not found.\n", status_code=404)
        except TomaError as exc:
            return self.pages.render("missing.html", 409, page="contacts", what=str(exc))
        log.info(
            "dashboard_action",
            extra=fields(action=action, contact=email, sequence=form.get("sequence")),
        )
        return RedirectResponse(f"/contacts/{quote(email, safe='@')}", status_code=303)

    def _invoice_paid(self, request: Request, _form: dict[str, str]) -> Response:
        number = request.path_params["number"]
        now = self.pages.clock.now()
        try:
            invoice = billing.settle(
                self.pages.store(), number, paid_on=now.astimezone(self.pages.zone).date(), now=now
            )
        except TomaError as exc:
            return self.pages.render("missing.html", 409, page="invoices", what=str(exc))
        log.info("dashboard_action", extra=fields(action="paid", invoice=invoice.number))
        return RedirectResponse(f"/invoices/{quote(number)}", status_code=303)
