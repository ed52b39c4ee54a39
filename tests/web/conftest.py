"""The dashboard's test project, its server on 127.0.0.1, and one headless Chromium.

Chromium is Debian's (scripts/test installs it), driven by Playwright, which never
downloads a browser of its own here: it is pointed at the system binary. The
browser resolves no name and reaches loopback only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.integration.projects import make_project, tick
from toma.config import Config, load_config
from toma.core.contacts import make_contact
from toma.core.invoices import make_invoice
from toma.store import CONTACTS, MESSAGES, open_store
from toma.store.records import invoices as billing
from toma.timeutil import FixedClock, iso
from toma.web.app import Built, build
from toma.web.oneclick import OneClick
from toma.web.server import WebServer

CHROMIUM = "/usr/lib/chromium/chromium"
LOOPBACK_ONLY = [
    # Every name fails to resolve except the loopback address the tests use, so
    # nothing the pages (or Chromium itself) might fetch leaves this machine.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--metrics-recording-only",
]

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # Monday, 10:00 in Berlin
KEN = "ken@example.jp"  # Tokyo: answers the first message
MIA = "mia@example.com"  # New York: the plan shows her second message in her time
LENA = "lena@example.de"  # Berlin: paused from her page
SECOND_AFTER = timedelta(weeks=1)


@dataclass
class Site:
    config: Config
    config_path: Path
    server: WebServer
    clock: FixedClock
    shots: Path

    @property
    def base(self) -> str:
        host, port = self.server.address
        return f"http://{host}:{port}"

    def shot(self, page: Page, name: str) -> None:
        page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)


def _reply(inbox: Path, sent: Path) -> None:
    import email
    from email import policy

    first = email.message_from_bytes(sent.read_bytes(), policy=policy.default)
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "1.ken1.host").write_bytes(
        (
            f"From: Ken <{KEN}>\r\nTo: alex@example.com\r\nSubject: Re: {first['Subject']}\r\n"
            f"Message-ID: <ken1@example.jp>\r\nIn-Reply-To: {first['Message-ID']}\r\n"
            "Date: Mon, 02 Mar 2026 19:30:00 +0900\r\n\r\nGood to hear from you! Lunch soon?\r\n"
        ).encode()
    )
    arrived = (NOW + timedelta(minutes=30)).timestamp()  # the maildir's moment of arrival
    os.utime(inbox / "1.ken1.host", (arrived, arrived))


def make_site_project(folder: Path) -> Path:
    """Three contacts in three zones, a first message to each, Ken's reply read by a tick."""
    config = make_project(folder, steps=(("first", "0h"), ("second", "1w")), now=NOW)
    store = open_store(folder / "var" / "data")
    try:
        with store.transaction() as tx:
            for address, first, zone in (
                (KEN, "Ken", "Asia/Tokyo"),
                (MIA, "Mia", "America/New_York"),
                (LENA, "Lena", "Europe/Berlin"),
            ):
                contact = make_contact(
                    address, first_name=first, timezone=zone, tags=["friend"], added_at=iso(NOW)
                )
                tx.put(CONTACTS, contact.email, contact.to_doc())
        billing.add(
            store,
            make_invoice(
                "2026-007", MIA, "1800.00", "EUR", issued=date(2026, 1, 2), due=date(2026, 1, 16)
            ),
        )
        billing.add(
            store,
            make_invoice(
                "2026-011", LENA, "950.00", "USD", issued=date(2026, 2, 20), due=date(2026, 3, 20)
            ),
        )
    finally:
        store.close()
    tick(config, NOW)
    sent = next(
        path
        for path in (folder / "var" / "outbox" / "new").iterdir()
        if KEN in path.read_bytes().decode("utf-8", "replace")
    )
    _reply(folder / "var" / "inbox" / "new", sent)
    tick(config, NOW + timedelta(hours=1))
    return config


def first_sent_at(config: Path, contact: str) -> datetime:
    store = open_store(config.parent / "var" / "data")
    try:
        return min(
            datetime.fromisoformat(doc["sent_at"])
            for _key, doc in store.all(MESSAGES)
            if doc.get("contact") == contact and doc.get("sent_at")
        )
    finally:
        store.close()


def serve(config_path: Path, clock: FixedClock, host: str = "127.0.0.1") -> tuple[WebServer, Built]:
    config = load_config(config_path)
    built = build(config, clock, OneClick(config.paths.data, clock))
    server = WebServer(built.app, host, 0)
    server.start()
    return server, built


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    # Package-scoped: Playwright's sync API keeps an event loop running in this
    # thread while it is open, and any test after it that calls asyncio.run() here
    # would fail ("cannot be called from a running event loop").
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=LOOPBACK_ONLY
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("site")
    # On a thread of its own: the ticks run an event loop, and Playwright's runs here.
    with ThreadPoolExecutor(1) as pool:
        config_path = pool.submit(make_site_project, folder / "project").result()
    clock = FixedClock(NOW + timedelta(hours=1, minutes=2))  # two minutes after the last tick
    server, built = serve(config_path, clock)
    shots = Path(os.environ.get("TOMA_SCREENSHOTS", folder / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    try:
        yield Site(load_config(config_path), config_path, server, clock, shots)
    finally:
        server.stop()
        built.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 760})
    try:
        yield context.new_page()
    finally:
        context.close()
