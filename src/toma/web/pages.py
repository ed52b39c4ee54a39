"""The dashboard's pages and its few safe actions, server-rendered from Jinja2 templates.

Every page reads one store instance of its own, refreshed before each page (so
it sees the daemon's writes), on the server's event loop thread: handlers are
``async`` and do their reading without awaiting, so two never interleave on the
instance. The plan is the costly part (the planner over every contact); it is
kept until the store changes or a minute passes.

Actions (pause, resume, unenroll, mark paid) are POSTs carrying the CSRF token,
each one store transaction through the same records functions as the CLI's
commands, logged as one event. None sends mail: what follows from them (a
thank-you for a paid invoice) goes at the daemon's next tick, as after the
command.
"""

from __future__ import annotations

import hmac
import logging
from datetime import datetime, timedelta
from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route, Router

from toma.config import Config
from toma.core.contacts import Status
from toma.errors import TomaError
from toma.logs import fields
from toma.reports import dashboard as views
from toma.reports.log import about_invoice, conversation
from toma.reports.plan import Row, upcoming
from toma.reports.status import gather
from toma.store import Store, TinyStore
from toma.store.base import ChangeMark
from toma.store.records import contacts as addressbook
from toma.store.records import enrolments as enrolled
from toma.store.records import invoices as billing
from toma.store.records import newsletters as issues
from toma.timeutil import Clock
from toma.web.auth import Csrf, calendar_token
from toma.web.charts import ageing_svg
from toma.web.ics import plan_calendar
from toma.web.server import BodyTooLarge, read_body

log = logging.getLogger(__name__)

PLAN_DAYS = 28
PLAN_KEPT = timedelta(minutes=1)
BY = "toma dashboard"  # how the actions are recorded, as the CLI's say "toma contacts pause"


