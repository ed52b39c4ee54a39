"""The whole web application: who may reach what, then the dashboard's routes.

Theory of operation
-------------------

:func:`build` makes one ASGI app for :class:`toma.web.server.WebServer`:

1. ``/u/TOKEN`` (and the base URL's path in front of it) goes to the one-click
   unsubscribe pages (:mod:`toma.web.endpoint`), without login: the people who
   press those links have none.
2. Everything else passes :meth:`Access.refusal` first. With a password hash
   configured, every request must carry the password (HTTP Basic), except
   ``/healthz`` from a loopback peer (a container's own health check).
   Without one, only loopback peers asking for a loopback name in ``Host``
   are served (a rebound DNS name is refused), unless config.toml says a
   reverse proxy that authenticates stands in front (``behind_proxy``).
   :func:`check_exposure` refuses to listen beyond loopback with neither.
3. Then the pages (:mod:`toma.web.pages`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from toma.config import Config
from toma.errors import TomaError
from toma.mail.unsubscribe import SECRET_FILE, load_or_create_secret, unsubscriber
from toma.timeutil import Clock
from toma.web.auth import Gate, is_password_hash
from toma.web.endpoint import Unsubscriber
from toma.web.server import ConnectionClose

if TYPE_CHECKING:
    from toma.web.pages import Dashboard

DASHBOARD_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
PUBLIC_FOR_LOOPBACK = frozenset({"/healthz"})


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


@dataclass(frozen=True)
class Access:
    gate: Gate
    behind_proxy: bool

    def refusal(self, request: Request) -> Response | None:
        """None when ``request`` may be served; else the answer that refuses it."""
        peer = request.client.host if request.client else ""
        if self.gate.required:
            if request.url.path in PUBLIC_FOR_LOOPBACK and is_loopback(peer):
                return None
            if self.gate.allows(request.headers.get("authorization")):
                return None
            return PlainTextResponse(
                "The dashboard needs its password.\n",
                status_code=HTTPStatus.UNAUTHORIZED.value,
                headers={"WWW-Authenticate": 'Basic realm="toma", charset="UTF-8"'},
            )
        if self.behind_proxy:
            return None
        if is_loopback(peer):
            if _loopback_host(request.headers.get("host", "")):
                return None
            # A page of another site whose name now resolves to 127.0.0.1 (DNS
            # rebinding) would read the dashboard as its own: only this machine's
            # names are answered.
            return PlainTextResponse(
                "The dashboard answers to 127.0.0.1, [::1] and localhost only.\n",
                status_code=HTTPStatus.FORBIDDEN.value,
            )
        return PlainTextResponse(
            "The dashboard answers this machine only (see the README: reaching the dashboard "
            "from another machine).\n",
            status_code=HTTPStatus.FORBIDDEN.value,
        )


def _loopback_host(host: str) -> bool:
    """Whether a Host header names this machine (``127.0.0.1:8025``, ``[::1]``, ``localhost``)."""
    if host.startswith("["):
        name = host[1 : host.find("]")] if "]" in host else ""
    else:
        name = host.rsplit(":", 1)[0]
    return name.lower() == "localhost" or is_loopback(name)


def password_hash(config: Config) -> str | None:
    """The configured hash, checked; None when there is none."""
    secret = config.dashboard.password_hash
    if secret is None:
        return None
    value = secret.reveal()
    if not value or not is_password_hash(value):
        raise TomaError(
            "that is not a password hash: make one with `toma serve --hash-password`",
            key=secret.key,
        )
    return value


def check_exposure(config: Config, host: str) -> None:
    """Refuse to listen beyond loopback with neither a password nor an authenticating proxy."""
    if is_loopback(host) or config.dashboard.password_hash or config.dashboard.behind_proxy:
        return
    raise TomaError(
        f"will not serve the dashboard on {host} without a password: set "
        "[dashboard] password_env or password_file (a hash from `toma serve --hash-password`), "
        "or behind_proxy = true when a reverse proxy that authenticates stands in front",
        key="dashboard.listen",
    )


@dataclass
class Built:
    app: ASGIApp
    close: Callable[[], None]
    dashboard: Dashboard | None = None  # its pages, for a caller that times them (bench/)


def build(
    config: Config,
    clock: Clock,
    on_unsubscribe: Callable[[str], None],
) -> Built:
    """The ASGI app serving unsubscribe links, the dashboard, /healthz and /plan.ics."""
    from toma.web.pages import Dashboard

    unsubscribe = unsubscriber(config)
    links = Unsubscriber(unsubscribe, on_unsubscribe)
    access = Access(Gate(password_hash(config)), config.dashboard.behind_proxy)
    dashboard = Dashboard(config, clock, load_or_create_secret(config.paths.data / SECRET_FILE))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        raw = scope.get("raw_path", b"").decode("ascii", "replace")
        if links.token(raw) is not None:
            response = await links(request)
            await response(scope, receive, send)
            return
        refused = access.refusal(request)
        if refused is not None:
            await refused(scope, receive, send)
            return
        await dashboard.router(scope, receive, send)

    def close() -> None:
        links.close()
        dashboard.close()

    return Built(ConnectionClose(app, DASHBOARD_HEADERS), close, dashboard)
