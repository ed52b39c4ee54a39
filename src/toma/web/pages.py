"""The dashboard's pages and its few safe actions, server-rendered from Jinja2 templates.

Every page reads one store instance of its own through a snapshot of its tables
(:mod:`toma.web.snapshot`), brought up to date before each page (so it sees the
daemon's writes), on one reading thread: a store instance is not thread-safe,
and the server's loop stays free for the unsubscribe links meanwhile. What a
page derives is kept until the tables it reads change. The plan (the planner
over every contact, the costly part) is kept by :mod:`toma.web.planview`, which
plans again only the contacts written to; the Plan page and the calendar keep
each row's HTML and event while the row is planned (:mod:`toma.web.planpages`).
The reading thread reads everything once as soon as the server starts, and
makes a plan growing old again between pages, a part at a time.

The few actions (pause, resume, unenroll, mark paid) are :mod:`toma.web.actions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from http import HTTPStatus
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import quote
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route, Router

from toma.config import Config
from toma.core.contacts import Contact, Status
from toma.errors import TomaError
from toma.reports import dashboard as views
from toma.reports.log import about_invoice, conversation
from toma.reports.status import StatusReport, needing_attention
from toma.store import (
    CONTACTS,
    CONVERSATIONS,
    ENROLMENTS,
    INVOICES,
    MESSAGES,
    META,
    SYNC,
    TABLES,
    Store,
    open_configured,
)
from toma.store.records import contacts as addressbook
from toma.store.records import enrolments as enrolled
from toma.store.records import invoices as billing
from toma.store.records import newsletters as issues
from toma.timeutil import Clock
from toma.web.actions import Actions
from toma.web.auth import Csrf, calendar_token
from toma.web.charts import ageing_svg
from toma.web.planpages import PlanPages
from toma.web.planview import Planned, PlanView
from toma.web.snapshot import Snapshot, TooLargeToHold
from toma.web.statusview import StatusView
from toma.web.traffic import TrafficView

log = logging.getLogger(__name__)
T = TypeVar("T")

REFRESH_EVERY = timedelta(seconds=10)  # how often the reading thread looks at the plan's age
# The fields the pages ask the tables by (through toma.store.records): indexed at start.
ASKED = (
    (MESSAGES, ("contact", "kind", "ref")),
    (CONVERSATIONS, ("contact", "kind")),
    (ENROLMENTS, ("contact",)),
    (INVOICES, ("contact",)),
)


class Dashboard:
    def __init__(self, config: Config, clock: Clock, secret: bytes) -> None:
        self.config = config
        self.clock = clock
        self.zone = ZoneInfo(config.owner.timezone)
        self.csrf = Csrf()
        self.ics_token = calendar_token(secret)
        self._store: Store | None = None
        # Only a store that keeps its documents elsewhere can outgrow the memory: the
        # embedded store holds them all in this process already.
        most = config.dashboard.max_documents if config.store.kind == "postgres" else 0
        self.snapshot = Snapshot(most=most or None)
        self.plan_view = PlanView(config)
        self.traffic_view = TrafficView()
        self.status_view = StatusView()
        # Every read and write of the store and the snapshot happens on this one
        # thread: a store instance is not thread-safe, and a page taking a second
        # must not hold up the unsubscribe links on the server's loop.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="toma-dashboard")
        self._memos: dict[str, tuple[object, Any]] = {}
        self.templates = Environment(
            loader=PackageLoader("toma.web", "templates"),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["when"] = self._when
        self.templates.filters["quote"] = lambda text: quote(str(text), safe="@")
        self.style = (resources.files("toma.web") / "static" / "style.css").read_bytes()
        self.plan_pages = PlanPages(self.templates, self.page_bytes)
        actions = Actions(self)
        self.router = Router(
            [
                Route("/", self.off_loop(self.today)),
                Route("/plan", self.off_loop(self.plan)),
                Route("/contacts", self.off_loop(self.contacts)),
                Route("/contacts/{email}", self.off_loop(self.contact)),
                Route("/contacts/{email}/{action}", actions.contact_action, methods=["POST"]),
                Route("/invoices", self.off_loop(self.invoices)),
                Route("/invoices/{number}", self.off_loop(self.invoice)),
                Route("/invoices/{number}/paid", actions.invoice_paid, methods=["POST"]),
                Route("/newsletters", self.off_loop(self.newsletters)),
                Route("/status", self.off_loop(self.status)),
                Route("/healthz", self.off_loop(self.healthz), methods=["GET", "HEAD"]),
                Route("/plan.ics", self.off_loop(self.ics), methods=["GET", "HEAD"]),
                Route("/static/style.css", self.stylesheet, methods=["GET", "HEAD"]),
            ]
        )
        self._worker.submit(self.warm)
        self._stopping = threading.Event()
        self._refresher = threading.Thread(
            target=self._refreshing, name="toma-dashboard-refresh", daemon=True
        )
        self._refresher.start()

    # --- the reading thread ----------------------------------------------------

    def off_loop(
        self, page: Callable[[Request], Response]
    ) -> Callable[[Request], Awaitable[Response]]:
        """``page`` run on the reading thread, so the server's loop never waits for it."""

        async def handler(request: Request) -> Response:
            return await self.answer(lambda r, _form: page(r), request, {})

        return handler

    def run_on_reader(self, work: Callable[[], T]) -> T:
        """``work()`` on the reading thread, waited for (for a caller off the server's loop)."""
        return self._worker.submit(work).result()

    async def answer(
        self,
        work: Callable[[Request, dict[str, str]], Response],
        request: Request,
        form: dict[str, str],
    ) -> Response:
        """``work``'s answer to ``request`` (and its form), made on the reading thread."""

        def answer(request: Request, form: dict[str, str]) -> Response:
            try:
                return work(request, form)
            except TooLargeToHold as exc:
                return self.render("missing.html", 503, heading="Not shown here", what=str(exc))

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, answer, request, form)

    def warm(self) -> None:
        """Read the store and make the plan before the first page asks (seconds, at scale)."""
        try:
            now = self.clock.now()
            reader = self.reader()
            for table, names in ASKED:
                reader.prepare(table, *names)
            self.traffic(reader)
            self.status_report(reader)
            self.contacts_decoded(reader)
            planned = self.upcoming(reader, now)
            self.calendar(planned)
            self.plan_page(planned)
        except TooLargeToHold:
            pass  # logged once, by the snapshot
        except Exception:
            log.exception("dashboard_warm_up_failed")

    def _refreshing(self) -> None:
        """Every REFRESH_EVERY, have the reading thread make a plan growing old again."""
        while not self._stopping.wait(REFRESH_EVERY.total_seconds()):
            try:
                self._worker.submit(self.refresh)
            except RuntimeError:  # the reading thread has stopped
                return

    def refresh(self) -> None:
        """Begin making the plan again for everyone, if it is growing old, before a page asks.

        A part at a time (:meth:`PlanView.step`), each part a task of its own on
        the reading thread, so that a page asked meanwhile runs between two parts.
        """
        try:
            now = self.clock.now()
            if not self.snapshot.refused and self.plan_view.stale(now):
                self.plan_view.begin(now)
                self._step()
        except Exception:
            log.exception("dashboard_refresh_failed")

    def _step(self) -> None:
        try:
            reader = self.reader()
            more = self.plan_view.step(reader, self.store(), self.clock.now())
            if not more:  # the new plan's page and calendar, before a page asks
                planned = self.upcoming(reader, self.clock.now())
                self.calendar(planned)
                self.plan_page(planned)
        except TooLargeToHold:
            return
        except Exception:
            log.exception("dashboard_refresh_failed")
            return
        if more:
            with contextlib.suppress(RuntimeError):  # the reading thread has stopped
                self._worker.submit(self._step)

    # --- reading -------------------------------------------------------------

    def store(self) -> Store:
        """The store, for writing; :meth:`reader` for reading."""
        if self._store is None:
            self._store = open_configured(self.config)
        return self._store

    def reader(self) -> Snapshot:
        """The store as it is now (what changed since the last page read in); a store
        too large to hold (``[dashboard] max_documents``) raises :class:`TooLargeToHold`."""
        store = self.store()
        store.refresh()
        self.snapshot.sync(store)
        return self.snapshot

    def close(self) -> None:
        self._stopping.set()
        self._refresher.join()
        # After the reading thread: it may be reading the store.
        self._worker.shutdown(wait=True, cancel_futures=True)
        if self._store is not None:
            self._store.close()
            self._store = None

    def _memo(self, name: str, key: object, compute: Callable[[], T]) -> T:
        """``compute()``, kept while ``key`` (the versions of the tables it reads) holds."""
        kept = self._memos.get(name)
        if kept is not None and kept[0] == key:
            value: T = kept[1]
            return value
        value = compute()
        self._memos[name] = (key, value)
        return value

    def upcoming(self, reader: Snapshot, now: datetime) -> Planned:
        """The plan of the store as it is now (see :mod:`toma.web.planview`)."""
        return self.plan_view.planned(reader, self.store(), now)

    def status_report(self, reader: Snapshot) -> StatusReport:
        key = reader.version(MESSAGES, CONVERSATIONS, SYNC, META)
        return self._memo("status", key, lambda: self.status_view.report(reader))

    def traffic(self, reader: Snapshot) -> views.Traffic:
        return self.traffic_view.traffic(reader)

    def contacts_decoded(self, reader: Snapshot) -> dict[str, Contact]:
        return self._memo(
            "contacts",
            reader.version(CONTACTS),
            lambda: {contact.email: contact for contact in addressbook.all_contacts(reader)},
        )

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

    def page_bytes(self, name: str, **context: Any) -> bytes:
        return bytes(self.render(name, **context).body)

    def render(self, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        page = self.templates.get_template(name).render(
            csrf=self.csrf.token, owner=self.config.owner, **context
        )
        return HTMLResponse(page, status_code=code)

    # --- pages ---------------------------------------------------------------

    def today(self, request: Request) -> Response:
        now = self.clock.now()
        reader = self.reader()
        today = views.today(self.traffic(reader), self.status_report(reader), now=now)
        return self.render("today.html", page="today", now=now, today=today)

    def plan(self, request: Request) -> Response:
        return HTMLResponse(self.plan_page(self.upcoming(self.reader(), self.clock.now())))

    def plan_page(self, planned: Planned) -> bytes:
        return self.plan_pages.page(planned)

    def calendar(self, planned: Planned) -> bytes:
        return self.plan_pages.calendar(planned)

    def contacts(self, request: Request) -> Response:
        now = self.clock.now()
        reader = self.reader()
        query = request.query_params.get("q", "")
        tag = request.query_params.get("tag", "")
        status = request.query_params.get("status", "")
        found = views.contact_list(
            self.contacts_decoded(reader).values(),
            self.traffic(reader),
            self.upcoming(reader, now).first,
            query=query,
            tag=tag,
            status=status,
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

    def contact(self, request: Request) -> Response:
        now = self.clock.now()
        reader = self.reader()
        email = request.path_params["email"]
        try:
            contact = addressbook.find(reader, email)
        except TomaError:
            return self.render("missing.html", 404, page="contacts", what=f"No contact {email}.")
        return self.render(
            "contact.html",
            page="contacts",
            contact=contact,
            entries=conversation(reader, contact.email, self.zone),
            enrolments=enrolled.of_contact(reader, contact.email),
            next_steps=self.upcoming(reader, now).by_contact.get(contact.email, []),
            invoices=billing.of_contact(reader, contact.email),
        )

    def invoices(self, request: Request) -> Response:
        now = self.clock.now()
        reader = self.reader()
        ageing = billing.report(
            reader, self.config, now=now, contacts=self.contacts_decoded(reader)
        )
        return self.render(
            "invoices.html", page="invoices", ageing=ageing, chart=ageing_svg(ageing)
        )

    def invoice(self, request: Request) -> Response:
        reader = self.reader()
        number = request.path_params["number"]
        try:
            invoice = billing.find(reader, number)
        except TomaError:
            return self.render("missing.html", 404, page="invoices", what=f"No invoice {number}.")
        return self.render(
            "invoice.html",
            page="invoices",
            invoice=invoice,
            thread=about_invoice(reader, invoice.number, invoice.contact, self.zone),
        )

    def newsletters(self, request: Request) -> Response:
        reader = self.reader()
        rows = self._memo("newsletters", reader.version(*TABLES), lambda: self._issues(reader))
        return self.render("newsletters.html", page="newsletters", rows=rows)

    def _issues(self, reader: Snapshot) -> list[dict[str, Any]]:
        report = self.status_report(reader)
        names = sorted(set(report.newsletters) | set(issues.scheduled(reader)))
        rows = []
        for name in names:
            figures = issues.figures(reader, name)
            try:
                purpose = issues.load(self.config, name).purpose
            except TomaError:
                purpose = ""
            audience = figures["sent"] + figures["failed"] + figures["unknown"]
            rows.append(
                {**figures, "purpose": purpose, "audience": audience + figures["in_progress"]}
            )
        return rows

    def status(self, request: Request) -> Response:
        now = self.clock.now()
        report = self.status_report(self.reader())
        return self.render(
            "status.html",
            page="status",
            report=report,
            lines=report.lines(),
            health=views.health(report, self.config, now=now),
            ics=f"/plan.ics?token={self.ics_token}",
        )

    def healthz(self, request: Request) -> Response:
        try:
            report = self.status_report(self.reader())
        except TooLargeToHold:
            report = needing_attention(self.store())  # asked of the store by state
        found = views.health(report, self.config, now=self.clock.now())
        code = HTTPStatus.OK if found.ok else HTTPStatus.SERVICE_UNAVAILABLE
        return PlainTextResponse(found.reason + "\n", status_code=code.value)

    def ics(self, request: Request) -> Response:
        if not self.calendar_allowed(request.query_params.get("token")):
            return PlainTextResponse("Not found.\n", status_code=HTTPStatus.NOT_FOUND.value)
        planned = self.upcoming(self.reader(), self.clock.now())
        return Response(self.calendar(planned), media_type="text/calendar; charset=utf-8")

    def calendar_allowed(self, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(str(sent), self.ics_token)

    async def stylesheet(self, request: Request) -> Response:
        return Response(
            self.style, media_type="text/css", headers={"Cache-Control": "max-age=3600"}
        )