class Dashboard:
    def __init__(self, config: Config, clock: Clock, secret: bytes) -> None:
        self.config = config
        self.clock = clock
        self.zone = ZoneInfo(config.owner.timezone)
        self.csrf = Csrf()
        self.ics_token = calendar_token(secret)
        self._store: Store | None = None
        self._mark: ChangeMark | None = None
        self._plan: tuple[datetime, list[Row]] | None = None
        self.templates = Environment(
            loader=PackageLoader("toma.web", "templates"),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["when"] = self._when
        self.templates.filters["quote"] = lambda text: quote(str(text), safe="@")
        self.style = (resources.files("toma.web") / "static" / "style.css").read_bytes()
        self.router = Router(
            [
                Route("/", self.today),
                Route("/plan", self.plan),
                Route("/contacts", self.contacts),
                Route("/contacts/{email}", self.contact),
                Route("/contacts/{email}/{action}", self.contact_action, methods=["POST"]),
                Route("/invoices", self.invoices),
                Route("/invoices/{number}", self.invoice),
                Route("/invoices/{number}/paid", self.invoice_paid, methods=["POST"]),
                Route("/newsletters", self.newsletters),
                Route("/status", self.status),
                Route("/healthz", self.healthz, methods=["GET", "HEAD"]),
                Route("/plan.ics", self.ics, methods=["GET", "HEAD"]),
                Route("/static/style.css", self.stylesheet, methods=["GET", "HEAD"]),
            ]
        )

    # --- reading -------------------------------------------------------------

    def store(self) -> Store:
        if self._store is None:
            self._store = TinyStore(self.config.paths.data)
        else:
            self._store.refresh()
        mark, changed = self._store.changes_since(self._mark)
        if changed is None or changed:
            self._plan = None
        self._mark = mark
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def upcoming(self, store: Store, now: datetime) -> list[Row]:
        if self._plan is None or not self._plan[0] <= now < self._plan[0] + PLAN_KEPT:
            rows = upcoming(store, self.config, now=now, until=now + timedelta(days=PLAN_DAYS))
            self._plan = (now, rows)
        return self._plan[1]

    def _when(self, moment: datetime | str | None, fmt: str = "%a %d %b %H:%M") -> str:
        if moment is None or moment == "":
            return ""
        if isinstance(moment, str):
            try:
                parsed = datetime.fromisoformat(moment)
            except ValueError:
                return moment
            return self._when(parsed, fmt)
        return moment.astimezone(self.zone).strftime(fmt)

    def render(self, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        page = self.templates.get_template(name).render(
            csrf=self.csrf.token, owner=self.config.owner, **context
        )
        return HTMLResponse(page, status_code=code)

    # --- pages ---------------------------------------------------------------

    async def today(self, request: Request) -> Response:
        now = self.clock.now()
        store = self.store()
        return self.render("today.html", page="today", now=now, today=views.today(store, now=now))

    async def plan(self, request: Request) -> Response:
        now = self.clock.now()
        rows = self.upcoming(self.store(), now)
        return self.render("plan.html", page="plan", now=now, days=views.by_day(rows))

    async def contacts(self, request: Request) -> Response:
        now = self.clock.now()
        store = self.store()
        query = request.query_params.get("q", "")
        tag = request.query_params.get("tag", "")
        status = request.query_params.get("status", "")
        found = views.contact_list(
            store, self.upcoming(store, now), query=query, tag=tag, status=status
        )
        return self.render(
            "contacts.html",
            page="contacts",
            found=found,
            q=query,
            tag=tag,
            status=status,
            statuses=[s.value for s in Status],
        )

    async def contact(self, request: Request) -> Response:
        now = self.clock.now()
        store = self.store()
        email = request.path_params["email"]
        try:
            contact = addressbook.find(store, email)
        except TomaError:
            return self.render("missing.html", 404, page="contacts", what=f"No contact {email}.")
        return self.render(
            "contact.html",
            page="contacts",
            contact=contact,
            entries=conversation(store, contact.email, self.zone),
            enrolments=enrolled.of_contact(store, contact.email),
            next_steps=[r for r in self.upcoming(store, now) if r.contact == contact.email],
            invoices=billing.of_contact(store, contact.email),
        )

    async def invoices(self, request: Request) -> Response:
        now = self.clock.now()
        store = self.store()
        ageing = billing.report(store, self.config, now=now)
        return self.render(
            "invoices.html", page="invoices", ageing=ageing, chart=ageing_svg(ageing)
        )

    async def invoice(self, request: Request) -> Response:
        store = self.store()
        number = request.path_params["number"]
        try:
            invoice = billing.find(store, number)
        except TomaError:
            return self.render("missing.html", 404, page="invoices", what=f"No invoice {number}.")
        return self.render(
            "invoice.html",
            page="invoices",
            invoice=invoice,
            thread=about_invoice(store, invoice.number, invoice.contact, self.zone),
        )

    async def newsletters(self, request: Request) -> Response:
        store = self.store()
        report = gather(store)
        names = sorted(set(report.newsletters) | set(issues.scheduled(store)))
        rows = []
        for name in names:
            figures = issues.figures(store, name)
            try:
                purpose = issues.load(self.config, name).purpose
            except TomaError:
                purpose = ""
            audience = figures["sent"] + figures["failed"] + figures["unknown"]
            rows.append(
                {**figures, "purpose": purpose, "audience": audience + figures["in_progress"]}
            )
        return self.render("newsletters.html", page="newsletters", rows=rows)

    async def status(self, request: Request) -> Response:
        now = self.clock.now()
        store = self.store()
        report = gather(store)
        return self.render(
            "status.html",
            page="status",
            report=report,
            lines=report.lines(),
            health=views.health(store, self.config, now=now),
            ics=f"/plan.ics?token={self.ics_token}",
        )

    async def healthz(self, request: Request) -> Response:
        found = views.health(self.store(), self.config, now=self.clock.now())
        code = HTTPStatus.OK if found.ok else HTTPStatus.SERVICE_UNAVAILABLE
        return PlainTextResponse(found.reason + "\n", status_code=code.value)

    async def ics(self, request: Request) -> Response:
        if not self.calendar_allowed(request.query_params.get("token")):
            return PlainTextResponse("Not found.\n", status_code=HTTPStatus.NOT_FOUND.value)
        now = self.clock.now()
        rows = self.upcoming(self.store(), now)
        return Response(plan_calendar(rows, now=now), media_type="text/calendar; charset=utf-8")

    def calendar_allowed(self, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(str(sent), self.ics_token)

    async def stylesheet(self, request: Request) -> Response:
        return Response(
            self.style, media_type="text/css", headers={"Cache-Control": "max-age=3600"}
        )

    # --- actions -------------------------------------------------------------

    async def _form(self, request: Request) -> dict[str, str] | Response:
        try:
            body = await read_body(request)
        except BodyTooLarge:
            return PlainTextResponse("Too large.\n", status_code=413)
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if not self.csrf.valid(form.get("csrf")):
            log.info("dashboard_csrf_refused", extra=fields(path=request.url.path))
            return self.render(
                "missing.html",
                HTTPStatus.FORBIDDEN.value,
                page="",
                what="That form came without its token (reload the page and try again).",
            )
        return form

    async def contact_action(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        email = request.path_params["email"]
        action = request.path_params["action"]
        store = self.store()
        now = self.clock.now()
        try:
            if action in ("pause", "resume"):
                status = Status.PAUSED if action == "pause" else Status.ACTIVE
                addressbook.set_status(store, email, status, now=now, reason=f"{BY} {action}")
            elif action == "unenroll":
                enrolled.unenrol(store, email, form.get("sequence", ""))
            else:
                return PlainTextResponse("Not found.\n", status_code=404)
        except TomaError as exc:
            return self.render("missing.html", 409, page="contacts", what=str(exc))
        log.info(
            "dashboard_action",
            extra=fields(action=action, contact=email, sequence=form.get("sequence")),
        )
        self._plan = None
        return RedirectResponse(f"/contacts/{quote(email, safe='@')}", status_code=303)

    async def invoice_paid(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        number = request.path_params["number"]
        now = self.clock.now()
        try:
            invoice = billing.settle(
                self.store(), number, paid_on=now.astimezone(self.zone).date(), now=now
            )
        except TomaError as exc:
            return self.render("missing.html", 409, page="invoices", what=str(exc))
        log.info("dashboard_action", extra=fields(action="paid", invoice=invoice.number))
        self._plan = None
        return RedirectResponse(f"/invoices/{quote(number)}", status_code=303)
