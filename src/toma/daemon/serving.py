"""The web server beside the daemon: ``toma run`` serves it, ``toma serve`` only it.

One server (:mod:`toma.web`) for the dashboard, ``/healthz``, ``/plan.ics`` and the
one-click unsubscribe links, on a thread of its own beside the ticks.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from toma.config import Config
from toma.errors import TomaError
from toma.logs import fields
from toma.store import open_configured
from toma.timeutil import Clock

log = logging.getLogger(__name__)


@contextmanager
def serving(
    config: Config, clock: Clock, listen: tuple[str, int] | None = None, *, required: bool = True
) -> Iterator[tuple[str, int] | None]:
    """The web server: the dashboard, /healthz, /plan.ics and the one-click unsubscribe links.

    Each unsubscribe is recorded durably (:class:`toma.web.oneclick.OneClick`)
    before the answer: nothing waits in memory for the tick. Yields the address it
    listens on (``listen``, else ``[dashboard] listen``, else ``[unsubscribe]
    listen``). When the address cannot be had and the server is not ``required``
    (the daemon with no public unsubscribe links), the daemon goes on without it.
    """
    from toma.web.app import build, check_exposure
    from toma.web.oneclick import OneClick
    from toma.web.server import WebServer

    host, port = listen or config.dashboard.listen or config.unsubscribe.listen
    check_exposure(config, host)
    record = OneClick(
        config.paths.data,
        clock,
        # Another store than the embedded one in the data directory ([store]).
        opener=(lambda: open_configured(config)) if config.store.kind != "embedded" else None,
    )
    built = build(config, clock, record)
    server = WebServer(built.app, host, port)
    try:
        server.start()
    except OSError as exc:
        built.close()
        record.close()
        message = f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}"
        if required:
            raise TomaError(message, key="dashboard.listen") from None
        log.error("dashboard not served", extra=fields(error=message))
        yield None
        return
    log.info(
        "web server listening",
        extra=fields(
            address=f"{server.address[0]}:{server.address[1]}",
            base_url=config.unsubscribe.base_url,
        ),
    )
    try:
        yield server.address
    finally:
        server.stop()
        built.close()
        record.close()


@contextmanager
def serving_if_asked(config: Config, clock: Clock) -> Iterator[None]:
    """``toma run``: serve when there are links to answer or the dashboard is wanted."""
    if not (config.unsubscribe.base_url or config.dashboard.serve):
        yield
        return
    with serving(config, clock, required=bool(config.unsubscribe.base_url)):
        yield


def serve(
    config: Config,
    clock: Clock,
    *,
    listen: tuple[str, int] | None = None,
    stopping: threading.Event | None = None,
    on_ready: Callable[[tuple[str, int]], None] | None = None,
) -> None:
    """``toma serve``: the dashboard and the one-click links, without ticking, until a signal.

    For cron users, whose ``toma run --once`` serves nothing. It takes no
    daemon lock: the server writes through store instances of its own, as safe
    beside a tick as two processes are (see :class:`toma.web.oneclick.OneClick`),
    so it runs alongside cron's ticks or the daemon (on another address).
    """
    stop = stopping or threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra=fields(signal=signal.Signals(signum).name))
        stop.set()

    main_thread = threading.current_thread() is threading.main_thread()
    previous = (
        {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
        if main_thread
        else {}
    )
    try:
        with serving(config, clock, listen) as address:
            assert address is not None  # noqa: S101 - required: it raises instead
            if on_ready is not None:
                on_ready(address)
            while not stop.wait(timeout=0.5):
                pass
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    log.info("serve stopped")
