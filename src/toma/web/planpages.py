"""The plan as the dashboard hands it out: the Plan page and ``/plan.ics``.

At 10k contacts a plan has some 2,300 rows: rendering them all costs ~55 ms,
and icalendar takes seconds to make their events. Both are made once per plan
(:attr:`toma.web.planview.Planned.version`), and each row's HTML and event is
kept while the row is planned: a plan that changed for a few contacts costs a
few rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from toma.reports import dashboard as views
from toma.reports.plan import Row
from toma.web.ics import plan_calendar
from toma.web.planview import Planned


class PlanPages:
    def __init__(self, templates: Environment, render: Callable[..., bytes]) -> None:
        self.templates = templates
        self.render = render  # a page template with the dashboard's context
        self._sends: dict[Row, tuple[str, Markup]] = {}  # each row's day and HTML
        self._events: dict[Row, bytes] = {}  # each row's calendar event
        self._page: tuple[int, bytes] | None = None
        self._calendar: tuple[int, bytes] | None = None

    def page(self, planned: Planned) -> bytes:
        """The Plan page of ``planned``."""
        if self._page is not None and self._page[0] == planned.version:
            return self._page[1]
        made = {row: self._sends.get(row) or self._send(row) for row in planned.rows}
        self._sends = made
        days: dict[str, list[Markup]] = {}
        for row in planned.rows:
            day, html = made[row]
            days.setdefault(day, []).append(html)
        # Markup.join: the rows are Markup already, so none is escaped twice.
        shown = {day: Markup("").join(html) for day, html in days.items()}
        page = self.render("plan.html", page="plan", planned=planned, days=shown)
        self._page = (planned.version, page)
        return page

    def _send(self, row: Row) -> tuple[str, Markup]:
        module: Any = self.templates.get_template("send.html").module
        html: Markup = module.send(row)
        return views.day_of(row), html

    def calendar(self, planned: Planned) -> bytes:
        """``/plan.ics`` of ``planned``."""
        if self._calendar is None or self._calendar[0] != planned.version:
            made = plan_calendar(planned.rows, now=planned.at, made=self._events)
            self._calendar = (planned.version, made)
        return self._calendar[1]
